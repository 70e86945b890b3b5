// Package app builds and runs the application tree of one Iris node, as
// OTP builds an application from supervisors:
//
//	node (one_for_one)
//	├── store      Pebble store
//	├── cluster    proto.actor cluster member
//	├── shards     watches the shard grains the cluster activates here
//	├── routers    (one_for_one) router-0 … router-N-1
//	├── gateway    (one_for_one)
//	│   ├── registrar   repeats live sessions' registrations to shards
//	│   ├── sessions    (simple_one_for_one, temporary) one per connection
//	│   ├── tcp         TCP listener
//	│   └── ws          WebSocket listener
//	└── admin      HTTP: /healthz, /readyz, /stats, /metrics
//
// Children start in that order and stop in reverse, so connections close
// before routing stops, and the store closes last, after its queued writes.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/cluster/replica"
	"github.com/iris-im/iris/cluster/replicated"
	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway"
	"github.com/iris-im/iris/gateway/admin"
	"github.com/iris-im/iris/gateway/auth"
	"github.com/iris-im/iris/gateway/wire"
	"github.com/iris-im/iris/storage"
	"github.com/iris-im/iris/supervisor"
)

// Node is a running Iris node.
type Node struct {
	cfg    *config.Config
	logger *slog.Logger

	// Stats counts what the node's actors do.
	Stats *actors.Stats
	// Supervision counts restarts and escalations in the node's tree.
	Supervision *supervisor.Events

	system      *actor.ActorSystem
	tree        *supervisor.Ref
	store       *storeRef                       // the grains' store: Pebble on role all, replicated on a core
	raft        atomic.Pointer[replica.Replica] // a core's raft replica while its store is open
	member      *memberRef
	clusterTLS  *tls.Config // cluster mTLS; nil without cluster.tls
	tcp, ws     *gateway.ListenerConfig
	routers     *actors.RouterPool
	tlsConfig   *tls.Config // of the client listeners; nil without edge.tls
	overload    *actors.Overload
	adminAddr   atomic.Pointer[string]
	earlyAdmin  atomic.Pointer[admin.Server] // started by Start, until the admin child takes it
	activations atomic.Int64
	ready       atomic.Bool
	done        chan struct{}
}

// Start builds the node described by cfg and returns once every child of
// its tree has started, so its listeners accept connections. On failure it
// stops whatever it had started and returns an error naming the child.
func Start(cfg *config.Config, logger *slog.Logger) (*Node, error) {
	// An edge keeps no durable state, so it needs no data dir.
	if cfg.Node.Role.RunsCore() {
		if err := ensureDataDir(cfg.Node.DataDir, cfg.Node.Environment == "production", logger); err != nil {
			return nil, err
		}
	}
	tlsConfig, err := listenerTLS(cfg.Edge.TLS)
	if err != nil {
		return nil, err
	}
	var clusterTLS *tls.Config
	if cfg.Cluster.TLS.Enabled() && cfg.Node.Role != config.RoleAll {
		if clusterTLS, err = config.LoadClusterTLS(cfg.Cluster.TLS); err != nil {
			return nil, err
		}
	}

	stats := &actors.Stats{}
	n := &Node{
		cfg:         cfg,
		logger:      logger,
		Stats:       stats,
		Supervision: supervisor.NewEvents(),
		store:       &storeRef{writeLatency: &stats.StoreWriteLatency},
		tlsConfig:   tlsConfig,
		clusterTLS:  clusterTLS,
		member:      &memberRef{},
		done:        make(chan struct{}),
	}
	n.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		limited := newLimitedHandler(logger.Handler(), 1, protoactorRepeatEvery)
		return slog.New(minLevel{Handler: limited, min: slog.LevelWarn}).With("component", "protoactor")
	}))

	n.system.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*actor.DeadLetterEvent); ok {
			stats.DeadLetters.Add(1)
		}
	})

	o := cfg.Overload
	n.overload = actors.NewOverload([3]time.Duration{o.Typing, o.Presence, o.Receipts}, o.Interval)
	n.overload.Logger = logger.With("component", "overload")
	n.overload.Start()

	// The admin server starts before the tree, so that /healthz responds and
	// /readyz returns 503 while the store opens and the node joins its
	// cluster. The tree's admin child takes the server over.
	early, err := admin.Start(n.adminConfig())
	if err != nil {
		n.overload.Stop()
		n.system.Shutdown()
		return nil, err
	}
	bound := early.Addr().String()
	n.adminAddr.Store(&bound)
	n.earlyAdmin.Store(early)

	tree, err := supervisor.Start(n.system, "node", n.spec())
	if err != nil {
		if s := n.earlyAdmin.Swap(nil); s != nil {
			s.Stop()
		}
		n.overload.Stop()
		n.system.Shutdown()
		return nil, err
	}
	n.tree = tree
	n.ready.Store(true)
	go func() {
		<-tree.Done()
		n.ready.Store(false)
		n.overload.Stop()
		n.system.Shutdown()
		close(n.done)
	}()

	logger.Info("node started", "node", cfg.Node.Name, "role", cfg.Node.Role,
		"tcp", addrString(n.TCPAddr()), "ws", addrString(n.WSAddr()), "admin", addrString(n.AdminAddr()),
		"data_dir", cfg.Node.DataDir)
	return n, nil
}

// spec returns the supervision tree of the node's role.
func (n *Node) spec() supervisor.Spec {
	spec := supervisor.Spec{
		Strategy:  supervisor.OneForOne,
		Intensity: 5,
		Period:    10 * time.Second,
		Logger:    n.logger.With("component", "supervisor"),
		Events:    n.Supervision,
	}
	shards := supervisor.ChildSpec{ID: "shards", Start: supervisor.StartActor(func(any) actor.Actor {
		return &shardsActor{activations: &n.activations}
	})}

	switch n.cfg.Node.Role {
	case config.RoleCore:
		spec.Children = []supervisor.ChildSpec{
			n.replicatedStoreSpec(n.clusterTLS),
			n.clusterSpec(n.store, n.store),
			{ID: "writer", Start: supervisor.StartActor(func(any) actor.Actor { return replicated.NewWriter(n.replicatedStore) })},
			shards,
			n.adminSpec(),
		}
	case config.RoleEdge:
		spec.Children = []supervisor.ChildSpec{
			n.clusterSpec(nil, nil),
			supervisor.SupervisorChild("routers", n.routersSpec()),
			supervisor.SupervisorChild("gateway", n.gatewaySpec()),
			n.adminSpec(),
		}
	default:
		spec.Children = []supervisor.ChildSpec{
			n.storeSpec(),
			n.clusterSpec(n.store, n.store),
			shards,
			supervisor.SupervisorChild("routers", n.routersSpec()),
			supervisor.SupervisorChild("gateway", n.gatewaySpec()),
			n.adminSpec(),
		}
	}
	return spec
}

func (n *Node) storeSpec() supervisor.ChildSpec {
	cfg := n.cfg
	opts := storage.Options{
		Dir:          filepath.Join(cfg.Node.DataDir, "store"),
		DedupWindow:  cfg.Store.DedupWindow,
		MaxInbox:     cfg.Limits.Inbox,
		MaxBatch:     cfg.Store.GroupCommitMax,
		MaxGroupSize: cfg.Limits.GroupSize,
		Logger:       n.logger.With("component", "store"),
	}
	return supervisor.ChildSpec{
		ID:       "store",
		Start:    supervisor.StartActor(func(any) actor.Actor { return &storeActor{opts: opts, ref: n.store} }),
		Shutdown: 30 * time.Second, // closing waits for queued writes
	}
}

// clusterSpec is the cluster child: a one-member in-process cluster for role
// all, a member hosting the grain kinds for a core, a client for an edge.
// store and groups are the stores of the grains, nil on an edge.
func (n *Node) clusterSpec(store actors.Store, groups actors.GroupStore) supervisor.ChildSpec {
	cfg := n.cfg
	role := cfg.Node.Role
	opts := cluster.Options{
		Name:           cfg.Cluster.Name,
		Host:           cfg.Cluster.Host,
		Port:           cfg.Cluster.Port,
		RequestTimeout: cfg.Cluster.RequestTimeout,
		Logger:         n.logger.With("component", "cluster"),
		Provider:       cfg.Cluster.Provider,
		Seeds:          cfg.Cluster.Seeds,
		Registry: cluster.RegistryOptions{
			ConsulAddress: cfg.Cluster.Consul.Address,
			EtcdEndpoints: cfg.Cluster.Etcd.Endpoints,
			EtcdPrefix:    cfg.Cluster.Etcd.Prefix,
		},
		TLS:             n.clusterTLS,
		TopologyTimeout: cfg.Cluster.JoinTimeout,
	}
	if cfg.Cluster.DiscoveryPort != 0 {
		opts.DiscoveryAddr = net.JoinHostPort(cfg.Cluster.Host, fmt.Sprint(cfg.Cluster.DiscoveryPort))
	}
	if role == config.RoleCore {
		opts.Raft = n.raftSummary // every node reads it from this core's member record
	}
	if store != nil {
		shardKind := actors.NewShardKind(&actors.ShardConfig{
			ReplaceOnLogin: cfg.Edge.DuplicateLogin == "replace",
			Store:          store,
			Stats:          n.Stats,
			Logger:         n.limitedLogger("shard"),
			MaxPage:        fetchPage,
		})
		groupKind := actors.NewGroupKind(&actors.GroupConfig{
			Store: groups,
			ShardPID: func(user string) *actor.PID {
				return n.member.cluster().Get(cluster.ShardIdentity(user, cfg.Cluster.Shards), cluster.ShardKind)
			},
			Stats:  n.Stats,
			Logger: n.limitedLogger("group"),
		})
		opts.Kinds = []*protocluster.Kind{shardKind, groupKind}
	}

	start := func(system *actor.ActorSystem) (*cluster.Member, error) {
		switch role {
		case config.RoleCore:
			return cluster.StartMember(system, opts)
		case config.RoleEdge:
			return cluster.StartClient(system, opts, cluster.ShardKind)
		}
		return cluster.StartLocalMember(system, opts)
	}
	return supervisor.ChildSpec{
		ID:       "cluster",
		Start:    supervisor.StartActor(func(any) actor.Actor { return &clusterActor{start: start, member: n.member} }),
		Shutdown: 10 * time.Second,
	}
}

// fetchPage is how many inbox entries a session reads at once at login.
const fetchPage = 512

func (n *Node) routersSpec() supervisor.Spec {
	props := &actors.RouterConfig{
		Cluster: n.member.cluster,
		Shards:  n.cfg.Cluster.Shards,
		Stats:   n.Stats,
		Logger:  n.limitedLogger("router"),
	}
	spec := supervisor.Spec{Strategy: supervisor.OneForOne, Intensity: 10, Period: 10 * time.Second}
	for i := range n.cfg.Router.EffectivePoolSize() {
		spec.Children = append(spec.Children, supervisor.ChildSpec{
			ID:    fmt.Sprintf("router-%d", i),
			Start: supervisor.StartActor(func(any) actor.Actor { return actors.NewRouter(props) }, n.Stats.Actors.Router.PropsOptions()...),
		})
	}
	return spec
}

// routerNames returns the PID ids of the routers: a supervised child's id is
// its supervisor's id, a slash, and the child's id, on every incarnation.
func (n *Node) routerNames() []string {
	names := make([]string, n.cfg.Router.EffectivePoolSize())
	for i := range names {
		names[i] = fmt.Sprintf("node/routers/router-%d", i)
	}
	return names
}

func (n *Node) gatewaySpec() supervisor.Spec {
	cfg := n.cfg
	routers := actors.NewRouterPool(n.system, n.routerNames())
	n.routers = routers

	var verifier actors.Verifier
	if cfg.Auth.JWTSecret != "" {
		verifier = auth.NewVerifier([]byte(cfg.Auth.JWTSecret), cfg.Auth.Issuer, cfg.Auth.Algorithms)
	}
	sessionCfg := &actors.SessionConfig{
		Limits:            wireLimits(cfg.Limits),
		LoginTimeout:      cfg.Edge.LoginTimeout,
		RedeliveryTimeout: cfg.Edge.RedeliveryTimeout,
		RequestTimeout:    cfg.Cluster.RequestTimeout,
		MaxInflight:       1024,
		Window:            cfg.Edge.Window,
		WindowBytes:       cfg.Edge.WindowBytes,
		SlowTimeout:       cfg.Edge.SlowTimeout,
		FrameTimeout:      cfg.Edge.FrameTimeout,
		IdleTimeout:       cfg.Edge.IdleTimeout,
		FetchPage:         fetchPage,
		AuthRequired:      cfg.Auth.Required,
		Verifier:          verifier,
		Routers:           routers,
		Registrar:         actor.NewPID(n.system.Address(), "node/gateway/registrar"),
		Limiter:           actors.NewRateLimiter(float64(cfg.Limits.SendRate), cfg.Limits.SendBurst),
		Load:              n.overload,
		Logins:            actors.NewLoginGuard(cfg.Limits.LoginFailures, cfg.Limits.LoginFailureWindow),
		LoginGate:         make(chan struct{}, cfg.Limits.LoginConcurrency),
		Stats:             n.Stats,
		Logger:            n.limitedLogger("session"),
	}

	sessions := supervisor.NewRef(n.system, actor.NewPID(n.system.Address(), "node/gateway/sessions"))
	startSession := func(conn actors.Conn) (*actor.PID, error) { return sessions.StartSimpleChild(conn) }
	// One limiter for both listeners: the rate is per client address,
	// whichever transport it uses.
	ipLimit := gateway.NewIPLimiter(float64(cfg.Limits.ConnRate), cfg.Limits.ConnBurst, 0)
	conns := gateway.NewConnCounter(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerIP)
	n.tcp = n.listenerConfig("tcp", cfg.Edge.TCPAddr, startSession, ipLimit, conns)
	n.ws = n.listenerConfig("ws", cfg.Edge.WSAddr, startSession, ipLimit, conns)
	n.tcp.TLS, n.ws.TLS = n.tlsConfig, n.tlsConfig

	return supervisor.Spec{
		Strategy:  supervisor.OneForOne,
		Intensity: 10,
		Period:    10 * time.Second,
		Children: []supervisor.ChildSpec{
			{ID: "registrar", Start: supervisor.StartActor(func(any) actor.Actor {
				// A shard that starts asks for a refresh at once, so the
				// periodic one is only a safety net, kept cheap for nodes
				// with many idle connections.
				return actors.NewRegistrar(&actors.RegistrarConfig{Routers: routers, Shards: cfg.Cluster.Shards, Every: 10 * time.Second})
			})},
			supervisor.SupervisorChild("sessions", supervisor.Spec{
				Strategy: supervisor.SimpleOneForOne,
				Children: []supervisor.ChildSpec{{
					ID:       "session",
					Restart:  supervisor.Temporary, // its state dies with its connection
					Shutdown: 5 * time.Second,
					Start: supervisor.StartActor(func(arg any) actor.Actor {
						return actors.NewSession(sessionCfg, arg.(actors.Conn))
					}, n.Stats.Actors.Session.PropsOptions()...),
				}},
			}),
			{ID: "tcp", Start: supervisor.StartActor(gateway.NewListener(n.tcp))},
			{ID: "ws", Start: supervisor.StartActor(gateway.NewListener(n.ws))},
		},
	}
}

func (n *Node) listenerConfig(transport, addr string, start gateway.SessionStarter, ipLimit *gateway.IPLimiter, conns *gateway.ConnCounter) *gateway.ListenerConfig {
	return &gateway.ListenerConfig{
		IPLimit:      ipLimit,
		Conns:        conns,
		OnReject:     func(string) { n.Stats.ConnRejected.Add(1) },
		Transport:    transport,
		Addr:         addr,
		WSPath:       n.cfg.Edge.WSPath,
		WriteTimeout: n.cfg.Edge.WriteTimeout,
		ReadBuffer:   4 << 10,
		KeepAlive:    n.cfg.Edge.KeepAlive,
		PingInterval: n.cfg.Edge.WSPingInterval,
		MaxWSMessage: n.cfg.Limits.ReceiveBuffer,
		System:       n.system,
		Start:        start,
		Logger:       n.limitedLogger("gateway"),
	}
}

func (n *Node) adminSpec() supervisor.ChildSpec {
	cfg := n.adminConfig()
	return supervisor.ChildSpec{
		ID: "admin",
		Start: supervisor.StartActor(func(any) actor.Actor {
			return &adminActor{cfg: cfg, addr: &n.adminAddr, early: &n.earlyAdmin}
		}),
	}
}

// adminConfig returns the settings of the node's admin server.
func (n *Node) adminConfig() admin.Config {
	cfg := admin.Config{
		Addr:        n.cfg.Admin.Addr,
		Stats:       n.Stats,
		Ready:       n.isReady,
		Tree:        n.startedTree,
		Supervision: n.Supervision,
		Pprof:       n.cfg.Admin.Pprof,
		Logger:      n.logger.With("component", "admin"),
		Node:        n.cfg.Node.Name,
		Role:        string(n.cfg.Node.Role),
	}
	if n.cfg.Node.Role != config.RoleAll {
		cfg.Members = n.members
	}
	if n.cfg.Node.Role == config.RoleCore {
		cfg.Raft = n.raftStatus
	}
	if n.cfg.Node.Role != config.RoleEdge {
		cfg.Backlog = n.store.backlog
	}
	cfg.Processes = n.processes
	cfg.ClientWS = func() (net.Addr, string, bool) {
		return n.WSAddr(), n.cfg.Edge.WSPath, n.cfg.Edge.TLS.CertFile != ""
	}
	cfg.ClientLimits = admin.ClientLimits{Message: n.cfg.Limits.Message, UserName: n.cfg.Limits.UserName, Target: n.cfg.Limits.Target, ReceiveBuffer: n.cfg.Limits.ReceiveBuffer}
	return cfg
}

// limitedLogger returns the logger of a component whose lines clients can
// cause, one per connection or per request: each message is written at most
// connLogBurst times per connLogEvery.
func (n *Node) limitedLogger(component string) *slog.Logger {
	return slog.New(newLimitedHandler(n.logger.Handler(), connLogBurst, connLogEvery)).With("component", component)
}

// processes counts the processes of the node's actor system.
func (n *Node) processes() int {
	total := 0
	for _, bucket := range n.system.ProcessRegistry.LocalPIDs.LocalPIDs {
		total += bucket.Count()
	}
	return total
}

// isReady reports whether the node serves: its tree has started and, in a
// cluster, a core has a raft leader and an edge has a core that hosts
// shards.
func (n *Node) isReady() bool {
	if !n.ready.Load() {
		return false
	}
	switch n.cfg.Node.Role {
	case config.RoleCore:
		rep := n.raft.Load()
		if rep == nil {
			return false
		}
		leader, _ := rep.Leader()
		return leader != ""
	case config.RoleEdge:
		m := n.member.p.Load()
		return m != nil && len(m.MembersOf(cluster.ShardKind)) > 0
	}
	return true
}

// Stop stops the tree in reverse start order: the admin server, the
// listeners and every session, the routers, the cluster membership, and
// last the store after its queued writes. It returns when the node has
// stopped or ctx ends.
func (n *Node) Stop(ctx context.Context) error {
	n.ready.Store(false)
	if err := n.tree.Stop(ctx); err != nil {
		return fmt.Errorf("node stop: %w", err)
	}
	select {
	case <-n.done:
	case <-ctx.Done():
		return fmt.Errorf("node stop: %w", ctx.Err())
	}
	n.logger.Info("node stopped", "node", n.cfg.Node.Name)
	return nil
}

// Done is closed when the node has stopped, by Stop or because its tree
// gave up after too many restarts.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped on its own, or nil.
func (n *Node) Err() error { return n.tree.Err() }

// RouterPool returns the node's routers.
func (n *Node) RouterPool() *actors.RouterPool { return n.routers }

// startedTree returns the tree once the node has started; before that the
// admin server reports no tree.
func (n *Node) startedTree() (supervisor.Node, error) {
	if !n.ready.Load() {
		return supervisor.Node{}, errors.New("node is starting")
	}
	return n.tree.Tree()
}

// Tree returns the node's running supervision tree.
func (n *Node) Tree() (supervisor.Node, error) { return n.tree.Tree() }

// TCPAddr returns the bound TCP listener address, or nil on a core.
func (n *Node) TCPAddr() net.Addr {
	if n.tcp == nil {
		return nil
	}
	return tcpAddr(n.tcp.BoundAddr())
}

// WSAddr returns the bound WebSocket listener address, or nil on a core.
func (n *Node) WSAddr() net.Addr {
	if n.ws == nil {
		return nil
	}
	return tcpAddr(n.ws.BoundAddr())
}

// AdminAddr returns the bound admin server address.
func (n *Node) AdminAddr() net.Addr {
	if p := n.adminAddr.Load(); p != nil {
		return tcpAddr(*p)
	}
	return nil
}

// listenerTLS loads the client listeners' certificate. TLS 1.2 is the
// oldest version accepted; Go negotiates 1.3 with clients that offer it.
func listenerTLS(t config.EdgeTLS) (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("edge.tls.cert_file: load %s with %s: %w", t.CertFile, t.KeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}

// ensureDataDir creates the data directory on a node's first start. An
// existing path that is not a directory is an error. In production a
// missing directory is an error too: it may be a volume that failed to
// mount, and starting empty would look like every inbox was lost.
func ensureDataDir(dir string, production bool, logger *slog.Logger) error {
	info, err := os.Stat(dir)
	switch {
	case err == nil && !info.IsDir():
		return fmt.Errorf("node.data_dir %s is not a directory", dir)
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("node.data_dir %s: %w", dir, err)
	case production:
		return fmt.Errorf("node.data_dir %s does not exist; create it for a new node (in production a missing data dir is not replaced by an empty one)", dir)
	}
	// Owner-only, because it holds every message.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create node.data_dir %s: %w", dir, err)
	}
	logger.Warn("data dir did not exist; created it with an empty store", "data_dir", dir)
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func wireLimits(l config.Limits) wire.Limits {
	w := wire.DefaultLimits()
	w.MaxUserName = l.UserName
	w.MaxTarget = l.Target
	w.MaxMessage = l.Message
	w.MaxCBOR = l.CBOR
	w.MaxKeyBundle = l.KeyBundle
	w.MaxE2EEHeader = l.E2EEHeader
	w.MaxBatchBytes = l.BatchBytes
	w.MaxBatchEntries = l.BatchEntries
	w.RecvBuffer = l.ReceiveBuffer
	return w
}

// minLevel drops records below min; proto.actor logs routine events at
// info level that would drown the node's own log lines.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
