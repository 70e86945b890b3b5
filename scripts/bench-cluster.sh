#!/usr/bin/env bash
# Measures a local cluster of 3 cores and 2 edges (scripts/cluster.sh) with
# iris bench: v1 and v2 senders on one edge, receivers on the other, 32
# messages in flight per sender. The cluster is stopped by pid afterwards.
#
# Usage: scripts/bench-cluster.sh [BINARY]   (default bin/iris)
# BENCH_DURATION sets the sending time of each run (default 20s).
set -euo pipefail

binary=${1:-bin/iris}
duration=${BENCH_DURATION:-20s}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# Every client comes from 127.0.0.1, so the per-address and per-user limits
# are raised above the load; the edges inherit these variables.
export IRIS_LIMITS_SEND_RATE=1000000 IRIS_LIMITS_SEND_BURST=1000000
export IRIS_LIMITS_CONN_RATE=0 IRIS_LIMITS_CONN_BURST=0
export IRIS_LIMITS_MAX_CONNECTIONS_PER_IP=100000
export IRIS_LOG_LEVEL=warn

CLUSTER_DIR="$dir/cluster" scripts/cluster.sh "$binary" >"$dir/cluster.out" 2>&1 &
cluster_pid=$!
stop_cluster() {
	kill -TERM "$cluster_pid" 2>/dev/null || true
	wait "$cluster_pid" 2>/dev/null || true
}
trap 'stop_cluster; rm -rf "$dir"' EXIT

for host in 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6; do
	for _ in $(seq 100); do
		curl -fs "http://$host:9090/readyz" >/dev/null 2>&1 && break
		sleep 0.3
	done
	curl -fs "http://$host:9090/readyz" >/dev/null || { echo "node $host is not ready" >&2; cat "$dir/cluster.out" >&2; exit 1; }
done

for protocol in v1 v2; do
	echo "== $protocol, 100 pairs, inflight 32, edges 127.0.0.5 and 127.0.0.6"
	"$binary" bench --addr 127.0.0.5:8085,127.0.0.6:8085 --protocol "$protocol" \
		--conns 200 --inflight 32 --duration "$duration"
done
