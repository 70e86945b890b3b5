#!/usr/bin/env bash
# Starts a local Iris cluster of 3 cores and 2 edges on loopback addresses
# and runs until Ctrl-C, SIGTERM or SIGHUP. It then stops every node by its
# pid. The edges stop first, so that their sessions close while the cores
# still take writes. If a node exits during the start, the script stops the
# others and exits with status 1.
#
#   core1..core3  127.0.0.2..127.0.0.4  remoting :6330, discovery :6331,
#                                        raft :6332, admin :9090
#   edge1, edge2  127.0.0.5, 127.0.0.6  TCP :8085, WebSocket :8086,
#                                        admin :9090
#
# Usage: scripts/cluster.sh [BINARY]   (default bin/iris)
# CLUSTER_DIR sets where configs, data and logs go (default ./cluster-data).
# A second run on the same CLUSTER_DIR restarts the cluster on its data: the
# cores find their raft state and ignore cluster.raft.bootstrap. Delete the
# directory to start from an empty cluster.
#
# Needs bash 4.3 or later (wait -n). With curl on PATH it waits until every
# node's /readyz returns 200.
set -euo pipefail

binary=${1:-bin/iris}
dir=${CLUSTER_DIR:-./cluster-data}
if [[ ! -x $binary ]]; then
	echo "cluster.sh: $binary is missing or not executable; build it first with: make build" >&2
	exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

cores=(core1 core2 core3)
edges=(edge1 edge2)
declare -A host=([core1]=127.0.0.2 [core2]=127.0.0.3 [core3]=127.0.0.4 [edge1]=127.0.0.5 [edge2]=127.0.0.6)
declare -A pid=()
failed=0

# stop_nodes sends SIGTERM to the named nodes that still run, then waits for
# each one. A node gives itself 10 s to stop cleanly and exits with status 1
# when that fails, so the wait is bounded.
stop_nodes() {
	local name status
	for name in "$@"; do
		if [[ -n ${pid[$name]:-} ]]; then
			kill -TERM "${pid[$name]}" 2>/dev/null || true
		fi
	done
	for name in "$@"; do
		[[ -n ${pid[$name]:-} ]] || continue
		status=0
		wait "${pid[$name]}" 2>/dev/null || status=$?
		if ((status == 0)); then
			echo "$name (pid ${pid[$name]}) stopped"
		else
			echo "$name (pid ${pid[$name]}) exited with status $status; see $dir/$name.log" >&2
			failed=1
		fi
		unset "pid[$name]"
	done
}

stop_all() {
	trap - INT TERM HUP EXIT
	stop_nodes "${edges[@]}"
	stop_nodes "${cores[@]}"
	echo "cluster stopped"
}

# shellcheck disable=SC2317 # the trap below calls it
on_signal() {
	echo
	echo "stopping the cluster"
	stop_all
	exit "$failed"
}
trap on_signal INT TERM HUP
trap stop_all EXIT

seeds='[127.0.0.2:6331, 127.0.0.3:6331, 127.0.0.4:6331]'
bootstrap='[core1=127.0.0.2:6332, core2=127.0.0.3:6332, core3=127.0.0.4:6332]'

for name in "${cores[@]}"; do
	cat >"$dir/$name.yaml" <<YAML
node:
  role: core
  name: $name
  data_dir: $dir/$name
admin:
  addr: ${host[$name]}:9090
cluster:
  host: ${host[$name]}
  port: 6330
  discovery_port: 6331
  seeds: $seeds
  raft:
    bind: ${host[$name]}:6332
    bootstrap: $bootstrap
YAML
done
for name in "${edges[@]}"; do
	cat >"$dir/$name.yaml" <<YAML
node:
  role: edge
  name: $name
  data_dir: $dir/$name
edge:
  tcp_addr: ${host[$name]}:8085
  ws_addr: ${host[$name]}:8086
admin:
  addr: ${host[$name]}:9090
cluster:
  host: ${host[$name]}
  port: 6330
  seeds: $seeds
YAML
done

# Job control puts each node in its own process group, so the SIGINT of a
# Ctrl-C reaches only this script. A node that got the terminal's SIGINT and
# then this script's SIGTERM would take the second signal as a request to
# exit at once, without a clean stop.
set -m
for name in "${cores[@]}" "${edges[@]}"; do
	"$binary" start --config "$dir/$name.yaml" </dev/null >>"$dir/$name.log" 2>&1 &
	pid[$name]=$!
	echo "$name started, pid $!, log $dir/$name.log"
done
set +m

# wait_ready polls every node's /readyz until each returns 200, and fails
# when a node exits or 60 s pass (a node itself gives up after cluster.join_timeout,
# 30 s). Without curl it only checks that every node still runs after 2 s.
wait_ready() {
	local name pending deadline=$((SECONDS + 60))
	command -v curl >/dev/null 2>&1 || sleep 2
	while ((SECONDS < deadline)); do
		pending=0
		for name in "${cores[@]}" "${edges[@]}"; do
			if ! kill -0 "${pid[$name]}" 2>/dev/null; then
				echo "$name (pid ${pid[$name]}) exited during start; last lines of $dir/$name.log:" >&2
				tail -n 5 "$dir/$name.log" >&2
				return 1
			fi
			if command -v curl >/dev/null 2>&1 &&
				! curl -fs -m 1 -o /dev/null "http://${host[$name]}:9090/readyz"; then
				pending=1
			fi
		done
		((pending == 0)) && return 0
		sleep 0.5
	done
	echo "not every node was ready after 60 s; see the logs in $dir" >&2
	return 1
}
if ! wait_ready; then
	stop_all
	exit 1
fi
if command -v curl >/dev/null 2>&1; then
	echo "every node is ready"
fi

cat <<TEXT

Clients connect to an edge: TCP 127.0.0.5:8085 or 127.0.0.6:8085,
WebSocket ws://127.0.0.5:8086/ws or ws://127.0.0.6:8086/ws.
Admin: http://127.0.0.2:9090/stats (cores .2-.4, edges .5-.6).
Press Ctrl-C to stop the cluster.
TEXT

# From here on a node that exits, for example a core killed to watch a
# failover, is reported and the others keep running. Restart it by hand with
# the same config: $binary start --config $dir/NAME.yaml (this script does
# not track it then). The script ends when no node is left or on a signal.
while ((${#pid[@]} > 0)); do
	wait -n "${pid[@]}" || true
	for name in "${cores[@]}" "${edges[@]}"; do
		if [[ -n ${pid[$name]:-} ]] && ! kill -0 "${pid[$name]}" 2>/dev/null; then
			# bash keeps the status of a reaped child, so this wait returns it.
			status=0
			wait "${pid[$name]}" 2>/dev/null || status=$?
			echo "$name (pid ${pid[$name]}) exited on its own with status $status; the other nodes keep running" >&2
			unset "pid[$name]"
		fi
	done
done
trap - INT TERM HUP EXIT
echo "every node has exited"
exit 1
