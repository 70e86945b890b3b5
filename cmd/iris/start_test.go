package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iris-im/iris/config"
)

// lockedBuffer is a bytes.Buffer that the command and the test may use from
// different goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeNode records how the start command drives it.
type fakeNode struct {
	done    chan struct{}
	stopErr error
	release chan struct{} // when not nil, Stop blocks until it is closed

	mu           sync.Mutex
	stopCalls    int
	stopDeadline time.Time
	hasDeadline  bool
}

func newFakeNode() *fakeNode { return &fakeNode{done: make(chan struct{})} }

func (n *fakeNode) Stop(ctx context.Context) error {
	n.mu.Lock()
	n.stopCalls++
	n.stopDeadline, n.hasDeadline = ctx.Deadline()
	n.mu.Unlock()
	if n.release != nil {
		<-n.release
	}
	return n.stopErr
}

func (n *fakeNode) Done() <-chan struct{} { return n.done }

func (n *fakeNode) stops() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopCalls
}

// testCLI is a cli whose node is fake and whose output is captured.
type testCLI struct {
	*cli
	stdout, stderr *lockedBuffer

	started chan *config.Config // receives the configuration of each start
}

// newTestCLI returns a cli whose default data directory is a temporary one,
// because start creates node.data_dir.
func newTestCLI(t *testing.T, n *fakeNode, startErr error) *testCLI {
	t.Helper()
	clearIrisEnv(t)
	t.Setenv("IRIS_NODE_DATA_DIR", filepath.Join(t.TempDir(), "data"))
	tc := &testCLI{
		stdout:  &lockedBuffer{},
		stderr:  &lockedBuffer{},
		started: make(chan *config.Config, 1),
	}
	tc.cli = &cli{
		stdout:      tc.stdout,
		stderr:      tc.stderr,
		now:         time.Now,
		stopTimeout: 10 * time.Second,
		startNode: func(cfg *config.Config, _ *slog.Logger) (node, error) {
			tc.started <- cfg
			if startErr != nil {
				return nil, startErr
			}
			return n, nil
		},
	}
	return tc
}

// clearIrisEnv blanks the IRIS_ variables of the test process, which the
// configuration treats as unset.
func clearIrisEnv(t *testing.T) {
	t.Helper()
	for _, entry := range os.Environ() {
		if name, _, _ := strings.Cut(entry, "="); strings.HasPrefix(name, "IRIS_") {
			t.Setenv(name, "")
		}
	}
}

// executeAsync runs the command line in a goroutine and returns a channel
// that receives the exit status.
func (tc *testCLI) executeAsync(ctx context.Context, args ...string) <-chan int {
	status := make(chan int, 1)
	go func() { status <- tc.execute(ctx, args) }()
	return status
}

func waitStatus(t *testing.T, status <-chan int, timeout time.Duration) int {
	t.Helper()
	select {
	case code := <-status:
		return code
	case <-time.After(timeout):
		t.Fatalf("command still running after %s", timeout)
		return -1
	}
}

func waitStarted(t *testing.T, tc *testCLI) *config.Config {
	t.Helper()
	select {
	case cfg := <-tc.started:
		return cfg
	case <-time.After(5 * time.Second):
		t.Fatalf("node not started within 5s; stderr:\n%s", tc.stderr)
		return nil
	}
}

// checkOneErrorLine checks that stderr ends with exactly one "iris: " line
// that contains every part of want.
func checkOneErrorLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "iris: ") {
		t.Fatalf("last stderr line %q does not start with \"iris: \"; stderr:\n%s", last, stderr)
	}
	if strings.Count(stderr, "iris: ") != 1 {
		t.Errorf("stderr has more than one error line:\n%s", stderr)
	}
	for _, part := range want {
		if !strings.Contains(last, part) {
			t.Errorf("error line %q does not contain %q", last, part)
		}
	}
}

func TestStartStopsCleanlyOnCancel(t *testing.T) {
	n := newFakeNode()
	tc := newTestCLI(t, n, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	status := tc.executeAsync(ctx, "start")
	waitStarted(t, tc)
	requestedAt := time.Now()
	cancel()

	if code := waitStatus(t, status, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, tc.stderr)
	}
	exitedAt := time.Now()
	if got := n.stops(); got != 1 {
		t.Errorf("Stop called %d times, want 1", got)
	}
	if !n.hasDeadline {
		t.Fatal("Stop got a context without a deadline")
	}
	earliest, latest := requestedAt.Add(10*time.Second), exitedAt.Add(10*time.Second)
	if n.stopDeadline.Before(earliest) || n.stopDeadline.After(latest) {
		t.Errorf("Stop deadline is %s after the stop request, want 10s", n.stopDeadline.Sub(requestedAt))
	}
	if !strings.Contains(tc.stderr.String(), "stopping node") {
		t.Errorf("no \"stopping node\" log line; stderr:\n%s", tc.stderr)
	}
}

func TestStartStopsOnSIGTERM(t *testing.T) {
	n := newFakeNode()
	tc := newTestCLI(t, n, nil)
	startNode := tc.startNode
	tc.startNode = func(cfg *config.Config, logger *slog.Logger) (node, error) {
		// The command registers for signals before it starts the node, so
		// this signal reaches its channel and does not end the test process.
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			t.Errorf("send SIGTERM to own pid: %v", err)
		}
		return startNode(cfg, logger)
	}

	code := waitStatus(t, tc.executeAsync(context.Background(), "start"), 5*time.Second)
	if code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, tc.stderr)
	}
	if got := n.stops(); got != 1 {
		t.Errorf("Stop called %d times, want 1", got)
	}
	if !strings.Contains(tc.stderr.String(), "signal=terminated") {
		t.Errorf("stop log line does not name the signal; stderr:\n%s", tc.stderr)
	}
}

func TestStartFlagsOverrideFileAndEnvironment(t *testing.T) {
	tc := newTestCLI(t, nil, errors.New("not started in this test"))
	dir := t.TempDir()
	envDataDir := filepath.Join(dir, "from-env")
	file := filepath.Join(dir, "iris.yaml")
	content := "edge:\n  tcp_addr: \"127.0.0.1:7001\"\n  ws_addr: \"127.0.0.1:7002\"\ncluster:\n  seeds: [\"127.0.0.2:7300\"]\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IRIS_NODE_DATA_DIR", envDataDir)
	t.Setenv("IRIS_EDGE_WS_ADDR", "127.0.0.1:8002")
	t.Setenv("IRIS_LOG_LEVEL", "warn")

	tc.execute(context.Background(), []string{"start", "--config", file,
		"--role", "edge", "--tcp-addr", "127.0.0.1:9001", "--admin-addr", "127.0.0.1:9003", "--log-level", "debug"})
	cfg := waitStarted(t, tc)

	checks := []struct{ key, got, want string }{
		{"node.role", string(cfg.Node.Role), "edge"},
		{"node.data_dir", cfg.Node.DataDir, envDataDir},
		{"edge.tcp_addr", cfg.Edge.TCPAddr, "127.0.0.1:9001"},
		{"edge.ws_addr", cfg.Edge.WSAddr, "127.0.0.1:8002"},
		{"admin.addr", cfg.Admin.Addr, "127.0.0.1:9003"},
		{"log.level", cfg.Log.Level, "debug"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}
}

func TestStartDataDirFlag(t *testing.T) {
	tc := newTestCLI(t, nil, errors.New("not started in this test"))
	dir := filepath.Join(t.TempDir(), "nested", "data")
	tc.execute(context.Background(), []string{"start", "--data-dir", dir, "--ws-addr", "127.0.0.1:0"})
	cfg := waitStarted(t, tc)
	if cfg.Node.DataDir != dir {
		t.Errorf("node.data_dir = %q, want %q", cfg.Node.DataDir, dir)
	}
	if cfg.Edge.WSAddr != "127.0.0.1:0" {
		t.Errorf("edge.ws_addr = %q, want 127.0.0.1:0", cfg.Edge.WSAddr)
	}
}

func TestStartUsageErrorsExit2(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"bad role flag", nil, []string{"start", "--role", "boss"}, []string{"node.role", `"boss"`, "flag --role"}},
		{"bad address flag", nil, []string{"start", "--tcp-addr", "8085"}, []string{"edge.tcp_addr", "flag --tcp-addr"}},
		{"bad environment value", map[string]string{"IRIS_LIMITS_INBOX": "0"}, []string{"start"},
			[]string{"limits.inbox", "IRIS_LIMITS_INBOX"}},
		{"auth required without secret", map[string]string{"IRIS_AUTH_REQUIRED": "true"}, []string{"start"},
			[]string{"auth.jwt_secret", "IRIS_AUTH_JWT_SECRET"}},
		{"missing config file", nil, []string{"start", "--config", missing}, []string{missing}},
		{"unknown flag", nil, []string{"start", "--port", "1"}, []string{"unknown flag: --port"}},
		{"extra argument", nil, []string{"start", "now"}, []string{`"now"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := newTestCLI(t, newFakeNode(), nil)
			for name, value := range c.env {
				t.Setenv(name, value)
			}

			if code := tc.execute(context.Background(), c.args); code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			checkOneErrorLine(t, tc.stderr.String(), c.want...)
			if len(tc.started) != 0 {
				t.Error("the node was started despite the error")
			}
		})
	}
}

func TestStartFailureExits1(t *testing.T) {
	tc := newTestCLI(t, nil, errors.New("listen tcp :8085: address already in use"))
	if code := tc.execute(context.Background(), []string{"start"}); code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	checkOneErrorLine(t, tc.stderr.String(), "start node", "address already in use")
}

func TestStartNodeStoppingOnItsOwnExits1(t *testing.T) {
	n := newFakeNode()
	tc := newTestCLI(t, n, nil)
	status := tc.executeAsync(context.Background(), "start")
	waitStarted(t, tc)
	close(n.done)

	if code := waitStatus(t, status, 5*time.Second); code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	checkOneErrorLine(t, tc.stderr.String(), "stopped on its own")
	if got := n.stops(); got != 0 {
		t.Errorf("Stop called %d times on a node that had stopped, want 0", got)
	}
}

func TestStartStopErrorExits1(t *testing.T) {
	n := newFakeNode()
	n.stopErr = errors.New("store close failed")
	tc := newTestCLI(t, n, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	status := tc.executeAsync(ctx, "start")
	waitStarted(t, tc)
	cancel()

	if code := waitStatus(t, status, 5*time.Second); code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	checkOneErrorLine(t, tc.stderr.String(), "stop node", "store close failed")
}

func TestStartGivesUpOnHungStop(t *testing.T) {
	n := newFakeNode()
	n.release = make(chan struct{})
	defer close(n.release)
	tc := newTestCLI(t, n, nil)
	tc.stopTimeout = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	status := tc.executeAsync(ctx, "start")
	waitStarted(t, tc)
	cancel()

	if code := waitStatus(t, status, 5*time.Second); code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	checkOneErrorLine(t, tc.stderr.String(), "stop node", "still running")
}

func TestStartJSONLogs(t *testing.T) {
	n := newFakeNode()
	tc := newTestCLI(t, n, nil)
	t.Setenv("IRIS_LOG_FORMAT", "json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	status := tc.executeAsync(ctx, "start")
	waitStarted(t, tc)
	cancel()
	if code := waitStatus(t, status, 5*time.Second); code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, tc.stderr)
	}

	lines := strings.Split(strings.TrimSpace(tc.stderr.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want a start and a stop line, got:\n%s", tc.stderr)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("log line %q is not JSON: %v", lines[0], err)
	}
	if first["msg"] != "starting node" {
		t.Errorf("msg = %v, want \"starting node\"", first["msg"])
	}
	if first["role"] != "all" {
		t.Errorf("role = %v, want all", first["role"])
	}
	if name, _ := first["node"].(string); name == "" {
		t.Error("log line has no node name")
	}
}
