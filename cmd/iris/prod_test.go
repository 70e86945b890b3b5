package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
	"github.com/iris-im/iris/gateway/tlstest"
)

// prodEnv returns the environment that completes config/prod.yaml on this
// machine: the certificates of the client listeners and of the cluster, and
// the JWT secret in a file. roots verifies the listeners' certificate.
func prodEnv(t *testing.T) (env []string, roots *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := tlstest.WriteSelfSigned(t)
	ca := tlstest.NewCA(t, "e2e cluster CA")
	nodeCert, nodeKey := ca.WriteNodeCert(t, dir, "node", net.ParseIP("127.0.0.1"))
	secretFile := filepath.Join(dir, "jwt_secret")
	if err := os.WriteFile(secretFile, []byte("e2e-prod-secret-0123456789abcdef-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env = []string{
		"IRIS_EDGE_TLS_CERT_FILE=" + certFile,
		"IRIS_EDGE_TLS_KEY_FILE=" + keyFile,
		"IRIS_CLUSTER_TLS_CA_FILE=" + ca.WriteCACert(t, dir),
		"IRIS_CLUSTER_TLS_CERT_FILE=" + nodeCert,
		"IRIS_CLUSTER_TLS_KEY_FILE=" + nodeKey,
		"IRIS_AUTH_JWT_SECRET_FILE=" + secretFile,
	}
	return env, &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// prodConfig is the example production configuration of the repository.
var prodConfig = filepath.Join("..", "..", "config", "prod.yaml")

// TestProdConfigServesTLSOnly starts iris with config/prod.yaml: clients
// with a token connect over TLS on both listeners, plaintext clients are
// refused, and the log is JSON.
func TestProdConfigServesTLSOnly(t *testing.T) {
	env, clientTLS := prodEnv(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil { // production refuses to create it
		t.Fatal(err)
	}
	s := newTestServer(t, dataDir, env...)
	s.args = []string{"--config", prodConfig}
	s.start()

	tokenCmd := exec.Command(irisBinary, "token", "--config", prodConfig, "--user", "alice")
	tokenCmd.Env = append(os.Environ(), env...)
	out, err := tokenCmd.Output()
	if err != nil {
		t.Fatalf("iris token: %v", err)
	}
	fields := strings.Fields(string(out))
	token := fields[len(fields)-1]

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, transport := range []string{tcp, client.TransportWebSocket} {
		c, err := client.Dial(ctx, transport, s.addr(transport), client.WithTLS(clientTLS))
		if err != nil {
			t.Fatalf("%s over TLS: %v", transport, err)
		}
		if err := c.Login2(ctx, "alice", token); err != nil {
			t.Errorf("%s login over TLS with a token: %v", transport, err)
		}
		_ = c.Close()

		if plain, err := client.Dial(ctx, transport, s.addr(transport)); err == nil {
			if err := plain.Login2(ctx, "alice", token); err == nil {
				t.Errorf("%s: a plaintext client logged in on the production listener", transport)
			}
			_ = plain.Close()
		}
	}

	data, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var record map[string]any
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &record); err != nil {
				t.Fatalf("log line %q is not JSON: %v", line, err)
			}
		}
	}
	if record == nil {
		t.Errorf("no JSON log line with config/prod.yaml:\n%s", data)
	}
}

// TestProdConfigRefusesUnsafeSettings starts iris with config/prod.yaml and
// one unsafe change at a time: each start fails with exit status 2 and a
// message that names the key to fix.
func TestProdConfigRefusesUnsafeSettings(t *testing.T) {
	env, _ := prodEnv(t)
	dataDir := t.TempDir()
	shortSecret := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(shortSecret, []byte("sixteen-bytes-xx"), 0o600); err != nil {
		t.Fatal(err)
	}
	without := func(prefix string) []string {
		var out []string
		for _, kv := range env {
			if !strings.HasPrefix(kv, prefix) {
				out = append(out, kv)
			}
		}
		return out
	}
	tests := []struct {
		name string
		env  []string
		key  string
	}{
		{"no secret", without("IRIS_AUTH_JWT_SECRET_FILE="), "auth.jwt_secret"},
		{"short secret", append(without("IRIS_AUTH_JWT_SECRET_FILE="), "IRIS_AUTH_JWT_SECRET_FILE="+shortSecret), "auth.jwt_secret_file"},
		{"auth off", append(env, "IRIS_AUTH_REQUIRED=false"), "auth.required"},
		{"no listener certificate", without("IRIS_EDGE_TLS_"), "edge.tls.cert_file"},
		{"listener certificate missing", append(without("IRIS_EDGE_TLS_CERT_FILE="), "IRIS_EDGE_TLS_CERT_FILE="+filepath.Join(dataDir, "absent.pem")), "edge.tls.cert_file"},
		{"edge without cluster TLS", append(without("IRIS_CLUSTER_TLS_"), "IRIS_NODE_ROLE=edge"), "cluster.tls.ca_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(irisBinary, "start", "--config", prodConfig, "--data-dir", dataDir,
				"--tcp-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
			cmd.Env = append(os.Environ(), tc.env...)
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stderr, &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if cmd.ProcessState.ExitCode() != 2 {
					t.Errorf("exit status %d (%v), want 2, the status of a configuration error", cmd.ProcessState.ExitCode(), err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("iris start ran with an unsafe setting; output:\n%s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.key) {
				t.Errorf("output does not name %s:\n%s", tc.key, stderr.String())
			}
		})
	}
}
