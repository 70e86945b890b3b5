package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iris-im/iris/gateway/client"
	"github.com/iris-im/iris/internal/testaddr"
)

// irisBinary is the server binary that TestMain builds once for all tests.
var irisBinary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// reuseBinaryEnv names an iris binary that a test re-executed as a child
// process (see the frozen socket test) uses instead of building its own. It
// does not start with IRIS_, which the server reserves for its settings.
const reuseBinaryEnv = "E2E_IRIS_BINARY"

func runTests(m *testing.M) int {
	if binary := os.Getenv(reuseBinaryEnv); binary != "" {
		irisBinary = binary
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "iris-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: creating a temp dir failed: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	irisBinary = filepath.Join(dir, "iris")
	build := exec.Command("go", "build", "-o", irisBinary, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build of the iris binary failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// testServer is one `iris start` child process on loopback ports. It keeps
// its data dir and ports across restarts, so a restarted server finds what
// the killed one stored.
type testServer struct {
	t         *testing.T
	env       []string
	args      []string // after the address flags of iris start
	dataDir   string
	logPath   string
	tcpAddr   string
	wsAddr    string
	adminAddr string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returns
}

// startServer starts a server with extra environment variables
// ("KEY=value") and stops it when the test ends.
func startServer(t *testing.T, env ...string) *testServer {
	t.Helper()
	return startServerIn(t, filepath.Join(t.TempDir(), "data"), env...)
}

// startServerIn starts a server with its data in dataDir and extra
// environment variables ("KEY=value"), and stops it when the test ends.
func startServerIn(t *testing.T, dataDir string, env ...string) *testServer {
	t.Helper()
	s := newTestServer(t, dataDir, env...)
	s.start()
	return s
}

// newTestServer prepares a server on free loopback ports with its data in
// dataDir, which the test stops when it ends; start runs it.
func newTestServer(t *testing.T, dataDir string, env ...string) *testServer {
	t.Helper()
	dir := t.TempDir()
	s := &testServer{
		t:         t,
		env:       env,
		dataDir:   dataDir,
		logPath:   filepath.Join(dir, "server.log"),
		tcpAddr:   freeAddr(t),
		wsAddr:    freeAddr(t),
		adminAddr: freeAddr(t),
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			s.logTail()
		}
	})
	return s
}

// freeAddr returns a loopback address whose port was free a moment ago and
// that no other test of this process got.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testaddr.Free(t, "127.0.0.1")
}

func (s *testServer) start() {
	s.t.Helper()
	// A port found free a moment ago can be taken by another process
	// before the server binds it; then the server exits at once, and the
	// start is tried again on fresh ports.
	for attempt := 1; ; attempt++ {
		err := s.startOnce()
		if err == nil {
			return
		}
		if attempt == 3 || !errors.Is(err, errExitedEarly) {
			s.logTail()
			s.t.Fatal(err)
		}
		s.tcpAddr, s.wsAddr, s.adminAddr = freeAddr(s.t), freeAddr(s.t), freeAddr(s.t)
	}
}

// errExitedEarly is a server that ended before it accepted connections.
var errExitedEarly = errors.New("iris start exited early")

func (s *testServer) startOnce() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "e2e: iris start at %s\n", time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(irisBinary, "start",
		"--data-dir", s.dataDir,
		"--tcp-addr", s.tcpAddr,
		"--ws-addr", s.wsAddr,
		"--admin-addr", s.adminAddr)
	cmd.Args = append(cmd.Args, s.args...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s failed: %w", irisBinary, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	for _, addr := range []string{s.tcpAddr, s.wsAddr} {
		ready := eventually(15*time.Second, func() bool {
			select {
			case <-s.exited:
				return true
			default:
			}
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return false
			}
			conn.Close()
			return true
		})
		select {
		case <-s.exited:
			return fmt.Errorf("%w: %v", errExitedEarly, s.cmd.ProcessState)
		default:
		}
		if !ready {
			return fmt.Errorf("iris start did not accept connections on %s within 15 s", addr)
		}
	}
	return nil
}

// stop sends SIGTERM to the server's pid and SIGKILL if it is still running
// 5 s later.
func (s *testServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.t.Logf("iris start (pid %d) still running 5 s after SIGTERM, sending SIGKILL", s.cmd.Process.Pid)
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// kill sends SIGKILL to the server's pid and waits for it to exit.
func (s *testServer) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("SIGKILL to pid %d failed: %v", s.cmd.Process.Pid, err)
	}
	<-s.exited
	s.cmd = nil
}

// restart kills the server and starts it again on the same data dir and
// ports.
func (s *testServer) restart() {
	s.t.Helper()
	s.kill()
	s.start()
}

func (s *testServer) logTail() {
	out, err := os.ReadFile(s.logPath)
	if err != nil {
		s.t.Logf("reading the server log failed: %v", err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	s.t.Logf("last server log lines (%s):\n%s", s.logPath, strings.Join(lines[max(0, len(lines)-60):], "\n"))
}

// addr returns the listener address for a client transport.
func (s *testServer) addr(transport string) string {
	if transport == client.TransportWebSocket {
		return s.wsAddr
	}
	return s.tcpAddr
}

// dial opens a connection that the test closes when it ends.
func (s *testServer) dial(t *testing.T, transport string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, transport, s.addr(transport))
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login dials and logs in with v1 LOGIN.
func (s *testServer) login(t *testing.T, transport, user string) *client.Conn {
	t.Helper()
	c := s.dial(t, transport)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Login(ctx, user); err != nil {
		t.Fatalf("%s login: %v", transport, err)
	}
	return c
}

// login2 dials and logs in with v2 LOGIN2 and an empty token.
func (s *testServer) login2(t *testing.T, transport, user string) *client.Conn {
	t.Helper()
	c := s.dial(t, transport)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Login2(ctx, user, ""); err != nil {
		t.Fatalf("%s login2: %v", transport, err)
	}
	return c
}

// eventually polls cond every 20 ms until it is true or timeout passes, and
// returns its last result.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectNothing checks that no frame arrives on c within d.
func expectNothing(t *testing.T, c *client.Conn, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	f, err := c.Next(ctx)
	if err == nil {
		t.Fatalf("unexpected frame within %v: %v", d, f)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("connection ended while waiting for silence: %v", err)
	}
}

// expectClosedWithError checks that the server sends ERROR and then closes
// the connection.
func expectClosedWithError(t *testing.T, c *client.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	frames, err := c.ExpectClosed(ctx)
	if err != nil {
		t.Fatalf("connection still open after 10 s (frames so far: %v): %v", frames, err)
	}
	for _, f := range frames {
		if f.Op == client.OpError {
			return
		}
	}
	t.Fatalf("connection closed without an ERROR frame; frames before the close: %v", frames)
}

// hexDump formats bytes for failure messages about wire content.
func hexDump(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("% x ... (%d bytes)", b[:64], len(b))
	}
	return fmt.Sprintf("% x", b)
}
