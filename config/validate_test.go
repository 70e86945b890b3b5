package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/auth"
)

func TestValidateNamesKey(t *testing.T) {
	cases := []struct {
		key    string
		change func(*Config)
	}{
		{"node.role", func(c *Config) { c.Node.Role = "primary" }},
		{"node.data_dir", func(c *Config) { c.Node.DataDir = " " }},
		{"node.name", func(c *Config) { c.Node.Name = "" }},
		{"node.name", func(c *Config) { c.Node.Name = "edge 1" }},
		{"log.level", func(c *Config) { c.Log.Level = "verbose" }},
		{"log.level", func(c *Config) { c.Log.Level = "INFO" }},
		{"log.format", func(c *Config) { c.Log.Format = "xml" }},
		{"edge.tcp_addr", func(c *Config) { c.Edge.TCPAddr = "8085" }},
		{"edge.tcp_addr", func(c *Config) { c.Edge.TCPAddr = ":http" }},
		{"edge.tcp_addr", func(c *Config) { c.Edge.TCPAddr = ":70000" }},
		{"edge.ws_addr", func(c *Config) { c.Edge.WSAddr = "" }},
		{"edge.ws_path", func(c *Config) { c.Edge.WSPath = "ws" }},
		{"edge.login_timeout", func(c *Config) { c.Edge.LoginTimeout = 0 }},
		{"edge.redelivery_timeout", func(c *Config) { c.Edge.RedeliveryTimeout = -time.Second }},
		{"edge.write_timeout", func(c *Config) { c.Edge.WriteTimeout = 0 }},
		{"edge.idle_timeout", func(c *Config) { c.Edge.IdleTimeout = -time.Second }},
		{"admin.addr", func(c *Config) { c.Admin.Addr = "localhost" }},
		{"auth.jwt_secret", func(c *Config) { c.Auth.Required = true }},
		{"auth.jwt_secret", func(c *Config) { c.Auth.JWTSecret = Secret(testSecret[:31]) }},
		{"auth.jwt_secret", func(c *Config) {
			c.Auth.JWTSecret = Secret(testSecret)
			c.Auth.Algorithms = []string{"HS512"}
		}},
		{"auth.algorithms", func(c *Config) { c.Auth.Algorithms = nil }},
		{"auth.algorithms", func(c *Config) { c.Auth.Algorithms = []string{"none"} }},
		{"auth.algorithms", func(c *Config) { c.Auth.Algorithms = []string{"RS256"} }},
		{"limits.user_name", func(c *Config) { c.Limits.UserName = 0 }},
		{"limits.user_name", func(c *Config) { c.Limits.UserName = 70000 }},
		{"limits.target", func(c *Config) { c.Limits.Target = -1 }},
		{"limits.target", func(c *Config) { c.Limits.Target = 65536 }},
		{"limits.message", func(c *Config) { c.Limits.Message = 0 }},
		{"limits.cbor", func(c *Config) { c.Limits.CBOR = 0 }},
		{"limits.key_bundle", func(c *Config) { c.Limits.KeyBundle = 0 }},
		{"limits.e2ee_header", func(c *Config) { c.Limits.E2EEHeader = 0 }},
		{"limits.e2ee_header", func(c *Config) { c.Limits.E2EEHeader = 1 << 16 }},
		{"limits.batch_bytes", func(c *Config) { c.Limits.BatchBytes = 0 }},
		{"limits.batch_entries", func(c *Config) { c.Limits.BatchEntries = 0 }},
		{"limits.receive_buffer", func(c *Config) { c.Limits.ReceiveBuffer = 0 }},
		{"limits.send_rate", func(c *Config) { c.Limits.SendRate = 0 }},
		{"limits.send_burst", func(c *Config) { c.Limits.SendBurst = 0 }},
		{"limits.group_size", func(c *Config) { c.Limits.GroupSize = 0 }},
		{"limits.inbox", func(c *Config) { c.Limits.Inbox = 0 }},
		{"limits.conn_rate", func(c *Config) { c.Limits.ConnRate = -1 }},
		{"limits.conn_burst", func(c *Config) { c.Limits.ConnBurst = -1 }},
		{"limits.login_failures", func(c *Config) { c.Limits.LoginFailures = -1 }},
		{"limits.login_failure_window", func(c *Config) { c.Limits.LoginFailureWindow = -time.Second }},
		{"overload.typing", func(c *Config) { c.Overload.Typing = 0 }},
		{"overload.presence", func(c *Config) { c.Overload.Presence = c.Overload.Typing }},
		{"overload.presence", func(c *Config) { c.Overload.Presence = -time.Millisecond }},
		{"overload.receipts", func(c *Config) { c.Overload.Receipts = c.Overload.Presence - time.Millisecond }},
		{"overload.interval", func(c *Config) { c.Overload.Interval = 0 }},
		{"store.dedup_window", func(c *Config) { c.Store.DedupWindow = 0 }},
		{"store.group_commit_max", func(c *Config) { c.Store.GroupCommitMax = 0 }},
		{"cluster.name", func(c *Config) { c.Cluster.Name = "" }},
		{"cluster.host", func(c *Config) { c.Cluster.Host = "" }},
		{"cluster.port", func(c *Config) { c.Cluster.Port = -1 }},
		{"cluster.port", func(c *Config) { c.Cluster.Port = 65536 }},
		{"cluster.shards", func(c *Config) { c.Cluster.Shards = 0 }},
		{"cluster.shards", func(c *Config) { c.Cluster.Shards = 65537 }},
		{"cluster.request_timeout", func(c *Config) { c.Cluster.RequestTimeout = 0 }},
		{"cluster.provider", func(c *Config) { c.Cluster.Provider = "zookeeper" }},
		{"cluster.seeds", func(c *Config) { c.Cluster.Seeds = []string{"no-port"} }},
		{"cluster.seeds", func(c *Config) { c.Node.Role = RoleEdge }},
		{"cluster.seeds", func(c *Config) { setCore(c); c.Cluster.Seeds = nil }},
		{"cluster.discovery_port", func(c *Config) { setCore(c); c.Cluster.DiscoveryPort = 0 }},
		{"cluster.discovery_port", func(c *Config) { c.Cluster.DiscoveryPort = 70000 }},
		{"cluster.raft.bind", func(c *Config) { setCore(c); c.Cluster.Raft.Bind = "" }},
		{"cluster.raft.bind", func(c *Config) { setCore(c); c.Cluster.Raft.Bind = "127.0.0.2:0" }},
		{"cluster.raft.bootstrap", func(c *Config) { setCore(c); c.Cluster.Raft.Bootstrap = []string{"127.0.0.2:7400"} }},
		{"cluster.raft.bootstrap", func(c *Config) {
			setCore(c)
			c.Cluster.Raft.ID = "a"
			c.Cluster.Raft.Bootstrap = []string{"a=127.0.0.2:7400", "a=127.0.0.3:7400"}
		}},
		{"cluster.raft.bootstrap", func(c *Config) {
			setCore(c)
			c.Cluster.Raft.ID = "core9"
			c.Cluster.Raft.Bootstrap = []string{"core1=127.0.0.2:7400", "core2=127.0.0.3:7400"}
		}},
		{"cluster.raft.election_timeout", func(c *Config) { setCore(c); c.Cluster.Raft.ElectionTimeout = 100 * time.Millisecond }},
		{"cluster.raft.leader_lease_timeout", func(c *Config) { setCore(c); c.Cluster.Raft.LeaderLeaseTimeout = time.Second }},
		{"cluster.raft.snapshot_threshold", func(c *Config) { setCore(c); c.Cluster.Raft.SnapshotThreshold = 0 }},
		{"cluster.raft.bind", func(c *Config) { setCore(c); c.Cluster.Raft.Bind = "127.0.0.1:9090"; c.Admin.Addr = "127.0.0.1:9090" }},
		{"cluster.tls.ca_file", func(c *Config) { c.Cluster.TLS.CertFile = "node.pem" }},
		{"cluster.etcd.endpoints", func(c *Config) { c.Cluster.Provider = "etcd"; c.Cluster.Etcd.Endpoints = nil }},
		{"router.pool_size", func(c *Config) { c.Router.PoolSize = -1 }},
		{"edge.ws_addr", func(c *Config) { c.Edge.WSAddr = c.Edge.TCPAddr }},
		{"admin.addr", func(c *Config) { c.Admin.Addr = "127.0.0.1:8086" }},
		{"cluster.port", func(c *Config) { c.Cluster.Port = 9090 }},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%d_%s", i, tc.key), func(t *testing.T) {
			cfg := Default()
			tc.change(cfg)
			list := keyErrors(t, cfg.Validate())
			if len(list) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(list), list)
			}
			if list[0].Key != tc.key {
				t.Errorf("error names key %q, want %q", list[0].Key, tc.key)
			}
			if !strings.HasPrefix(list[0].Error(), tc.key+": ") {
				t.Errorf("message %q does not start with the key", list[0])
			}
		})
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	cfg := Default()
	cfg.Node.Role = "boss"
	cfg.Limits.Inbox = 0
	cfg.Cluster.Shards = 0

	err := cfg.Validate()
	list := keyErrors(t, err)
	for _, key := range []string{"node.role", "limits.inbox", "cluster.shards"} {
		if findKeyError(list, key) == nil {
			t.Errorf("no error for %s in %q", key, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message %q spans several lines", err)
	}
}

func TestValidateAcceptsEdgeCases(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Config)
	}{
		{"port 0 everywhere", func(c *Config) {
			c.Edge.TCPAddr, c.Edge.WSAddr, c.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		}},
		{"same port on different hosts", func(c *Config) {
			c.Edge.TCPAddr, c.Edge.WSAddr = "127.0.0.1:7000", "127.0.0.2:7000"
		}},
		{"core ignores edge listeners", func(c *Config) {
			setCore(c)
			c.Edge.TCPAddr, c.Edge.WSAddr = ":9090", ":9090"
			c.Cluster.Port = 8085
		}},
		{"core with bootstrap list", func(c *Config) {
			setCore(c)
			c.Cluster.Raft.ID = "core1"
			c.Cluster.Raft.Bootstrap = []string{"core1=127.0.0.2:7400", "core2=127.0.0.3:7400"}
		}},
		{"bootstrap list names node.name", func(c *Config) {
			setCore(c)
			c.Node.Name = "core2"
			c.Cluster.Raft.Bootstrap = []string{"core1=127.0.0.2:7400", "core2=127.0.0.3:7400"}
		}},
		{"edge with seeds", func(c *Config) {
			c.Node.Role = RoleEdge
			c.Cluster.Seeds = []string{"127.0.0.2:7300"}
		}},
		{"core on etcd needs no seeds", func(c *Config) {
			setCore(c)
			c.Cluster.Provider, c.Cluster.Seeds, c.Cluster.DiscoveryPort = "etcd", nil, 0
		}},
		{"IPv6 address", func(c *Config) { c.Edge.TCPAddr = "[::1]:8085" }},
		{"idle timeout off", func(c *Config) { c.Edge.IdleTimeout = 0 }},
		{"secret for HS512", func(c *Config) {
			c.Auth.JWTSecret = Secret(strings.Repeat("x", 64))
			c.Auth.Algorithms = []string{"HS256", "HS512"}
			c.Auth.Required = true
		}},
		{"one shard", func(c *Config) { c.Cluster.Shards = 1 }},
		{"max shards", func(c *Config) { c.Cluster.Shards = 65536 }},
		{"u16 limits at max", func(c *Config) {
			c.Limits.UserName, c.Limits.Target, c.Limits.E2EEHeader = 65535, 65535, 65535
		}},
		{"connection limit off", func(c *Config) { c.Limits.ConnRate, c.Limits.ConnBurst = 0, 0 }},
		{"connection burst 0 alone", func(c *Config) { c.Limits.ConnBurst = 0 }},
		{"login limit off", func(c *Config) { c.Limits.LoginFailures, c.Limits.LoginFailureWindow = 0, 0 }},
		{"login window 0 alone", func(c *Config) { c.Limits.LoginFailureWindow = 0 }},
		{"overload thresholds 1ns apart", func(c *Config) {
			c.Overload.Typing, c.Overload.Presence, c.Overload.Receipts = 1, 2, 3
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.change(cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateOverloadOrderMessage(t *testing.T) {
	cfg := Default()
	cfg.Overload.Typing = 30 * time.Millisecond

	ke := findKeyError(keyErrors(t, cfg.Validate()), "overload.presence")
	if ke == nil {
		t.Fatal("no error for overload.presence when typing exceeds it")
	}
	if want := "must be greater than overload.typing (30ms), got 25ms"; !strings.Contains(ke.Error(), want) {
		t.Errorf("message %q does not contain %q", ke, want)
	}
}

func TestValidateHidesSecret(t *testing.T) {
	secret := "short-secret-value"
	cfg := Default()
	cfg.Auth.JWTSecret = Secret(secret)
	err := cfg.Validate()
	if err == nil {
		t.Fatal("short secret accepted")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("message %q contains the secret", err)
	}
	if !strings.Contains(err.Error(), "18 bytes") {
		t.Errorf("message %q does not give the secret's size", err)
	}
}

func TestSecretRedacted(t *testing.T) {
	cfg := Default()
	cfg.Auth.JWTSecret = Secret(testSecret)

	printed := fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg.Auth.JWTSecret)
	if strings.Contains(printed, testSecret) {
		t.Errorf("fmt output contains the secret: %s", printed)
	}

	encoded, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(encoded), testSecret) {
		t.Errorf("JSON contains the secret: %s", encoded)
	}

	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "secret", cfg.Auth.JWTSecret, "auth", cfg.Auth)
	if strings.Contains(logged.String(), testSecret) {
		t.Errorf("slog output contains the secret: %s", logged.String())
	}

	if string(cfg.Auth.JWTSecret) != testSecret {
		t.Error("string conversion does not return the secret")
	}
	if Secret("").String() != "" {
		t.Error("an empty secret prints as non-empty")
	}
}

func TestSecretSizesMatchAuthPackage(t *testing.T) {
	for _, alg := range jwtAlgorithms {
		want, ok := auth.MinSecretSize(alg)
		if !ok {
			t.Errorf("auth does not support %s", alg)
			continue
		}
		if got := minSecretBytes[alg]; got != want {
			t.Errorf("minimum secret for %s: config has %d, auth has %d", alg, got, want)
		}
	}
}

func TestKeyErrorUnwrap(t *testing.T) {
	cfg := Default()
	cfg.Limits.Inbox = 0
	var ke *KeyError
	if !errors.As(cfg.Validate(), &ke) {
		t.Fatal("errors.As found no *KeyError")
	}
	if ke.Key != "limits.inbox" {
		t.Errorf("key = %q, want limits.inbox", ke.Key)
	}
}

func TestRoleServices(t *testing.T) {
	cases := []struct {
		role       Role
		edge, core bool
	}{
		{RoleAll, true, true},
		{RoleCore, false, true},
		{RoleEdge, true, false},
	}
	for _, tc := range cases {
		if got := tc.role.RunsEdge(); got != tc.edge {
			t.Errorf("%s.RunsEdge() = %v, want %v", tc.role, got, tc.edge)
		}
		if got := tc.role.RunsCore(); got != tc.core {
			t.Errorf("%s.RunsCore() = %v, want %v", tc.role, got, tc.core)
		}
	}
}

func TestEffectivePoolSize(t *testing.T) {
	if got, want := (Router{}).EffectivePoolSize(), 2*runtime.GOMAXPROCS(0); got != want {
		t.Errorf("pool_size 0: got %d, want %d", got, want)
	}
	if got := (Router{PoolSize: 3}).EffectivePoolSize(); got != 3 {
		t.Errorf("pool_size 3: got %d", got)
	}
}

func TestZeroDisablesConnectionMaximums(t *testing.T) {
	c := Default()
	c.Limits.MaxConnections, c.Limits.MaxConnectionsPerIP = 0, 0
	if err := c.Validate(); err != nil {
		t.Fatalf("0 (no limit) for the connection maximums rejected: %v", err)
	}
	c.Limits.MaxConnectionsPerIP = -1
	if err := c.Validate(); err == nil {
		t.Fatal("a negative limits.max_connections_per_ip was accepted")
	}
}

// setCore makes c a valid core: seeds, a discovery port and a raft address.
func setCore(c *Config) {
	c.Node.Role = RoleCore
	c.Cluster.Seeds = []string{"127.0.0.2:7300", "127.0.0.3:7300"}
	c.Cluster.DiscoveryPort = 7300
	c.Cluster.Raft.Bind = "127.0.0.2:7400"
}
