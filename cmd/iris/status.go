package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// nodeStats is the part of a node's /stats that iris status prints.
type nodeStats struct {
	UptimeSeconds float64           `json:"uptime_seconds"`
	Goroutines    int               `json:"goroutines"`
	HeapBytes     uint64            `json:"heap_bytes"`
	Sessions      map[string]int64  `json:"sessions"`
	Counters      map[string]uint64 `json:"counters"`
	Supervision   struct {
		Restarts    map[string]uint64 `json:"Restarts"`
		Escalations map[string]uint64 `json:"Escalations"`
	} `json:"supervision"`
}

func (c *cli) newStatusCommand() *cobra.Command {
	var adminAddr string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [--admin-addr HOST:PORT]",
		Short: "Print a node's health, sessions and message counters",
		Long: `Print a summary of one running node, read from its admin server: whether it is
ready, its live sessions by transport, message counters, and restarts of
supervised children. The exit status is 1 when the node cannot be reached or
is not ready, so scripts and health checks can use it.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return c.runStatus(adminAddr, timeout)
		},
	}
	cmd.Flags().StringVar(&adminAddr, "admin-addr", "127.0.0.1:9090", "`host:port` of the node's admin server")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the node's answer")
	return cmd
}

func (c *cli) runStatus(adminAddr string, timeout time.Duration) error {
	httpClient := &http.Client{Timeout: timeout}
	base := "http://" + adminAddr

	ready, err := httpClient.Get(base + "/readyz")
	if err != nil {
		fmt.Fprintf(c.stdout, "node %s: unreachable\n", adminAddr)
		return failureError(fmt.Errorf("node %s is unreachable: %w", adminAddr, err))
	}
	_, _ = io.Copy(io.Discard, ready.Body)
	ready.Body.Close()
	isReady := ready.StatusCode == http.StatusOK

	resp, err := httpClient.Get(base + "/stats")
	if err != nil {
		return failureError(fmt.Errorf("read %s/stats: %w", base, err))
	}
	defer resp.Body.Close()
	var st nodeStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return failureError(fmt.Errorf("decode %s/stats: %w", base, err))
	}

	state := "ready"
	if !isReady {
		state = "NOT READY"
	}
	w := c.stdout
	fmt.Fprintf(w, "node %s: %s, up %s, %d goroutines, heap %.1f MB\n", adminAddr, state,
		time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second), st.Goroutines, float64(st.HeapBytes)/(1<<20))
	fmt.Fprintf(w, "sessions: %d tcp, %d ws\n", st.Sessions["tcp"], st.Sessions["ws"])
	fmt.Fprintf(w, "messages: %s\n", joinCounters(st.Counters,
		"received", "appended", "delivered", "redelivered", "acked", "rejected", "rate_limited", "deduplicated"))
	fmt.Fprintf(w, "routers: %s\n", joinCounters(st.Counters, "routed", "route_failed", "send_retries"))
	fmt.Fprintf(w, "connections: %s\n", joinCounters(st.Counters,
		"logins_ok", "logins_failed", "logins_blocked", "conn_rejected", "slow_consumers", "bad_frames"))
	if restarts := nonZero(st.Supervision.Restarts); restarts != "" {
		fmt.Fprintf(w, "restarts: %s\n", restarts)
	}
	if escalations := nonZero(st.Supervision.Escalations); escalations != "" {
		fmt.Fprintf(w, "escalations: %s\n", escalations)
	}

	if !isReady {
		return failureError(fmt.Errorf("node %s is not ready", adminAddr))
	}
	return nil
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
