// Package admin serves a node's admin HTTP endpoints: /healthz (the process
// is alive), /readyz (the node serves clients), /stats (counters as JSON)
// and /metrics (Prometheus).
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/supervisor"
)

// Config configures the admin server.
type Config struct {
	Addr  string
	Stats *actors.Stats
	Ready func() bool                     // reports whether the node serves clients
	Tree  func() (supervisor.Node, error) // the node's supervision tree
	// Supervision counts restarts, escalations and shutdowns in the tree.
	Supervision *supervisor.Events
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// Node and Role name this node in /stats.
	Node, Role string
	// Members returns the cluster members this node has; nil on a node
	// that is the whole cluster.
	Members func() []Member
	// Raft returns the raft state of a core; nil on other roles.
	Raft   func() *RaftStatus
	Logger *slog.Logger
}

// Server is a running admin server.
type Server struct {
	cfg     Config
	ln      net.Listener
	http    *http.Server
	started time.Time
}

// Start binds cfg.Addr and serves the admin endpoints.
func Start(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", cfg.Addr, err)
	}
	s := &Server{cfg: cfg, ln: ln, started: time.Now()}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registry.MustRegister(newStatsCollector(cfg.Stats, cfg.Supervision))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /stats", s.stats)
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error("admin server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stop closes the server.
func (s *Server) Stop() { _ = s.http.Close() }

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Ready != nil && !s.cfg.Ready() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Member is one cluster member in this node's member list.
type Member struct {
	ID      string   `json:"id"`
	Address string   `json:"address"`
	Kinds   []string `json:"kinds"`
}

// RaftStatus is a core's view of the raft group that replicates the store.
type RaftStatus struct {
	ID           string   `json:"id"`
	State        string   `json:"state"` // Leader, Follower, Candidate or Shutdown
	Term         uint64   `json:"term"`
	Leader       string   `json:"leader"` // raft ID; empty during an election
	LeaderAddr   string   `json:"leader_addr"`
	LastLogIndex uint64   `json:"last_log_index"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"` // entries applied to this core's store
	Voters       []string `json:"voters"`
}

// Snapshot is the JSON document served at /stats.
type Snapshot struct {
	Node          string            `json:"node"`
	Role          string            `json:"role"`
	Members       []Member          `json:"members,omitempty"`
	Raft          *RaftStatus       `json:"raft,omitempty"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Goroutines    int               `json:"goroutines"`
	HeapBytes     uint64            `json:"heap_bytes"`
	Sessions      map[string]int64  `json:"sessions"`
	Counters      map[string]uint64 `json:"counters"`
	Tree          *supervisor.Node  `json:"tree,omitempty"`
	Supervision   *supervisor.Stats `json:"supervision,omitempty"`
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	st := s.cfg.Stats
	snap := Snapshot{
		Node:          s.cfg.Node,
		Role:          s.cfg.Role,
		UptimeSeconds: time.Since(s.started).Seconds(),
		Goroutines:    runtime.NumGoroutine(),
		HeapBytes:     mem.HeapAlloc,
		Sessions:      map[string]int64{"tcp": st.SessionsTCP.Load(), "ws": st.SessionsWS.Load()},
		Counters:      counters(st),
	}
	if s.cfg.Members != nil {
		snap.Members = s.cfg.Members()
	}
	if s.cfg.Raft != nil {
		snap.Raft = s.cfg.Raft()
	}
	if s.cfg.Supervision != nil {
		sup := s.cfg.Supervision.Snapshot()
		snap.Supervision = &sup
	}
	if s.cfg.Tree != nil {
		if tree, err := s.cfg.Tree(); err == nil {
			snap.Tree = &tree
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(snap)
}

// counters lists the monotonic counters of st by their metric name.
func counters(st *actors.Stats) map[string]uint64 {
	return map[string]uint64{
		"received":       st.Received.Load(),
		"appended":       st.Appended.Load(),
		"deduplicated":   st.Deduplicated.Load(),
		"delivered":      st.Delivered.Load(),
		"redelivered":    st.Redelivered.Load(),
		"acked":          st.Acked.Load(),
		"rejected":       st.Rejected.Load(),
		"rate_limited":   st.RateLimited.Load(),
		"bad_frames":     st.BadFrames.Load(),
		"routed":         st.Routed.Load(),
		"route_failed":   st.RouteFailed.Load(),
		"send_retries":   st.SendRetries.Load(),
		"typing_shed":    st.TypingShed.Load(),
		"status_shed":    st.StatusShed.Load(),
		"receipt_shed":   st.ReceiptShed.Load(),
		"relayed":        st.Relayed.Load(),
		"logins_blocked": st.LoginsBlocked.Load(),
		"conn_rejected":  st.ConnRejected.Load(),
		"slow_consumers": st.SlowConsumers.Load(),
		"acks_ignored":   st.AcksIgnored.Load(),
		"logins_ok":      st.LoginsOK.Load(),
		"logins_failed":  st.LoginsFailed.Load(),
	}
}

// statsCollector exports Stats and supervision counters to Prometheus at
// scrape time.
type statsCollector struct {
	st          *actors.Stats
	supervision *supervisor.Events
	messages    *prometheus.Desc
	sessions    *prometheus.Desc
	restarts    *prometheus.Desc
	crashes     *prometheus.Desc
	escalations *prometheus.Desc
}

func newStatsCollector(st *actors.Stats, supervision *supervisor.Events) *statsCollector {
	return &statsCollector{
		st:          st,
		supervision: supervision,
		messages:    prometheus.NewDesc("iris_events_total", "Events counted by the node's actors, by kind.", []string{"event"}, nil),
		sessions:    prometheus.NewDesc("iris_sessions", "Live client sessions, by transport.", []string{"transport"}, nil),
		restarts:    prometheus.NewDesc("iris_supervisor_restarts_total", "Restarts of supervised children, by child path.", []string{"child"}, nil),
		crashes:     prometheus.NewDesc("iris_supervisor_abnormal_exits_total", "Crashes of supervised children, by child path.", []string{"child"}, nil),
		escalations: prometheus.NewDesc("iris_supervisor_escalations_total", "Supervisors that exceeded their restart intensity, by supervisor.", []string{"supervisor"}, nil),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.sessions
	ch <- c.restarts
	ch <- c.crashes
	ch <- c.escalations
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range counters(c.st) {
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(v), name)
	}
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(c.st.SessionsTCP.Load()), "tcp")
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(c.st.SessionsWS.Load()), "ws")

	if c.supervision == nil {
		return
	}
	sup := c.supervision.Snapshot()
	for child, n := range sup.Restarts {
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(n), child)
	}
	for child, n := range sup.AbnormalExits {
		ch <- prometheus.MustNewConstMetric(c.crashes, prometheus.CounterValue, float64(n), child)
	}
	for name, n := range sup.Escalations {
		ch <- prometheus.MustNewConstMetric(c.escalations, prometheus.CounterValue, float64(n), name)
	}
}
