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
	"runtime/metrics"
	"sync"
	"sync/atomic"
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
	Raft func() *RaftStatus
	// ClientWS describes the node's WebSocket listener for the /chat page:
	// its bound address (nil on a node without one, such as a core), its
	// path and whether it speaks TLS.
	ClientWS func() (addr net.Addr, path string, tls bool)
	// ClientLimits are the node's limits on client input, which the /chat
	// page checks before it sends. Zero fields mean the protocol's defaults.
	ClientLimits ClientLimits
	// Backlog returns the unacked entries of all inboxes in this node's
	// store; false on a node without a store or while it is closed.
	Backlog func() (int64, bool)
	// Processes returns how many actors the node's actor system holds.
	Processes func() int
	Logger    *slog.Logger
}

// Server is a running admin server.
type Server struct {
	cfg     Config
	ln      net.Listener
	http    *http.Server
	started time.Time

	streams atomic.Int32 // open /events streams

	eventMu   sync.Mutex // guards eventData and eventAt
	eventData []byte     // the snapshot as JSON, shared by the event streams
	eventAt   time.Time
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
	registry.MustRegister(newCollector(&s.cfg))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /stats", s.stats)
	s.routeDashboard(mux)
	s.routeChat(mux)
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

// Member is one cluster member in this node's member list, or a member that left the
// list but whose last record this node still has.
type Member struct {
	ID      string   `json:"id"`
	Address string   `json:"address"`
	Kinds   []string `json:"kinds"`
	Self    bool     `json:"self,omitempty"` // the member is this node
	// Reachable is false when this node has not read a newer record of the member for a
	// few refreshes of the member list, or the member has left the list.
	Reachable bool `json:"reachable"`
	// RecordAgeMS is the time in milliseconds since this node read the member's record;
	// nil when the cluster provider keeps no records (every provider but automanaged).
	RecordAgeMS *int64 `json:"record_age_ms,omitempty"`
	// Raft is the member's raft state from its record, with LeaderAddr and Voters empty.
	// Its Lag is the highest commit index among the members minus this member's applied
	// index, unlike the Lag of Snapshot.Raft. Nil for a member that sent no raft state.
	Raft *RaftStatus `json:"raft,omitempty"`
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
	// Lag is how many committed entries this core has yet to apply.
	Lag uint64 `json:"lag"`
}

// Latency is a latency histogram in /stats: the count of each bucket, whose
// upper bounds are BoundsMS, then of the bucket above them.
type Latency struct {
	BoundsMS []float64 `json:"bounds_ms"`
	Counts   []uint64  `json:"counts"`
	Count    uint64    `json:"count"`
	SumMS    float64   `json:"sum_ms"`
	P50MS    float64   `json:"p50_ms"`
	P99MS    float64   `json:"p99_ms"`
}

// ActorKind counts the actors of one kind in /stats.
type ActorKind struct {
	Live    int64 `json:"live"`
	Mailbox int64 `json:"mailbox"` // messages waiting in their mailboxes
}

// Snapshot is the JSON document served at /stats.
type Snapshot struct {
	Node          string               `json:"node"`
	Role          string               `json:"role"`
	Members       []Member             `json:"members,omitempty"`
	Raft          *RaftStatus          `json:"raft,omitempty"`
	UptimeSeconds float64              `json:"uptime_seconds"`
	Goroutines    int                  `json:"goroutines"`
	HeapBytes     uint64               `json:"heap_bytes"`
	Sessions      map[string]int64     `json:"sessions"`
	Counters      map[string]uint64    `json:"counters"`
	Latency       map[string]Latency   `json:"latency"`
	Actors        map[string]ActorKind `json:"actors"`
	ActorsTotal   int                  `json:"actors_total"`
	DeadLetters   uint64               `json:"dead_letters"`
	InboxBacklog  *int64               `json:"inbox_backlog,omitempty"` // nil on a node without a store`
	Tree          *supervisor.Node     `json:"tree,omitempty"`
	Supervision   *supervisor.Stats    `json:"supervision,omitempty"`
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.snapshot())
}

// snapshot collects the node's state for /stats and the dashboard.
func (s *Server) snapshot() Snapshot {
	// runtime/metrics reads the heap size without stopping the program,
	// which runtime.ReadMemStats does.
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(heap)
	st := s.cfg.Stats
	snap := Snapshot{
		Node:          s.cfg.Node,
		Role:          s.cfg.Role,
		UptimeSeconds: time.Since(s.started).Seconds(),
		Goroutines:    runtime.NumGoroutine(),
		HeapBytes:     heap[0].Value.Uint64(),
		Sessions:      map[string]int64{"tcp": st.SessionsTCP.Load(), "ws": st.SessionsWS.Load()},
		Counters:      counters(st),
		Latency: map[string]Latency{
			"delivery":    latency(st.DeliveryLatency.Snapshot()),
			"store_write": latency(st.StoreWriteLatency.Snapshot()),
		},
		Actors:      make(map[string]ActorKind),
		DeadLetters: st.DeadLetters.Load(),
	}
	st.Actors.Each(func(name string, k *actors.Kind) {
		snap.Actors[name] = ActorKind{Live: k.Live(), Mailbox: k.Mailbox()}
	})
	if s.cfg.Processes != nil {
		snap.ActorsTotal = s.cfg.Processes()
	}
	if s.cfg.Backlog != nil {
		if n, ok := s.cfg.Backlog(); ok {
			snap.InboxBacklog = &n
		}
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
	return snap
}

// latency converts a histogram snapshot to its /stats form.
func latency(h actors.HistogramSnapshot) Latency {
	l := Latency{
		BoundsMS: make([]float64, len(actors.LatencyBounds)),
		Counts:   h.Counts,
		Count:    h.Count,
		SumMS:    milliseconds(h.Sum),
		P50MS:    milliseconds(h.Quantile(0.5)),
		P99MS:    milliseconds(h.Quantile(0.99)),
	}
	for i, b := range actors.LatencyBounds {
		l.BoundsMS[i] = milliseconds(b)
	}
	return l
}

func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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
		"writes":         st.Writes.Load(),
	}
}
