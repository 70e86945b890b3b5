package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// jwtAlgorithms are the accepted values of auth.algorithms, with the shortest
// secret each one needs. Only HMAC algorithms fit a shared secret. RFC 7518,
// section 3.2, requires an HMAC key at least as long as the hash output. The
// sizes equal those of the gateway/auth package, which a test checks.
var jwtAlgorithms = []string{"HS256", "HS384", "HS512"}

var minSecretBytes = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// maxLength16 is the largest length that a u16 length field of the wire
// protocol can carry, so limits on such fields cannot exceed it.
const maxLength16 = 1<<16 - 1

// KeyError reports an invalid value of one configuration key.
type KeyError struct {
	// Key is the dotted key, such as "auth.jwt_secret".
	Key string
	// Source is where the value came from: "path/to/file.yaml:12",
	// "environment variable IRIS_EDGE_TCP_ADDR" or "flag --tcp-addr". It is
	// empty for built-in defaults and for values set in code.
	Source string
	// Err is the problem. It wraps ErrUnknownKey for unknown keys.
	Err error
}

// Error returns the key, the problem and, when known, the source.
func (e *KeyError) Error() string {
	if e.Source == "" {
		return e.Key + ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s: %v (from %s)", e.Key, e.Err, e.Source)
}

// Unwrap returns the problem, so errors.Is(err, ErrUnknownKey) works.
func (e *KeyError) Unwrap() error { return e.Err }

// ValidationError contains every invalid key found by Load or Validate.
type ValidationError struct {
	Errors []*KeyError
}

// Error returns all problems on one line, separated by "; ".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, ke := range e.Errors {
		parts[i] = ke.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the KeyErrors, so errors.As can reach the first one.
func (e *ValidationError) Unwrap() []error {
	out := make([]error, len(e.Errors))
	for i, ke := range e.Errors {
		out[i] = ke
	}
	return out
}

// Validate checks every setting and returns a *ValidationError that lists
// all invalid keys, or nil. Load calls it, so a loaded Config needs it again
// only after changes.
func (c *Config) Validate() error {
	return c.validate(nil)
}

// checker collects KeyErrors, naming the source of each key when it is known.
type checker struct {
	sources map[string]string
	errs    []*KeyError
}

func (v *checker) fail(key, format string, args ...any) {
	v.errs = append(v.errs, &KeyError{Key: key, Source: v.sources[key], Err: fmt.Errorf(format, args...)})
}

func (c *Config) validate(sources map[string]string) error {
	v := &checker{sources: sources}

	c.validateNode(v)
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	c.validateEdge(v)
	v.address("admin.addr", c.Admin.Addr)
	c.validateAuth(v)
	c.validateLimits(v)
	v.positiveDuration("store.dedup_window", c.Store.DedupWindow)
	v.positive("store.group_commit_max", c.Store.GroupCommitMax)
	c.validateCluster(v)
	c.validateOverload(v)
	if c.Router.PoolSize < 0 {
		v.fail("router.pool_size", "must be 0 (2 × GOMAXPROCS) or more, got %d", c.Router.PoolSize)
	}
	c.validatePorts(v)
	c.validateTLSPair(v)

	if len(v.errs) > 0 {
		return &ValidationError{Errors: v.errs}
	}
	return nil
}

func (c *Config) validateNode(v *checker) {
	v.oneOf("node.role", string(c.Node.Role), string(RoleAll), string(RoleCore), string(RoleEdge))
	if strings.TrimSpace(c.Node.DataDir) == "" {
		v.fail("node.data_dir", "must not be empty")
	}
	v.oneOf("node.environment", c.Node.Environment, "development", "production")
	if c.Node.Name == "" {
		v.fail("node.name", "must not be empty")
	} else if strings.ContainsFunc(c.Node.Name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		v.fail("node.name", "invalid name %q: must not contain spaces or control characters", c.Node.Name)
	}
}

func (c *Config) validateEdge(v *checker) {
	v.address("edge.tcp_addr", c.Edge.TCPAddr)
	v.address("edge.ws_addr", c.Edge.WSAddr)
	if !strings.HasPrefix(c.Edge.WSPath, "/") {
		v.fail("edge.ws_path", "invalid path %q: must start with /", c.Edge.WSPath)
	}
	v.positiveDuration("edge.login_timeout", c.Edge.LoginTimeout)
	v.positiveDuration("edge.redelivery_timeout", c.Edge.RedeliveryTimeout)
	v.positive("edge.window", c.Edge.Window)
	v.positive("edge.window_bytes", c.Edge.WindowBytes)
	v.positiveDuration("edge.slow_timeout", c.Edge.SlowTimeout)
	v.positiveDuration("edge.frame_timeout", c.Edge.FrameTimeout)
	v.positive("limits.login_concurrency", c.Limits.LoginConcurrency)
	v.oneOf("edge.duplicate_login", c.Edge.DuplicateLogin, "allow", "replace")
	v.positiveDuration("edge.write_timeout", c.Edge.WriteTimeout)
	if c.Edge.IdleTimeout < 0 {
		v.fail("edge.idle_timeout", "must be 0s (never) or more, got %s", c.Edge.IdleTimeout)
	}
}

func (c *Config) validateAuth(v *checker) {
	minSize := minSecretBytes["HS256"]
	for _, alg := range c.Auth.Algorithms {
		minSize = max(minSize, minSecretBytes[alg])
	}
	secretSize := len(c.Auth.JWTSecret)
	switch {
	case secretSize == 0 && c.Auth.Required:
		v.fail("auth.jwt_secret", "missing, but auth.required is true: set %s, or auth.jwt_secret_file, to at least %d random bytes",
			EnvVar("auth.jwt_secret"), minSize)
	case secretSize > 0 && secretSize < minSize:
		key := "auth.jwt_secret"
		if c.Auth.JWTSecretFile != "" {
			key = "auth.jwt_secret_file"
		}
		// The message gives the size only, never the secret.
		v.fail(key, "too short (%d bytes): %s needs at least %d random bytes, for example from: openssl rand -base64 %d",
			secretSize, strings.Join(c.Auth.Algorithms, ", "), minSize, minSize*3/2)
	}

	if len(c.Auth.Algorithms) == 0 {
		v.fail("auth.algorithms", "must list at least one of %s", strings.Join(jwtAlgorithms, ", "))
	}
	for _, alg := range c.Auth.Algorithms {
		switch {
		case strings.EqualFold(alg, "none"):
			v.fail("auth.algorithms", "algorithm %q is rejected because it accepts unsigned tokens", alg)
		case !slices.Contains(jwtAlgorithms, alg):
			v.fail("auth.algorithms", "unsupported algorithm %q: expected %s, because tokens are signed with the shared auth.jwt_secret",
				alg, strings.Join(jwtAlgorithms, ", "))
		}
	}
}

// zeroDisablesLimit lists the limits for which 0 turns the limit off, so
// they need only be 0 or more.
var zeroDisablesLimit = map[string]bool{
	"limits.conn_rate":              true,
	"limits.conn_burst":             true,
	"limits.login_failures":         true,
	"limits.login_failure_window":   true,
	"limits.max_connections":        true,
	"limits.max_connections_per_ip": true,
}

// validateLimits requires every limit to be positive, or not negative where
// 0 disables the limit. Limits whose value travels in a u16 length field are
// also capped at 65535.
func (c *Config) validateLimits(v *checker) {
	limits := reflect.ValueOf(c.Limits)
	for _, s := range settings {
		if !strings.HasPrefix(s.key, "limits.") {
			continue
		}
		field := limits.Field(s.index[1])
		if !zeroDisablesLimit[s.key] {
			v.positive(s.key, int(field.Int()))
			continue
		}
		if field.Type() == durationType {
			if d := time.Duration(field.Int()); d < 0 {
				v.fail(s.key, "must be 0s (no limit) or more, got %s", d)
			}
		} else if n := field.Int(); n < 0 {
			v.fail(s.key, "must be 0 (no limit) or more, got %d", n)
		}
	}

	for _, limit := range []struct {
		key   string
		value int
	}{
		{"limits.user_name", c.Limits.UserName},
		{"limits.target", c.Limits.Target},
		{"limits.e2ee_header", c.Limits.E2EEHeader},
	} {
		if limit.value > maxLength16 {
			v.fail(limit.key, "%d exceeds %d, the largest length a u16 length field of the wire protocol can carry",
				limit.value, maxLength16)
		}
	}
}

func (c *Config) validateCluster(v *checker) {
	cl := c.Cluster
	if strings.TrimSpace(cl.Name) == "" {
		v.fail("cluster.name", "must not be empty")
	}
	if strings.TrimSpace(cl.Host) == "" {
		v.fail("cluster.host", "must not be empty: set the address other nodes use to reach this one")
	}
	if cl.Port < 0 || cl.Port > 65535 {
		v.fail("cluster.port", "invalid port %d: must be 0 (any free port) to 65535", cl.Port)
	}
	if cl.DiscoveryPort < 0 || cl.DiscoveryPort > 65535 {
		v.fail("cluster.discovery_port", "invalid port %d: must be 0 to 65535", cl.DiscoveryPort)
	}
	if cl.Shards < 1 || cl.Shards > 65536 {
		v.fail("cluster.shards", "must be 1 to 65536, got %d", cl.Shards)
	}
	v.positiveDuration("cluster.request_timeout", cl.RequestTimeout)
	v.positiveDuration("cluster.join_timeout", cl.JoinTimeout)
	v.oneOf("cluster.provider", cl.Provider, "automanaged", "consul", "etcd", "k8s")
	for _, seed := range cl.Seeds {
		v.hostPort("cluster.seeds", seed)
	}

	role := c.Node.Role
	if (role == RoleCore || role == RoleEdge) && cl.Provider == "automanaged" && len(cl.Seeds) == 0 {
		v.fail("cluster.seeds", "must list the discovery address (host:port) of every core when node.role is %s and cluster.provider is automanaged", role)
	}
	if role == RoleCore && cl.Provider == "automanaged" && cl.DiscoveryPort == 0 {
		v.fail("cluster.discovery_port", "must be set when node.role is core: it is the port that cluster.seeds name")
	}
	if role == RoleCore {
		c.validateRaft(v)
	}
	if cl.Provider == "etcd" && len(cl.Etcd.Endpoints) == 0 {
		v.fail("cluster.etcd.endpoints", "must list at least one etcd address when cluster.provider is etcd")
	}
	if cl.Provider == "consul" && strings.TrimSpace(cl.Consul.Address) == "" {
		v.fail("cluster.consul.address", "must be set when cluster.provider is consul")
	}

	t := cl.TLS
	if t.Enabled() && (t.CAFile == "" || t.CertFile == "" || t.KeyFile == "") {
		v.fail("cluster.tls.ca_file", "cluster.tls needs all of ca_file, cert_file and key_file, or none")
	}
}

// validateRaft checks the raft settings of a core.
func (c *Config) validateRaft(v *checker) {
	r := c.Cluster.Raft
	if r.Bind == "" {
		v.fail("cluster.raft.bind", "must be set when node.role is core: the host:port of this core's raft listener")
	} else {
		v.hostPort("cluster.raft.bind", r.Bind)
	}
	if r.Advertise != "" {
		v.hostPort("cluster.raft.advertise", r.Advertise)
	}
	ids := make(map[string]bool)
	malformed := false
	for _, entry := range r.Bootstrap {
		id, addr, ok := strings.Cut(entry, "=")
		if !ok || strings.TrimSpace(id) == "" {
			v.fail("cluster.raft.bootstrap", "invalid entry %q: expected id=host:port", entry)
			malformed = true
			continue
		}
		if ids[id] {
			v.fail("cluster.raft.bootstrap", "raft ID %q is listed twice", id)
		}
		ids[id] = true
		v.hostPort("cluster.raft.bootstrap", addr)
	}
	self := r.ID
	if self == "" {
		self = c.Node.Name
	}
	if len(r.Bootstrap) > 0 && !malformed && !ids[self] {
		v.fail("cluster.raft.bootstrap", "does not list this core's raft ID %q (cluster.raft.id, or node.name when it is empty); a core outside the list it bootstraps never becomes a voter", self)
	}
	v.positiveDuration("cluster.raft.heartbeat_timeout", r.HeartbeatTimeout)
	v.positiveDuration("cluster.raft.election_timeout", r.ElectionTimeout)
	v.positiveDuration("cluster.raft.leader_lease_timeout", r.LeaderLeaseTimeout)
	v.positiveDuration("cluster.raft.snapshot_interval", r.SnapshotInterval)
	v.positive("cluster.raft.snapshot_threshold", r.SnapshotThreshold)
	v.positive("cluster.raft.trailing_logs", r.TrailingLogs)
	if r.ElectionTimeout > 0 && r.ElectionTimeout < r.HeartbeatTimeout {
		v.fail("cluster.raft.election_timeout", "must be at least cluster.raft.heartbeat_timeout (%s), got %s", r.HeartbeatTimeout, r.ElectionTimeout)
	}
	if r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		v.fail("cluster.raft.leader_lease_timeout", "must be at most cluster.raft.heartbeat_timeout (%s), got %s", r.HeartbeatTimeout, r.LeaderLeaseTimeout)
	}
}

// validateOverload requires positive thresholds that increase from typing to
// receipts, because each shedding level includes the ones below it.
func (c *Config) validateOverload(v *checker) {
	o := c.Overload
	v.positiveDuration("overload.typing", o.Typing)
	v.positiveDuration("overload.presence", o.Presence)
	v.positiveDuration("overload.receipts", o.Receipts)
	v.positiveDuration("overload.interval", o.Interval)
	if o.Typing > 0 && o.Presence > 0 && o.Presence <= o.Typing {
		v.fail("overload.presence", "must be greater than overload.typing (%s), got %s", o.Typing, o.Presence)
	}
	if o.Presence > 0 && o.Receipts > 0 && o.Receipts <= o.Presence {
		v.fail("overload.receipts", "must be greater than overload.presence (%s), got %s", o.Presence, o.Receipts)
	}
}

// validatePorts rejects two listeners on the same fixed port and
// overlapping hosts, which would otherwise fail only at bind time. Edge
// listeners count only when the role starts them.
func (c *Config) validatePorts(v *checker) {
	type listener struct {
		key, host string
		port      int
	}
	var listeners []listener
	add := func(key, addr string) {
		host, portText, err := net.SplitHostPort(addr)
		if err != nil {
			return // already reported by address()
		}
		if port, err := strconv.Atoi(portText); err == nil && port != 0 {
			listeners = append(listeners, listener{key, host, port})
		}
	}
	if c.Node.Role.RunsEdge() {
		add("edge.tcp_addr", c.Edge.TCPAddr)
		add("edge.ws_addr", c.Edge.WSAddr)
	}
	add("admin.addr", c.Admin.Addr)
	if c.Cluster.Port != 0 {
		listeners = append(listeners, listener{"cluster.port", c.Cluster.Host, c.Cluster.Port})
	}
	if c.Node.Role == RoleCore {
		if c.Cluster.DiscoveryPort != 0 {
			listeners = append(listeners, listener{"cluster.discovery_port", c.Cluster.Host, c.Cluster.DiscoveryPort})
		}
		add("cluster.raft.bind", c.Cluster.Raft.Bind)
	}

	for i, later := range listeners {
		for _, earlier := range listeners[:i] {
			if later.port == earlier.port && hostsOverlap(later.host, earlier.host) {
				v.fail(later.key, "port %d is already used by %s", later.port, earlier.key)
				break
			}
		}
	}
}

func hostsOverlap(a, b string) bool {
	wildcard := func(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }
	return a == b || wildcard(a) || wildcard(b)
}

func (v *checker) oneOf(key, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.fail(key, "invalid value %q: expected one of %s", value, strings.Join(allowed, ", "))
	}
}

func (v *checker) positive(key string, n int) {
	if n <= 0 {
		v.fail(key, "must be greater than 0, got %d", n)
	}
}

func (v *checker) positiveDuration(key string, d time.Duration) {
	if d <= 0 {
		v.fail(key, "must be greater than 0s, got %s", d)
	}
}

// address requires host:port with a numeric port. The host may be empty,
// which listens on all interfaces, and port 0 picks any free port.
func (v *checker) address(key, addr string) {
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(key, "invalid address %q: expected host:port, such as :8085 or 127.0.0.1:8085", addr)
		return
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		v.fail(key, "invalid port %q in %q: expected a number from 0 to 65535", portText, addr)
	}
}

// validateTLSPair checks that the client listeners' certificate and key are
// set together.
func (c *Config) validateTLSPair(v *checker) {
	t := c.Edge.TLS
	switch {
	case t.CertFile == "" && t.KeyFile != "":
		v.fail("edge.tls.cert_file", "must be set when edge.tls.key_file is")
	case t.CertFile != "" && t.KeyFile == "":
		v.fail("edge.tls.key_file", "must be set when edge.tls.cert_file is")
	}
}

// ValidateForStart checks what only a node that is about to start needs:
// that the listeners' certificate loads and, in production, that no unsafe
// setting is left. Commands that only read the configuration, such as iris
// token, skip it. Every problem is reported at once, each naming its key.
func (c *Config) ValidateForStart() error {
	return c.validateForStart(nil)
}

func (c *Config) validateForStart(sources map[string]string) error {
	v := &checker{sources: sources}
	t := c.Edge.TLS
	if t.CertFile != "" && t.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			v.fail("edge.tls.cert_file", "cannot load the certificate with edge.tls.key_file: %v", err)
		}
	}
	if ct := c.Cluster.TLS; c.Node.Role != RoleAll && ct.CAFile != "" && ct.CertFile != "" && ct.KeyFile != "" {
		c.checkClusterCert(v)
	}
	if c.Node.Environment == "production" {
		c.validateProduction(v)
	}
	if len(v.errs) > 0 {
		return &ValidationError{Errors: v.errs}
	}
	return nil
}

// validateProduction refuses settings that are unsafe on a production
// node, naming the key to fix.
func (c *Config) validateProduction(v *checker) {
	if !c.Auth.Required {
		v.fail("auth.required", "must be true when node.environment is production: without it anyone can log in as anyone")
	}
	if c.Auth.JWTSecret == "" && !c.Auth.Required {
		// With auth.required set, a missing secret is already reported.
		v.fail("auth.jwt_secret", "must be set when node.environment is production (at least 32 random bytes, for example from IRIS_AUTH_JWT_SECRET or auth.jwt_secret_file)")
	}
	if c.Node.Role.RunsEdge() && (c.Edge.TLS.CertFile == "" || c.Edge.TLS.KeyFile == "") {
		v.fail("edge.tls.cert_file", "must be set, with edge.tls.key_file, when node.environment is production: client traffic would be plain text")
	}
	if c.Node.Role != RoleAll && !c.Cluster.TLS.Enabled() {
		v.fail("cluster.tls.ca_file", "must be set, with cluster.tls.cert_file and key_file, when node.environment is production and node.role is %s: any host that reaches the cluster ports could join and read every message", c.Node.Role)
	}
}

// LoadClusterTLS loads the cluster's mutual TLS: this node's certificate,
// presented as server and as client, and the cluster CA, which verifies
// peers in both directions. It checks that the CA issued the certificate.
// Its errors are *KeyError values naming the key whose file is at fault.
func LoadClusterTLS(t ClusterTLS) (*tls.Config, error) {
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, &KeyError{Key: "cluster.tls.ca_file", Err: fmt.Errorf("read cluster CA: %w", err)}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &KeyError{Key: "cluster.tls.ca_file", Err: fmt.Errorf("%s contains no PEM certificate", t.CAFile)}
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, &KeyError{Key: "cluster.tls.cert_file", Err: fmt.Errorf("load cluster certificate %s with key %s: %w", t.CertFile, t.KeyFile, err)}
	}
	_, err = cert.Leaf.Verify(x509.VerifyOptions{
		Roots:     pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, &KeyError{Key: "cluster.tls.cert_file", Err: fmt.Errorf("%s does not verify against the cluster CA in %s for use as server and client: %w", t.CertFile, t.CAFile, err)}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// hostPort requires host:port with a non-empty host and a port from 1 to
// 65535: an address another node dials.
func (v *checker) hostPort(key, addr string) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		v.fail(key, "invalid address %q: expected host:port, such as 10.0.0.5:7400", addr)
		return
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		v.fail(key, "invalid port %q in %q: expected a number from 1 to 65535", portText, addr)
	}
}

// checkClusterCert loads the cluster certificate and checks that it names the
// addresses other nodes dial: cluster.host and, on a core, the raft
// address. A peer would otherwise reject it at every connection, while the
// node itself looks healthy.
func (c *Config) checkClusterCert(v *checker) {
	cfg, err := LoadClusterTLS(c.Cluster.TLS)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			v.fail(ke.Key, "%v", ke.Err)
		} else {
			v.fail("cluster.tls.cert_file", "%v", err)
		}
		return
	}
	leaf := cfg.Certificates[0].Leaf
	hosts := []string{c.Cluster.Host}
	if c.Node.Role == RoleCore {
		raftAddr := c.Cluster.Raft.Advertise
		if raftAddr == "" {
			raftAddr = c.Cluster.Raft.Bind
		}
		if host, _, err := net.SplitHostPort(raftAddr); err == nil && host != "" {
			hosts = append(hosts, host)
		}
	}
	for _, host := range slices.Compact(hosts) {
		if err := leaf.VerifyHostname(host); err != nil {
			v.fail("cluster.tls.cert_file", "%s does not name %s, which other nodes dial, as a subject alternative name: %v", c.Cluster.TLS.CertFile, host, err)
		}
	}
}
