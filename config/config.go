// Package config defines the settings of an Iris node: typed structs, their
// defaults, validation, and loading from four layers. Each layer overrides the
// one before it: the embedded iris.yaml (the defaults), a YAML file, environment
// variables named IRIS_<SECTION>_<KEY>, and command-line flags.
//
// This is the only package that imports viper. The rest of the server receives
// a validated *Config and never reads the environment or files itself.
package config

import (
	"log/slog"
	"os"
	"runtime"
	"time"
)

// Config contains every setting of one node. The yaml tags are the keys of
// the configuration file, and a key's environment variable is IRIS_ followed
// by the section and the key in upper case, for example IRIS_EDGE_TCP_ADDR.
type Config struct {
	Node     Node     `yaml:"node"`
	Log      Log      `yaml:"log"`
	Edge     Edge     `yaml:"edge"`
	Admin    Admin    `yaml:"admin"`
	Auth     Auth     `yaml:"auth"`
	Limits   Limits   `yaml:"limits"`
	Store    Store    `yaml:"store"`
	Cluster  Cluster  `yaml:"cluster"`
	Router   Router   `yaml:"router"`
	Overload Overload `yaml:"overload"`
}

// Role is the set of services a node runs.
type Role string

// Node roles. RoleAll runs everything in one process.
const (
	RoleAll  Role = "all"
	RoleCore Role = "core"
	RoleEdge Role = "edge"
)

// RunsEdge reports whether the role serves clients: the TCP and WebSocket
// listeners, sessions and routers.
func (r Role) RunsEdge() bool { return r == RoleAll || r == RoleEdge }

// RunsCore reports whether the role hosts shards, groups and the store.
func (r Role) RunsCore() bool { return r == RoleAll || r == RoleCore }

// Node contains the identity and storage location of this process.
type Node struct {
	// Role is all, core or edge. Default all.
	Role Role `yaml:"role"`
	// DataDir is the directory of the durable store. Default "./data".
	DataDir string `yaml:"data_dir"`
	// Name identifies the node, for example in logs. Default: the host
	// name, filled in by Load and Default when the value is empty.
	Name string `yaml:"name"`
	// Environment is "development" or "production". In production the
	// node refuses to start with unsafe settings: logins without a token,
	// no JWT secret, or client listeners without TLS. Default
	// "development".
	Environment string `yaml:"environment"`
}

// Log contains the settings of the slog logger.
type Log struct {
	// Level is the minimum level written: debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text (one key=value line per record) or json. Default text.
	Format string `yaml:"format"`
}

// Edge contains the settings of the client listeners and sessions.
type Edge struct {
	// TCPAddr is the host:port of the TCP listener. Default ":8085".
	TCPAddr string `yaml:"tcp_addr"`
	// WSAddr is the host:port of the WebSocket listener. Default ":8086".
	WSAddr string `yaml:"ws_addr"`
	// WSPath is the HTTP path that upgrades to WebSocket. Default "/ws".
	WSPath string `yaml:"ws_path"`
	// LoginTimeout is how long a connection may stay open without logging in
	// before the server closes it. Default 10s.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// RedeliveryTimeout is how long a delivery may stay unacknowledged before
	// the server sends it again on the same connection. Default 5s.
	RedeliveryTimeout time.Duration `yaml:"redelivery_timeout"`
	// Window is the maximum number of deliveries a connection may have
	// written and not yet acknowledged. Further entries wait in the inbox
	// until acknowledgements make room. Default 10000, the default inbox
	// limit, so that a client that reads its whole backlog before it
	// acknowledges anything still gets it.
	Window int `yaml:"window"`
	// WindowBytes is the maximum size in bytes of the deliveries a
	// connection may have written and not yet acknowledged. Default
	// 4194304 (4 MiB).
	WindowBytes int `yaml:"window_bytes"`
	// SlowTimeout is how long a connection whose window is full may go
	// without acknowledging anything before it is closed as a slow
	// consumer; its entries stay in the inbox. Default 30s.
	SlowTimeout time.Duration `yaml:"slow_timeout"`
	// WSPingInterval is how long a WebSocket client may be silent before
	// the server pings it; a client silent for twice this long, pong
	// included, is closed. Default 30s. 0s turns pings off.
	WSPingInterval time.Duration `yaml:"ws_ping_interval"`
	// FrameTimeout is how long a client may leave a frame unfinished
	// without sending more bytes before its connection is closed, so that
	// partial frames cannot hold receive buffers forever. Default 30s.
	FrameTimeout time.Duration `yaml:"frame_timeout"`
	// KeepAlive is the idle time after which the server starts TCP
	// keepalive probes on a client connection. A peer that responds to none of
	// three probes, KeepAlive/3 (at least 1s) apart, is dropped, so a vanished network
	// ends its session. Default 30s. 0s turns probes off.
	KeepAlive time.Duration `yaml:"keepalive"`
	// DuplicateLogin selects what a new login of a user who is already
	// connected does: "allow" keeps every session (several devices), and
	// "replace" closes the older sessions once they have passed on their
	// acknowledgements. Default "allow".
	DuplicateLogin string `yaml:"duplicate_login"`
	// TLS, when its files are set, makes both client listeners speak TLS
	// 1.2 or later (1.3 when the client offers it) on their usual ports.
	TLS EdgeTLS `yaml:"tls"`
	// WriteTimeout is the deadline of one write to a client. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout is how long a connection may send nothing before the
	// server closes it with "idle_timeout". Default 0, which means never:
	// v1 clients send nothing while they only receive.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// EdgeTLS contains the certificate of the client listeners.
type EdgeTLS struct {
	// CertFile is the PEM file of the certificate chain. Default "": no
	// TLS.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM file of the certificate's private key. Default "".
	KeyFile string `yaml:"key_file"`
}

// Admin contains the settings of the admin HTTP server (/healthz, /readyz,
// /stats, /metrics).
type Admin struct {
	// Addr is the host:port of the admin HTTP server. Default ":9090".
	Addr string `yaml:"addr"`
	// Pprof serves Go's profiler under /debug/pprof/ on the admin server.
	// Default false: profiles reveal internals and cost CPU while taken.
	Pprof bool `yaml:"pprof"`
}

// Auth contains the settings of JWT login.
type Auth struct {
	// Required rejects logins without a valid token. Default false.
	Required bool `yaml:"required"`
	// JWTSecret is the HMAC key that signs and verifies tokens. When set, it
	// needs at least 32 bytes, or 48 with HS384 and 64 with HS512 in
	// Algorithms. Default empty, which disables token checks.
	JWTSecret Secret `yaml:"jwt_secret"`
	// JWTSecretFile is a file that holds the JWT secret, read at start;
	// line breaks at its end are dropped. It replaces jwt_secret, which must
	// then be empty. Default empty: no file.
	JWTSecretFile string `yaml:"jwt_secret_file"`
	// Issuer is the required iss claim. Default empty, which skips the check.
	Issuer string `yaml:"issuer"`
	// Algorithms are the accepted JWT signing algorithms, out of HS256,
	// HS384 and HS512. Default [HS256].
	Algorithms []string `yaml:"algorithms"`
}

// Limits contains size and rate limits on client input. Sizes are in bytes.
type Limits struct {
	// UserName is the maximum length of a user name. Default 256.
	UserName int `yaml:"user_name"`
	// Target is the maximum length of a message's target name. Default 256.
	Target int `yaml:"target"`
	// Message is the maximum size of a message body. Default 65536.
	Message int `yaml:"message"`
	// CBOR is the maximum size of a CBOR payload. Default 262144.
	CBOR int `yaml:"cbor"`
	// KeyBundle is the maximum size of an E2EE key bundle upload. Default 8192.
	KeyBundle int `yaml:"key_bundle"`
	// E2EEHeader is the maximum size of an E2EE message header. Default 1024.
	E2EEHeader int `yaml:"e2ee_header"`
	// BatchBytes is the maximum size of a batch send's blob. Default 1048576.
	BatchBytes int `yaml:"batch_bytes"`
	// BatchEntries is the maximum number of messages in a batch send. Default 1000.
	BatchEntries int `yaml:"batch_entries"`
	// ReceiveBuffer is the maximum number of unparsed bytes buffered per
	// connection. Default 1048576.
	ReceiveBuffer int `yaml:"receive_buffer"`
	// SendRate is the number of messages per second a user may send in
	// steady state. Default 100.
	SendRate int `yaml:"send_rate"`
	// SendBurst is the number of messages a user may send at once above the
	// steady rate. Default 500.
	SendBurst int `yaml:"send_burst"`
	// GroupSize is the maximum number of members of a group. Default 256.
	GroupSize int `yaml:"group_size"`
	// Inbox is the maximum number of unacknowledged entries in one user's
	// inbox. A send to a full inbox is rejected. Default 10000.
	Inbox int `yaml:"inbox"`
	// ConnRate is the number of new connections per second that one IP
	// address (or IPv6 /64 prefix) may open to the client listeners in
	// steady state. Default 50. 0 disables the limit.
	ConnRate int `yaml:"conn_rate"`
	// ConnBurst is the number of connections one IP address may open at
	// once before ConnRate applies. Default 200. 0 disables the limit.
	ConnBurst int `yaml:"conn_burst"`
	// LoginFailures is the number of failed logins one account may have in
	// a row before its logins are rejected. The account then regains one
	// attempt every LoginFailureWindow / LoginFailures. Default 10. 0
	// disables the limit.
	LoginFailures int `yaml:"login_failures"`
	// LoginFailureWindow is the time over which LoginFailures failures are
	// allowed on average. Default 1m. 0s disables the limit.
	LoginFailureWindow time.Duration `yaml:"login_failure_window"`
	// MaxConnections is the maximum number of open client connections of a
	// node; further ones get "server_full". Default 100000. 0 disables it.
	// The process's open-file limit must be higher.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP is the maximum number of open client connections
	// from one address (IPv6: one /64). Default 1000. 0 disables it.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// LoginConcurrency is the number of logins a node runs at once; more
	// wait their turn in arrival order, so that a reconnect storm after a
	// restart is served fairly. Default 256.
	LoginConcurrency int `yaml:"login_concurrency"`
}

// Overload contains the thresholds of the overload monitor, which sheds
// optional traffic when the Go scheduler falls behind. The monitor compares
// the 99th percentile of the time runnable goroutines waited for a CPU with
// each threshold. Message delivery is never shed.
type Overload struct {
	// Typing is the latency from which typing notifications are dropped.
	// Default 10ms.
	Typing time.Duration `yaml:"typing"`
	// Presence is the latency from which presence queries are also
	// rejected. It must exceed Typing. Default 25ms.
	Presence time.Duration `yaml:"presence"`
	// Receipts is the latency from which read receipts are also dropped.
	// It must exceed Presence. Default 50ms.
	Receipts time.Duration `yaml:"receipts"`
	// Interval is the time between two samples of the latency. Default 250ms.
	Interval time.Duration `yaml:"interval"`
}

// Store contains the settings of the durable store.
type Store struct {
	// DedupWindow is how long a (sender, client id) pair is remembered so a
	// repeated send is not stored twice. Default 10m.
	DedupWindow time.Duration `yaml:"dedup_window"`
	// GroupCommitMax is the maximum number of operations written per fsync
	// (or per replicated log entry). Default 2048.
	GroupCommitMax int `yaml:"group_commit_max"`
}

// Cluster contains the settings of cluster membership, requests between
// nodes and, on cores, the raft replication of the store. A node of role all
// needs none of them beyond the defaults.
type Cluster struct {
	// Name is the cluster name. Nodes join only a cluster of the same name.
	// Default "iris".
	Name string `yaml:"name"`
	// Host is the address that other nodes use to reach this one, and that
	// the cluster port binds. Default "127.0.0.1".
	Host string `yaml:"host"`
	// Port is the cluster (remoting) port. Default 0, which picks any free
	// port; the member list carries the port picked.
	Port int `yaml:"port"`
	// Provider is how members find each other: automanaged (the Seeds
	// below), consul, etcd or k8s. Default automanaged.
	Provider string `yaml:"provider"`
	// Seeds are the discovery addresses (host:port) of the cores, which
	// the automanaged provider polls every 500 ms. List every core, the
	// same way on every node. Default empty, which only role all allows.
	Seeds []string `yaml:"seeds"`
	// DiscoveryPort is the port on Host where a core serves its member
	// record to the automanaged provider. Default 0, which only role all
	// and edges allow: a core must set it.
	DiscoveryPort int `yaml:"discovery_port"`
	// Shards is the number of shards that users are hashed into. Every node
	// of a cluster needs the same value. Default 256.
	Shards int `yaml:"shards"`
	// RequestTimeout is the deadline of one request to another node. Default 5s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// JoinTimeout is how long a starting core or edge waits for the member
	// list (an edge: for a member that hosts shards) before it gives up and
	// exits. Default 30s.
	JoinTimeout time.Duration `yaml:"join_timeout"`
	// Consul contains the settings of the consul provider.
	Consul ClusterConsul `yaml:"consul"`
	// Etcd contains the settings of the etcd provider.
	Etcd ClusterEtcd `yaml:"etcd"`
	// Raft contains the settings of the cores' raft group.
	Raft ClusterRaft `yaml:"raft"`
	// TLS is the cluster's mutual TLS for remoting, discovery and raft.
	TLS ClusterTLS `yaml:"tls"`
}

// ClusterConsul contains the settings of the consul provider.
type ClusterConsul struct {
	// Address is the host:port of the local Consul agent's HTTP API.
	// Default "127.0.0.1:8500".
	Address string `yaml:"address"`
}

// ClusterEtcd contains the settings of the etcd provider.
type ClusterEtcd struct {
	// Endpoints are the addresses of the etcd cluster. Default
	// ["127.0.0.1:2379"].
	Endpoints []string `yaml:"endpoints"`
	// Prefix is the key prefix under which members register. Default "/iris".
	Prefix string `yaml:"prefix"`
}

// ClusterRaft contains the settings of a core's raft replica.
type ClusterRaft struct {
	// ID identifies this core in the raft group; never run two cores with
	// the same ID. Default "": node.name.
	ID string `yaml:"id"`
	// Bind is the host:port of the raft listener. Default "": a core must
	// set it.
	Bind string `yaml:"bind"`
	// Advertise is the host:port other cores dial for raft. Default "":
	// Bind, which must then name a routable address.
	Advertise string `yaml:"advertise"`
	// Dir holds the raft log and snapshots. Default "": <node.data_dir>/raft.
	Dir string `yaml:"dir"`
	// Bootstrap lists the voters of a new cluster as id=host:port raft
	// addresses, the same list on every core. It is read only on a core's
	// first start, when Dir holds no raft state. Default empty: the core
	// waits to be added by the leader.
	Bootstrap []string `yaml:"bootstrap"`
	// HeartbeatTimeout is how long a follower waits for the leader before
	// it starts an election. Default 300ms.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout"`
	// ElectionTimeout is how long a candidate waits for votes. Default 300ms.
	ElectionTimeout time.Duration `yaml:"election_timeout"`
	// LeaderLeaseTimeout is how long a leader keeps leading without
	// hearing from a majority. Default 300ms; at most HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
	// SnapshotInterval is how often a core checks whether to snapshot its
	// store. Default 2m.
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	// SnapshotThreshold is the number of raft entries since the last
	// snapshot that makes a core take one. Default 8192.
	SnapshotThreshold int `yaml:"snapshot_threshold"`
	// TrailingLogs is the number of raft entries kept after a snapshot, so
	// a core that lags by less catches up from the log. Default 10240.
	TrailingLogs int `yaml:"trailing_logs"`
}

// ClusterTLS contains the files of the cluster's mutual TLS. When set, nodes
// accept cluster connections only from certificates the CA issued, and every
// node's certificate must name its cluster.host (and raft address host) as a
// DNS or IP subject alternative name.
type ClusterTLS struct {
	// CAFile is the PEM file of the cluster CA. Default "": no TLS.
	CAFile string `yaml:"ca_file"`
	// CertFile is the PEM file of this node's certificate. Default "".
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM file of the certificate's private key. Default "".
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether cluster TLS is configured.
func (t ClusterTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Router contains the settings of the message routers on an edge.
type Router struct {
	// PoolSize is the number of router actors. Default 0, which means
	// 2 × GOMAXPROCS (see EffectivePoolSize).
	PoolSize int `yaml:"pool_size"`
}

// EffectivePoolSize returns PoolSize, or 2 × GOMAXPROCS when PoolSize is 0.
func (r Router) EffectivePoolSize() int {
	if r.PoolSize > 0 {
		return r.PoolSize
	}
	return 2 * runtime.GOMAXPROCS(0)
}

// Secret is a string that fmt and slog print as [redacted], so a logged or
// printed Config does not leak it. Convert it with string(s) or []byte(s).
type Secret string

const redacted = "[redacted]"

// String returns [redacted], or "" when the secret is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the secret from the %#v verb too.
func (s Secret) GoString() string { return s.String() }

// LogValue hides the secret from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the secret from encoders such as encoding/json.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Default returns the built-in configuration. It equals what Load returns
// with no file, no IRIS_ environment variables and no flags, and a test keeps
// it equal to the embedded iris.yaml.
func Default() *Config {
	cfg := &Config{
		Node: Node{Role: RoleAll, DataDir: "./data", Environment: "development"},
		Log:  Log{Level: "info", Format: "text"},
		Edge: Edge{
			TCPAddr:           ":8085",
			WSAddr:            ":8086",
			WSPath:            "/ws",
			LoginTimeout:      10 * time.Second,
			RedeliveryTimeout: 5 * time.Second,
			Window:            10000,
			WindowBytes:       4 << 20,
			SlowTimeout:       30 * time.Second,
			KeepAlive:         30 * time.Second,
			FrameTimeout:      30 * time.Second,
			WSPingInterval:    30 * time.Second,
			DuplicateLogin:    "allow",
			WriteTimeout:      10 * time.Second,
		},
		Admin: Admin{Addr: ":9090"},
		Auth:  Auth{Algorithms: []string{"HS256"}},
		Limits: Limits{
			UserName:      256,
			Target:        256,
			Message:       65536,
			CBOR:          262144,
			KeyBundle:     8192,
			E2EEHeader:    1024,
			BatchBytes:    1048576,
			BatchEntries:  1000,
			ReceiveBuffer: 1048576,
			SendRate:      100,
			SendBurst:     500,
			GroupSize:     256,
			Inbox:         10000,

			ConnRate:            50,
			ConnBurst:           200,
			LoginFailures:       10,
			LoginFailureWindow:  time.Minute,
			MaxConnections:      100000,
			MaxConnectionsPerIP: 1000,
			LoginConcurrency:    256,
		},
		Store: Store{DedupWindow: 10 * time.Minute, GroupCommitMax: 2048},
		Cluster: Cluster{
			Name:           "iris",
			Host:           "127.0.0.1",
			Provider:       "automanaged",
			Seeds:          []string{},
			Shards:         256,
			RequestTimeout: 5 * time.Second,
			JoinTimeout:    30 * time.Second,
			Consul:         ClusterConsul{Address: "127.0.0.1:8500"},
			Etcd:           ClusterEtcd{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "/iris"},
			Raft: ClusterRaft{
				Bootstrap:          []string{},
				HeartbeatTimeout:   300 * time.Millisecond,
				ElectionTimeout:    300 * time.Millisecond,
				LeaderLeaseTimeout: 300 * time.Millisecond,
				SnapshotInterval:   2 * time.Minute,
				SnapshotThreshold:  8192,
				TrailingLogs:       10240,
			},
		},
		Overload: Overload{
			Typing:   10 * time.Millisecond,
			Presence: 25 * time.Millisecond,
			Receipts: 50 * time.Millisecond,
			Interval: 250 * time.Millisecond,
		},
	}
	cfg.fillDerived()
	return cfg
}

// fillDerived sets values whose default depends on the machine.
func (c *Config) fillDerived() {
	if c.Node.Name == "" {
		c.Node.Name = hostName()
	}
}

func hostName() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		// NOTE: every node without a host name gets this same name, so set
		// node.name on such machines.
		return "iris-node"
	}
	return name
}
