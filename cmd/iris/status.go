package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// nodeStats is the part of a node's /stats that iris status prints.
type nodeStats struct {
	Node          string            `json:"node"`
	Role          string            `json:"role"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Goroutines    int               `json:"goroutines"`
	HeapBytes     uint64            `json:"heap_bytes"`
	Sessions      map[string]int64  `json:"sessions"`
	Counters      map[string]uint64 `json:"counters"`
	Members       []struct {
		ID      string   `json:"id"`
		Address string   `json:"address"`
		Kinds   []string `json:"kinds"`
		// Reachable is false for a member that left the node's member list or whose
		// record is stale. It is nil from a node of a version without the field.
		Reachable *bool `json:"reachable"`
	} `json:"members"`
	Raft *struct {
		ID           string   `json:"id"`
		State        string   `json:"state"`
		Term         uint64   `json:"term"`
		Leader       string   `json:"leader"`
		CommitIndex  uint64   `json:"commit_index"`
		AppliedIndex uint64   `json:"applied_index"`
		Voters       []string `json:"voters"`
	} `json:"raft"`
	Latency map[string]struct {
		Count uint64  `json:"count"`
		P50MS float64 `json:"p50_ms"`
		P99MS float64 `json:"p99_ms"`
	} `json:"latency"`
	InboxBacklog *int64 `json:"inbox_backlog"`
	DeadLetters  uint64 `json:"dead_letters"`
	Supervision  struct {
		Restarts    map[string]uint64 `json:"Restarts"`
		Escalations map[string]uint64 `json:"Escalations"`
	} `json:"supervision"`
}

// nodeReport is the state of one node as iris status read it.
type nodeReport struct {
	addr    string
	ready   bool
	stats   *nodeStats // nil when the node is unreachable
	problem string     // the reason the node is unhealthy, or ""
}

func (c *cli) newStatusCommand() *cobra.Command {
	var adminAddrs []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [--admin-addr HOST:PORT,...]",
		Short: "Print the health, sessions and message counters of a node or a cluster",
		Long: `Print a summary of running nodes, read from their admin servers: whether each
is ready, its role, live sessions by transport, message counters, router
counters and restarts of supervised children, and for cores the raft state:
leader, term and how far each core's store lags behind the commit index.

Give one admin address for one node, or the admin addresses of every node of
a cluster, repeated or separated by commas; the summary then checks that the
cores agree on one raft leader and that every node sees every core. The exit
status is 1 when a node cannot be reached or is not ready, or when the
cluster has no leader, so scripts and health checks can use it.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return c.runStatus(adminAddrs, timeout)
		},
	}
	cmd.Flags().StringSliceVar(&adminAddrs, "admin-addr", []string{"127.0.0.1:9090"}, "`host:port` of a node's admin server; repeat it or separate with commas for several nodes")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for each node's answer")
	return cmd
}

func (c *cli) runStatus(adminAddrs []string, timeout time.Duration) error {
	for i, addr := range adminAddrs {
		clean, err := adminHostPort(addr)
		if err != nil {
			return usageError(err)
		}
		adminAddrs[i] = clean
	}
	httpClient := &http.Client{Timeout: timeout}
	reports := make([]*nodeReport, len(adminAddrs))
	for i, addr := range adminAddrs {
		reports[i] = fetchNode(httpClient, addr)
	}

	var problems []string
	for _, r := range reports {
		c.printNode(r)
		if r.problem != "" {
			problems = append(problems, r.problem)
		}
	}
	if len(reports) > 1 {
		problems = append(problems, c.printCluster(reports)...)
	}
	if len(problems) > 0 {
		return failureError(fmt.Errorf("unhealthy: %s", strings.Join(problems, "; ")))
	}
	return nil
}

// adminHostPort returns the host:port of an --admin-addr value. An
// http:// URL of the admin server is accepted, since that is what a browser
// shows.
func adminHostPort(addr string) (string, error) {
	hostPort := strings.TrimSuffix(strings.TrimPrefix(addr, "http://"), "/")
	if _, _, err := net.SplitHostPort(hostPort); err != nil || strings.Contains(hostPort, "/") {
		return "", fmt.Errorf("invalid --admin-addr %q: expected host:port of a node's admin server, such as 127.0.0.1:9090", addr)
	}
	return hostPort, nil
}

// fetchNode reads a node's /readyz and /stats.
func fetchNode(httpClient *http.Client, addr string) *nodeReport {
	r := &nodeReport{addr: addr}
	base := "http://" + addr
	ready, err := httpClient.Get(base + "/readyz")
	if err != nil {
		r.problem = fmt.Sprintf("node %s is unreachable: %v", addr, err)
		return r
	}
	_, _ = io.Copy(io.Discard, ready.Body)
	ready.Body.Close()
	r.ready = ready.StatusCode == http.StatusOK

	resp, err := httpClient.Get(base + "/stats")
	if err != nil {
		r.problem = fmt.Sprintf("read %s/stats: %v", base, err)
		return r
	}
	defer resp.Body.Close()
	var st nodeStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		r.problem = fmt.Sprintf("decode %s/stats: %v", base, err)
		return r
	}
	r.stats = &st
	if !r.ready {
		r.problem = fmt.Sprintf("node %s is not ready", addr)
	}
	return r
}

// printNode prints the summary of one node.
func (c *cli) printNode(r *nodeReport) {
	w := c.stdout
	if r.stats == nil {
		fmt.Fprintf(w, "node %s: unreachable\n", r.addr)
		return
	}
	st := r.stats
	state := "ready"
	if !r.ready {
		state = "NOT READY"
	}
	name := r.addr
	if st.Node != "" {
		name = fmt.Sprintf("%s (%s, role %s)", r.addr, st.Node, st.Role)
	}
	fmt.Fprintf(w, "node %s: %s, up %s, %d goroutines, heap %.1f MB\n", name, state,
		time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second), st.Goroutines, float64(st.HeapBytes)/(1<<20))
	if st.Raft != nil {
		fmt.Fprintf(w, "  raft: %s, leader %q, term %d, commit index %d, applied index %d, voters %s\n",
			st.Raft.State, st.Raft.Leader, st.Raft.Term, st.Raft.CommitIndex, st.Raft.AppliedIndex, strings.Join(st.Raft.Voters, ","))
	}
	if st.Role != "core" {
		fmt.Fprintf(w, "  sessions: %d tcp, %d ws\n", st.Sessions["tcp"], st.Sessions["ws"])
	}
	fmt.Fprintf(w, "  messages: %s\n", joinCounters(st.Counters,
		"received", "appended", "delivered", "redelivered", "acked", "rejected", "rate_limited", "deduplicated"))
	if d := st.Latency["delivery"]; d.Count > 0 {
		fmt.Fprintf(w, "  delivery latency: p50 %.2f ms, p99 %.2f ms over %d deliveries\n", d.P50MS, d.P99MS, d.Count)
	}
	if sw := st.Latency["store_write"]; sw.Count > 0 {
		fmt.Fprintf(w, "  store writes: p50 %.2f ms, p99 %.2f ms over %d appends\n", sw.P50MS, sw.P99MS, sw.Count)
	}
	if st.InboxBacklog != nil {
		fmt.Fprintf(w, "  inbox backlog: %d unacked entries\n", *st.InboxBacklog)
	}
	fmt.Fprintf(w, "  routers: %s\n", joinCounters(st.Counters, "routed", "route_failed", "send_retries"))
	fmt.Fprintf(w, "  connections: %s\n", joinCounters(st.Counters,
		"logins_ok", "logins_failed", "logins_blocked", "conn_rejected", "slow_consumers", "bad_frames"))
	if restarts := nonZero(st.Supervision.Restarts); restarts != "" {
		fmt.Fprintf(w, "  restarts: %s\n", restarts)
	}
	if escalations := nonZero(st.Supervision.Escalations); escalations != "" {
		fmt.Fprintf(w, "  escalations: %s\n", escalations)
	}
	if st.DeadLetters > 0 {
		fmt.Fprintf(w, "  dead letters: %d\n", st.DeadLetters)
	}
}

// printCluster prints what the nodes show together and returns the problems
// found: no raft leader, cores that disagree on it, cores that lag, nodes that
// do not see every core.
func (c *cli) printCluster(reports []*nodeReport) []string {
	var problems []string
	leaders := map[string]int{}
	var cores, edges, down int
	var maxCommit uint64
	coreAddrs := map[string]bool{}
	for _, r := range reports {
		if r.stats == nil {
			down++
			continue
		}
		switch r.stats.Role {
		case "core":
			cores++
		case "edge":
			edges++
		}
		if raft := r.stats.Raft; raft != nil {
			if raft.Leader != "" {
				leaders[raft.Leader]++
			}
			maxCommit = max(maxCommit, raft.CommitIndex)
		}
		for _, m := range r.stats.Members {
			if slices.Contains(m.Kinds, "shard") && isReachable(m.Reachable) {
				coreAddrs[m.Address] = true
			}
		}
	}

	leader := "none"
	switch len(leaders) {
	case 0:
		if cores > 0 {
			problems = append(problems, "no core knows a raft leader")
		}
	case 1:
		for id := range leaders {
			leader = id
		}
	default:
		problems = append(problems, fmt.Sprintf("cores disagree on the raft leader: %v", leaders))
	}
	fmt.Fprintf(c.stdout, "cluster: %d nodes given, %d unreachable; %d cores, %d edges reached; raft leader %s\n",
		len(reports), down, cores, edges, leader)

	for _, r := range reports {
		if r.stats == nil || r.stats.Raft == nil {
			continue
		}
		if lag := maxCommit - min(maxCommit, r.stats.Raft.AppliedIndex); lag > 0 {
			fmt.Fprintf(c.stdout, "  %s lags %d entries behind the highest commit index\n", r.stats.Node, lag)
		}
	}
	for _, r := range reports {
		if r.stats == nil || r.stats.Role == "" || r.stats.Role == "all" {
			continue
		}
		seen := 0
		for _, m := range r.stats.Members {
			if coreAddrs[m.Address] && isReachable(m.Reachable) {
				seen++
			}
		}
		if seen < len(coreAddrs) {
			problems = append(problems, fmt.Sprintf("%s sees %d of the %d cores", r.stats.Node, seen, len(coreAddrs)))
		}
	}
	return problems
}

// isReachable reports whether a member of a node's /stats is reachable from that node. A
// node of a version without the field lists only the members it reaches.
func isReachable(reachable *bool) bool {
	return reachable == nil || *reachable
}

// joinCounters formats the named counters as "name=value" pairs.
func joinCounters(counters map[string]uint64, names ...string) string {
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s=%d", name, counters[name])
	}
	return strings.Join(parts, " ")
}

// nonZero formats the non-zero entries of m, sorted by key.
func nonZero(m map[string]uint64) string {
	var parts []string
	for key, n := range m {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", key, n))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
