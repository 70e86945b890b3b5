package config

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iris-im/iris/gateway/tlstest"
)

// clearEnv blanks every IRIS_ variable for the test. Load treats an empty
// variable as unset, so the machine's environment cannot leak in.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, s := range settings {
		t.Setenv(EnvVar(s.key), "")
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keyErrors returns the KeyErrors inside err, failing the test when err is
// not a *ValidationError.
func keyErrors(t *testing.T, err error) []*KeyError {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %q (%T) is not a *ValidationError", err, err)
	}
	return ve.Errors
}

func findKeyError(list []*KeyError, key string) *KeyError {
	for _, ke := range list {
		if ke.Key == key {
			return ke
		}
	}
	return nil
}

const testSecret = "0123456789abcdef0123456789abcdef" // 32 bytes

func TestDefaultEqualsEmbeddedFile(t *testing.T) {
	clearEnv(t)
	loaded, err := Load(LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(loaded, want) {
		t.Errorf("Load() with no file differs from Default():\n got %+v\nwant %+v", loaded, want)
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedFileDocumentsEveryKey(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(defaultsYAML, &doc); err != nil {
		t.Fatal(err)
	}
	documented := make(map[string]bool)
	var walk func(prefix string, body *yaml.Node)
	walk = func(prefix string, body *yaml.Node) {
		for j := 0; j+1 < len(body.Content); j += 2 {
			key, value := body.Content[j], body.Content[j+1]
			if value.Kind == yaml.MappingNode {
				walk(prefix+key.Value+".", value)
				continue
			}
			comment := strings.TrimSpace(key.HeadComment + key.LineComment)
			documented[prefix+key.Value] = comment != ""
		}
	}
	walk("", doc.Content[0])

	for _, s := range settings {
		hasComment, present := documented[s.key]
		if !present {
			t.Errorf("%s is missing from iris.yaml", s.key)
		} else if !hasComment {
			t.Errorf("%s has no comment in iris.yaml", s.key)
		}
	}
}

func TestLoadPrecedence(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "iris.yaml", `
node:
  data_dir: /from/file
edge:
  tcp_addr: "127.0.0.1:7001"
  ws_addr: "127.0.0.1:7002"
admin:
  addr: "127.0.0.1:7003"
`)
	t.Setenv("IRIS_EDGE_WS_ADDR", "127.0.0.1:8002")
	t.Setenv("IRIS_ADMIN_ADDR", "127.0.0.1:8003")

	cfg, err := Load(LoadOptions{
		File:      file,
		Overrides: []Override{{Key: "admin.addr", Value: "127.0.0.1:9003", Flag: "--admin-addr"}},
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	if got, want := cfg.Edge.TCPAddr, "127.0.0.1:7001"; got != want {
		t.Errorf("edge.tcp_addr = %q, want %q from the file", got, want)
	}
	if got, want := cfg.Edge.WSAddr, "127.0.0.1:8002"; got != want {
		t.Errorf("edge.ws_addr = %q, want %q from the environment", got, want)
	}
	if got, want := cfg.Admin.Addr, "127.0.0.1:9003"; got != want {
		t.Errorf("admin.addr = %q, want %q from the flag", got, want)
	}
	if got, want := cfg.Node.DataDir, "/from/file"; got != want {
		t.Errorf("node.data_dir = %q, want %q from the file", got, want)
	}
	if got, want := cfg.Edge.WSPath, Default().Edge.WSPath; got != want {
		t.Errorf("edge.ws_path = %q, want default %q", got, want)
	}
}

func TestLoadFlagOverridesEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv("IRIS_NODE_ROLE", "core")
	t.Setenv("IRIS_LOG_LEVEL", "debug")
	t.Setenv("IRIS_CLUSTER_SEEDS", "127.0.0.2:7300")

	cfg, err := Load(LoadOptions{Overrides: []Override{{Key: "node.role", Value: "edge", Flag: "--role"}}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Node.Role != RoleEdge {
		t.Errorf("node.role = %q, want edge from the flag", cfg.Node.Role)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("log.level = %q, want debug from the environment", cfg.Log.Level)
	}
}

func TestLoadEnvironmentTypes(t *testing.T) {
	clearEnv(t)
	secret := strings.Repeat("s", 64)
	t.Setenv("IRIS_AUTH_JWT_SECRET", secret)
	t.Setenv("IRIS_AUTH_REQUIRED", "true")
	t.Setenv("IRIS_AUTH_ALGORITHMS", "HS256, HS512")
	t.Setenv("IRIS_EDGE_TCP_ADDR", "127.0.0.2:0")
	t.Setenv("IRIS_EDGE_LOGIN_TIMEOUT", "3s")
	t.Setenv("IRIS_NODE_DATA_DIR", "/tmp/iris-env")
	t.Setenv("IRIS_LIMITS_MESSAGE", "1000")
	t.Setenv("IRIS_CLUSTER_SHARDS", "16")

	cfg, err := Load(LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if string(cfg.Auth.JWTSecret) != secret {
		t.Error("auth.jwt_secret not taken from IRIS_AUTH_JWT_SECRET")
	}
	if !cfg.Auth.Required {
		t.Error("auth.required = false, want true")
	}
	if want := []string{"HS256", "HS512"}; !slices.Equal(cfg.Auth.Algorithms, want) {
		t.Errorf("auth.algorithms = %q, want %q", cfg.Auth.Algorithms, want)
	}
	if cfg.Edge.TCPAddr != "127.0.0.2:0" {
		t.Errorf("edge.tcp_addr = %q", cfg.Edge.TCPAddr)
	}
	if cfg.Edge.LoginTimeout != 3*time.Second {
		t.Errorf("edge.login_timeout = %s, want 3s", cfg.Edge.LoginTimeout)
	}
	if cfg.Node.DataDir != "/tmp/iris-env" {
		t.Errorf("node.data_dir = %q", cfg.Node.DataDir)
	}
	if cfg.Limits.Message != 1000 {
		t.Errorf("limits.message = %d, want 1000", cfg.Limits.Message)
	}
	if cfg.Cluster.Shards != 16 {
		t.Errorf("cluster.shards = %d, want 16", cfg.Cluster.Shards)
	}
}

func TestLoadConnectionAndOverloadKeys(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "limits.yaml", `
limits:
  conn_rate: 0
  login_failure_window: 30s
overload:
  typing: 5ms
  interval: 1s
`)
	t.Setenv("IRIS_LIMITS_CONN_BURST", "20")
	t.Setenv("IRIS_OVERLOAD_RECEIPTS", "80ms")

	cfg, err := Load(LoadOptions{
		File:      file,
		Overrides: []Override{{Key: "limits.login_failures", Value: "3", Flag: "--login-failures"}},
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Limits.ConnRate != 0 {
		t.Errorf("limits.conn_rate = %d, want 0 from the file", cfg.Limits.ConnRate)
	}
	if cfg.Limits.ConnBurst != 20 {
		t.Errorf("limits.conn_burst = %d, want 20 from the environment", cfg.Limits.ConnBurst)
	}
	if cfg.Limits.LoginFailures != 3 {
		t.Errorf("limits.login_failures = %d, want 3 from the flag", cfg.Limits.LoginFailures)
	}
	if cfg.Limits.LoginFailureWindow != 30*time.Second {
		t.Errorf("limits.login_failure_window = %s, want 30s from the file", cfg.Limits.LoginFailureWindow)
	}
	if cfg.Overload.Typing != 5*time.Millisecond {
		t.Errorf("overload.typing = %s, want 5ms from the file", cfg.Overload.Typing)
	}
	if cfg.Overload.Presence != Default().Overload.Presence {
		t.Errorf("overload.presence = %s, want the default %s", cfg.Overload.Presence, Default().Overload.Presence)
	}
	if cfg.Overload.Receipts != 80*time.Millisecond {
		t.Errorf("overload.receipts = %s, want 80ms from the environment", cfg.Overload.Receipts)
	}
	if cfg.Overload.Interval != time.Second {
		t.Errorf("overload.interval = %s, want 1s from the file", cfg.Overload.Interval)
	}
}

func TestLoadOverloadOrderNamesSource(t *testing.T) {
	clearEnv(t)
	t.Setenv("IRIS_OVERLOAD_RECEIPTS", "20ms")
	_, err := Load(LoadOptions{})
	ke := findKeyError(keyErrors(t, err), "overload.receipts")
	if ke == nil {
		t.Fatalf("no error for overload.receipts in %q", err)
	}
	if ke.Source != "environment variable IRIS_OVERLOAD_RECEIPTS" {
		t.Errorf("source = %q", ke.Source)
	}
}

func TestEnvVarNames(t *testing.T) {
	cases := map[string]string{
		"auth.jwt_secret": "IRIS_AUTH_JWT_SECRET",
		"edge.tcp_addr":   "IRIS_EDGE_TCP_ADDR",
		"node.data_dir":   "IRIS_NODE_DATA_DIR",
	}
	for key, want := range cases {
		if got := EnvVar(key); got != want {
			t.Errorf("EnvVar(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestLoadUnknownKeys(t *testing.T) {
	clearEnv(t)
	cases := []struct {
		name       string
		content    string
		key        string
		line       int
		suggestion string
	}{
		{"typo in key", "edge:\n  tcp_adr: \":1\"\n", "edge.tcp_adr", 2, "edge.tcp_addr"},
		{"key in wrong section", "node:\n  role: all\nedge:\n  addr: \":1\"\n", "edge.addr", 4, "admin.addr"},
		{"dash instead of underscore", "auth:\n  jwt-secret: x\n", "auth.jwt-secret", 2, "auth.jwt_secret"},
		{"unknown section", "metrics:\n  enabled: true\n", "metrics", 1, ""},
		{"key at top level", "tcp_addr: \":1\"\n", "tcp_addr", 1, "edge.tcp_addr"},
		{"upper case key", "Edge:\n  tcp_addr: \":1\"\n", "Edge", 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "bad.yaml", tc.content)
			_, err := Load(LoadOptions{File: file})
			list := keyErrors(t, err)

			ke := findKeyError(list, tc.key)
			if ke == nil {
				t.Fatalf("no error for key %q in %q", tc.key, err)
			}
			if !errors.Is(ke, ErrUnknownKey) {
				t.Errorf("error %q does not wrap ErrUnknownKey", ke)
			}
			wantSource := file + ":" + strconv.Itoa(tc.line)
			if ke.Source != wantSource {
				t.Errorf("source = %q, want %q", ke.Source, wantSource)
			}
			if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), file) {
				t.Errorf("message %q does not name the key and the file", err)
			}
			if tc.suggestion != "" && !strings.Contains(ke.Error(), "did you mean "+tc.suggestion) {
				t.Errorf("message %q does not suggest %s", ke, tc.suggestion)
			}
		})
	}
}

func TestLoadUnknownOverrideKey(t *testing.T) {
	clearEnv(t)
	_, err := Load(LoadOptions{Overrides: []Override{{Key: "edge.port", Value: "1", Flag: "--port"}}})
	ke := findKeyError(keyErrors(t, err), "edge.port")
	if ke == nil || !errors.Is(ke, ErrUnknownKey) {
		t.Fatalf("got %v, want an unknown key error for edge.port", err)
	}
	if !strings.Contains(ke.Error(), "--port") {
		t.Errorf("message %q does not name the flag", ke)
	}
}

func TestLoadFileErrorsNameSource(t *testing.T) {
	clearEnv(t)
	cases := []struct {
		name    string
		content string
		key     string
		line    int
		text    string
	}{
		{"bad role", "node:\n  role: boss\n", "node.role", 2, `invalid value "boss"`},
		{"duration without unit", "edge:\n  login_timeout: 10\n", "edge.login_timeout", 2, "no unit"},
		{"bad duration", "store:\n  dedup_window: soon\n", "store.dedup_window", 2, `invalid duration "soon"`},
		{"text for a number", "limits:\n  message: lots\n", "limits.message", 2, "expected an integer"},
		{"fraction for a number", "limits:\n  inbox: 1.5\n", "limits.inbox", 2, "expected an integer"},
		{"list for a string", "edge:\n  ws_path: [a, b]\n", "edge.ws_path", 2, "expected a string, found a list"},
		{"text for a boolean", "auth:\n  required: maybe\n", "auth.required", 2, "expected true or false"},
		{"number in algorithm list", "auth:\n  algorithms: [HS256, 5]\n", "auth.algorithms", 2, "item 1"},
		{"section is a scalar", "edge: 5\n", "edge", 1, "expected a mapping"},
		{"duplicate key", "edge:\n  ws_path: /a\n  ws_path: /b\n", "edge.ws_path", 3, "first defined on line 2"},
		{"duplicate section", "edge:\n  ws_path: /a\nedge:\n  ws_path: /b\n", "edge", 3, "first defined on line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "bad.yaml", tc.content)
			_, err := Load(LoadOptions{File: file})
			ke := findKeyError(keyErrors(t, err), tc.key)
			if ke == nil {
				t.Fatalf("no error for key %q in %q", tc.key, err)
			}
			if want := file + ":" + strconv.Itoa(tc.line); ke.Source != want {
				t.Errorf("source = %q, want %q", ke.Source, want)
			}
			if !strings.Contains(ke.Error(), tc.text) {
				t.Errorf("message %q does not contain %q", ke, tc.text)
			}
		})
	}
}

func TestLoadEnvironmentErrorNamesVariable(t *testing.T) {
	clearEnv(t)
	t.Setenv("IRIS_EDGE_LOGIN_TIMEOUT", "10")
	_, err := Load(LoadOptions{})
	ke := findKeyError(keyErrors(t, err), "edge.login_timeout")
	if ke == nil {
		t.Fatalf("no error for edge.login_timeout in %q", err)
	}
	if ke.Source != "environment variable IRIS_EDGE_LOGIN_TIMEOUT" {
		t.Errorf("source = %q", ke.Source)
	}
}

func TestLoadFlagErrorNamesFlag(t *testing.T) {
	clearEnv(t)
	_, err := Load(LoadOptions{Overrides: []Override{{Key: "edge.tcp_addr", Value: "8085", Flag: "--tcp-addr"}}})
	ke := findKeyError(keyErrors(t, err), "edge.tcp_addr")
	if ke == nil {
		t.Fatalf("no error for edge.tcp_addr in %q", err)
	}
	if ke.Source != "flag --tcp-addr" {
		t.Errorf("source = %q, want flag --tcp-addr", ke.Source)
	}
}

func TestLoadNullKeepsDefault(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "nulls.yaml", "edge:\nauth:\n  issuer:\n  required: false\n")
	cfg, err := Load(LoadOptions{File: file})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("null values changed the configuration:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadEmptyFile(t *testing.T) {
	clearEnv(t)
	cfg, err := Load(LoadOptions{File: writeFile(t, "empty.yaml", "# nothing set\n")})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Error("an empty file changed the configuration")
	}
}

func TestLoadFileProblems(t *testing.T) {
	clearEnv(t)

	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := Load(LoadOptions{File: missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: got %v, want an error naming %s", err, missing)
	}

	syntax := writeFile(t, "syntax.yaml", "edge:\n  tcp_addr: [\n")
	if _, err := Load(LoadOptions{File: syntax}); err == nil || !strings.Contains(err.Error(), syntax) {
		t.Errorf("YAML syntax error: got %v, want an error naming %s", err, syntax)
	}

	list := writeFile(t, "list.yaml", "- node\n- edge\n")
	if _, err := Load(LoadOptions{File: list}); err == nil || !strings.Contains(err.Error(), "expected sections") {
		t.Errorf("top-level list: got %v, want an error about sections", err)
	}
}

func TestLoadFillsNodeName(t *testing.T) {
	clearEnv(t)
	host := hostName() // os.Hostname, or a fixed name when the machine has none

	cfg, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Name != host {
		t.Errorf("node.name = %q, want the host name %q", cfg.Node.Name, host)
	}

	t.Setenv("IRIS_NODE_NAME", "edge-7")
	cfg, err = Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Name != "edge-7" {
		t.Errorf("node.name = %q, want edge-7", cfg.Node.Name)
	}
}

func TestProductionExampleLoads(t *testing.T) {
	clearEnv(t)
	t.Setenv("IRIS_AUTH_JWT_SECRET", testSecret)
	certFile, keyFile, _ := tlstest.WriteSelfSigned(t)
	t.Setenv("IRIS_EDGE_TLS_CERT_FILE", certFile)
	t.Setenv("IRIS_EDGE_TLS_KEY_FILE", keyFile)
	setClusterTLS(t)

	cfg, err := Load(LoadOptions{File: "prod.yaml", ForStart: true})
	if err != nil {
		t.Fatalf("Load prod.yaml: %v", err)
	}
	if !cfg.Auth.Required {
		t.Error("auth.required = false, want true")
	}
	if cfg.Log.Format != "json" {
		t.Errorf("log.format = %q, want json", cfg.Log.Format)
	}
	if cfg.Node.DataDir != "/var/lib/iris" {
		t.Errorf("node.data_dir = %q, want /var/lib/iris", cfg.Node.DataDir)
	}
}

func TestProductionExampleNeedsSecret(t *testing.T) {
	clearEnv(t)
	_, err := Load(LoadOptions{File: "prod.yaml"})
	ke := findKeyError(keyErrors(t, err), "auth.jwt_secret")
	if ke == nil {
		t.Fatalf("got %v, want an error for auth.jwt_secret", err)
	}
	if !strings.Contains(ke.Error(), "IRIS_AUTH_JWT_SECRET") {
		t.Errorf("message %q does not say how to set the secret", ke)
	}
}

func TestLoadReportsEveryBadKey(t *testing.T) {
	clearEnv(t)
	t.Setenv("IRIS_EDGE_LOGIN_TIMEOUT", "10")
	t.Setenv("IRIS_LOG_LEVEL", "loud")
	_, err := Load(LoadOptions{Overrides: []Override{{Key: "edge.tcp_addr", Value: "8085", Flag: "--tcp-addr"}}})
	list := keyErrors(t, err)

	for _, key := range []string{"edge.login_timeout", "log.level", "edge.tcp_addr"} {
		if findKeyError(list, key) == nil {
			t.Errorf("no error for %s in %q", key, err)
		}
	}
	if len(list) != 3 {
		t.Errorf("got %d errors, want 3: %q", len(list), err)
	}
	if ke := findKeyError(list, "edge.login_timeout"); ke != nil && !strings.Contains(ke.Error(), "has no unit") {
		t.Errorf("message %q does not say the unit is missing", ke)
	}
}

func TestUnknownEnvironmentVariableRejected(t *testing.T) {
	t.Setenv("IRIS_EDGE_TCP_ADR", "127.0.0.1:1")
	_, err := Load(LoadOptions{})
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "IRIS_EDGE_TCP_ADR") {
		t.Fatalf("Load with a misspelt variable = %v, want an unknown-key error naming IRIS_EDGE_TCP_ADR", err)
	}
}

// setClusterTLS points the cluster.tls keys at files made for the test.
func setClusterTLS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "test cluster CA")
	cert, key := ca.WriteNodeCert(t, dir, "node", net.ParseIP("127.0.0.1"))
	t.Setenv("IRIS_CLUSTER_TLS_CA_FILE", ca.WriteCACert(t, dir))
	t.Setenv("IRIS_CLUSTER_TLS_CERT_FILE", cert)
	t.Setenv("IRIS_CLUSTER_TLS_KEY_FILE", key)
}

func TestProductionRefusesUnsafeSettings(t *testing.T) {
	cert, key, _ := tlstest.WriteSelfSigned(t)
	safe := func(c *Config) {
		c.Node.Environment = "production"
		c.Auth.Required = true
		c.Auth.JWTSecret = Secret(strings.Repeat("s", 32))
		c.Edge.TLS.CertFile, c.Edge.TLS.KeyFile = cert, key
	}
	for _, tc := range []struct {
		key    string
		unsafe func(*Config)
	}{
		{"auth.required", func(c *Config) { c.Auth.Required = false }},
		{"auth.jwt_secret", func(c *Config) { c.Auth.JWTSecret = "" }},
		{"auth.jwt_secret", func(c *Config) { c.Auth.JWTSecret = "short" }},
		{"edge.tls.cert_file", func(c *Config) { c.Edge.TLS = EdgeTLS{} }},
		{"edge.tls.cert_file", func(c *Config) { c.Edge.TLS.CertFile = filepath.Join(t.TempDir(), "missing.pem") }},
		{"edge.tls.key_file", func(c *Config) { c.Edge.TLS.KeyFile = "" }},
		{"cluster.tls.ca_file", func(c *Config) {
			c.Node.Role = RoleEdge
			c.Cluster.Seeds = []string{"10.0.0.11:7947"}
		}},
		{"cluster.tls.cert_file", func(c *Config) {
			c.Node.Role = RoleEdge
			c.Cluster.Seeds = []string{"10.0.0.11:7947"}
			c.Cluster.TLS = ClusterTLS{CAFile: cert, CertFile: cert, KeyFile: filepath.Join(t.TempDir(), "missing.pem")}
		}},
	} {
		c := Default()
		safe(c)
		if err := errors.Join(c.Validate(), c.ValidateForStart()); err != nil {
			t.Fatalf("safe production config rejected: %v", err)
		}
		tc.unsafe(c)
		err := errors.Join(c.Validate(), c.ValidateForStart())
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("unsafe %s: Validate = %v, want an error naming %s", tc.key, err, tc.key)
		}
	}
}

func TestTokenLoadNeedsNoCertificateFiles(t *testing.T) {
	clearEnv(t)
	t.Setenv("IRIS_AUTH_JWT_SECRET", testSecret)
	if _, err := Load(LoadOptions{File: "prod.yaml"}); err != nil {
		t.Fatalf("Load prod.yaml without its certificate files, not for a start: %v", err)
	}
	if _, err := Load(LoadOptions{File: "prod.yaml", ForStart: true}); err == nil || !strings.Contains(err.Error(), "edge.tls.cert_file") {
		t.Fatalf("Load prod.yaml for a start without certificate files = %v, want an error naming edge.tls.cert_file", err)
	}
}

func TestProductionReportsEveryProblemAtOnce(t *testing.T) {
	c := Default()
	c.Node.Environment = "production"
	err := c.ValidateForStart()
	for _, key := range []string{"auth.required", "auth.jwt_secret", "edge.tls.cert_file"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("unsafe defaults in production = %v, want %s among the problems", err, key)
		}
	}
}

func TestClusterCertificateChecks(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "cluster CA")
	caFile := ca.WriteCACert(t, dir)
	good, goodKey := ca.WriteNodeCert(t, dir, "edge", net.ParseIP("127.0.0.5"))
	wrongHost, wrongHostKey := ca.WriteNodeCert(t, dir, "other", net.ParseIP("10.0.0.9"))
	foreign := tlstest.NewCA(t, "foreign CA")
	foreignCert, foreignKey := foreign.WriteNodeCert(t, t.TempDir(), "edge", net.ParseIP("127.0.0.5"))

	for _, tc := range []struct {
		name, key string
		tls       ClusterTLS
	}{
		{"certificate as CA file", "cluster.tls.ca_file", ClusterTLS{CAFile: goodKey, CertFile: good, KeyFile: goodKey}},
		{"foreign CA", "cluster.tls.cert_file", ClusterTLS{CAFile: caFile, CertFile: foreignCert, KeyFile: foreignKey}},
		{"host not named", "cluster.tls.cert_file", ClusterTLS{CAFile: caFile, CertFile: wrongHost, KeyFile: wrongHostKey}},
		{"key of another certificate", "cluster.tls.cert_file", ClusterTLS{CAFile: caFile, CertFile: good, KeyFile: wrongHostKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Node.Role = RoleEdge
			c.Cluster.Host = "127.0.0.5"
			c.Cluster.Seeds = []string{"127.0.0.2:7300"}
			c.Cluster.TLS = tc.tls
			err := c.ValidateForStart()
			ke := findKeyError(keyErrors(t, err), tc.key)
			if ke == nil {
				t.Fatalf("ValidateForStart = %v, want an error naming %s", err, tc.key)
			}
		})
	}

	c := Default()
	c.Node.Role = RoleEdge
	c.Cluster.Host = "127.0.0.5"
	c.Cluster.Seeds = []string{"127.0.0.2:7300"}
	c.Cluster.TLS = ClusterTLS{CAFile: caFile, CertFile: good, KeyFile: goodKey}
	if err := c.ValidateForStart(); err != nil {
		t.Fatalf("a certificate from the cluster CA naming cluster.host was rejected: %v", err)
	}
}

func TestJWTSecretFromFile(t *testing.T) {
	clearEnv(t)
	certFile, keyFile, _ := tlstest.WriteSelfSigned(t)
	t.Setenv("IRIS_EDGE_TLS_CERT_FILE", certFile)
	t.Setenv("IRIS_EDGE_TLS_KEY_FILE", keyFile)
	setClusterTLS(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("the file's secret is used without its line break", func(t *testing.T) {
		t.Setenv("IRIS_AUTH_JWT_SECRET_FILE", write("good", testSecret+"\n"))
		cfg, err := Load(LoadOptions{File: "prod.yaml", ForStart: true})
		if err != nil {
			t.Fatalf("Load prod.yaml with a secret file: %v", err)
		}
		if string(cfg.Auth.JWTSecret) != testSecret {
			t.Errorf("auth.jwt_secret from the file has %d bytes, want the %d of the file's first line", len(cfg.Auth.JWTSecret), len(testSecret))
		}
	})

	rejected := []struct {
		name, content, want string
		secretToo           bool
	}{
		{name: "empty", content: "\n", want: "is empty"},
		{name: "short", content: "only-16-bytes-xx", want: "too short (16 bytes)"},
		{name: "both", content: testSecret, want: "not both", secretToo: true},
		{name: "missing", want: "no such file"},
	}
	for _, tc := range rejected {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "absent")
			if tc.content != "" {
				path = write(tc.name, tc.content)
			}
			t.Setenv("IRIS_AUTH_JWT_SECRET_FILE", path)
			if tc.secretToo {
				t.Setenv("IRIS_AUTH_JWT_SECRET", testSecret)
			}
			_, err := Load(LoadOptions{File: "prod.yaml", ForStart: true})
			ke := findKeyError(keyErrors(t, err), "auth.jwt_secret_file")
			if ke == nil || !strings.Contains(ke.Error(), tc.want) {
				t.Fatalf("Load = %v, want an auth.jwt_secret_file error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Error("the error shows the secret")
			}
		})
	}
}
