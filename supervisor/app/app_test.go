package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/client"
	"github.com/iris-im/iris/gateway/tlstest"
	"github.com/iris-im/iris/supervisor"
)

// startNode starts an all-in-one node on loopback ports with its data in a
// temporary directory, and stops it when the test ends.
func startNode(t *testing.T, edit func(*config.Config)) *Node {
	t.Helper()
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Edge.TCPAddr = "127.0.0.1:0"
	cfg.Edge.WSAddr = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	if edit != nil {
		edit(cfg)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	n, err := Start(cfg, logger)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	return n
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// login dials the node over transport and logs user in with the v1 LOGIN.
func login(t *testing.T, n *Node, transport, user string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := n.TCPAddr().String()
	if transport == "ws" {
		addr = n.WSAddr().String()
	}
	c, err := client.Dial(ctx, transport, addr)
	if err != nil {
		t.Fatalf("dial %s: %v", transport, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login(ctx, user); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func expect(t *testing.T, c *client.Conn, op client.Op) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.Expect(ctx, op)
	if err != nil {
		t.Fatalf("expect %v: %v", op, err)
	}
	return f
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedeliveryOnLiveConnection(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.Edge.RedeliveryTimeout = 200 * time.Millisecond })
	alice := login(t, n, "tcp", "alice")
	bob := login(t, n, "tcp", "bob")

	if err := alice.Send("bob", []byte("first")); err != nil {
		t.Fatal(err)
	}
	first := expect(t, bob, client.OpReliable)
	again := expect(t, bob, client.OpReliable) // not acked: written again
	if string(again.ID) != string(first.ID) || string(again.Msg) != "first" {
		t.Fatalf("redelivery = id %x msg %q, want id %x msg %q", again.ID, again.Msg, first.ID, "first")
	}

	if err := bob.Ack(first.ID); err != nil {
		t.Fatal(err)
	}
	redelivered := n.Stats.Redelivered.Load()
	time.Sleep(600 * time.Millisecond) // three timeouts without another write
	if got := n.Stats.Redelivered.Load(); got > redelivered+1 {
		t.Fatalf("acked delivery was written %d more times", got-redelivered)
	}
}

func TestSessionCrashAffectsOnlyItsConnection(t *testing.T) {
	n := startNode(t, nil)
	clients := []*client.Conn{
		login(t, n, "tcp", "alice"),
		login(t, n, "ws", "bob"),
		login(t, n, "tcp", "carol"),
	}
	pids := sessionPIDs(t, n)
	if len(pids) != 3 {
		t.Fatalf("found %d sessions, want 3", len(pids))
	}

	n.system.Root.Send(pids[0], &actors.Crash{Reason: "test: crash one session"})

	// Exactly one client is cut off; wait until it sees its connection end.
	var crashed *client.Conn
	eventually(t, 5*time.Second, "a connection to close", func() bool {
		for _, c := range clients {
			select {
			case <-c.Done():
				crashed = c
				return true
			default:
			}
		}
		return false
	})

	dave := login(t, n, "tcp", "dave")
	survivors := 0
	for _, c := range clients {
		if c == crashed {
			continue
		}
		survivors++
		if err := c.Send("dave", []byte("still here")); err != nil {
			t.Fatalf("send after another session crashed: %v", err)
		}
		if f := expect(t, dave, client.OpReliable); string(f.Msg) != "still here" {
			t.Fatalf("dave got %q, want %q", f.Msg, "still here")
		}
	}
	if survivors != 2 {
		t.Fatalf("%d connections survived, want 2", survivors)
	}
	if got := len(sessionPIDs(t, n)); got != 3 {
		t.Fatalf("%d sessions after the crash and a new login, want 3", got)
	}
}

// sessionPIDs lists the live session actors of n.
func sessionPIDs(t *testing.T, n *Node) []*actor.PID {
	t.Helper()
	sessions := supervisor.NewRef(n.system, actor.NewPID(n.system.Address(), "node/gateway/sessions"))
	children, err := sessions.WhichChildren()
	if err != nil {
		t.Fatalf("list sessions: %v", err)
	}
	pids := make([]*actor.PID, 0, len(children))
	for _, c := range children {
		if c.PID != nil {
			pids = append(pids, c.PID)
		}
	}
	return pids
}

func TestShardCrashKeepsPresenceAndDelivery(t *testing.T) {
	n := startNode(t, nil)
	alice := login(t, n, "tcp", "alice")
	bob := login(t, n, "ws", "bob")

	shardPID := n.member.cluster().Get(cluster.ShardIdentity("bob", n.cfg.Cluster.Shards), cluster.ShardKind)
	if shardPID == nil {
		t.Fatal("bob's shard has no PID")
	}
	n.system.Root.Send(shardPID, &actors.Crash{Reason: "test: crash bob's shard"})

	// The restarted shard knows no session; sends reach bob's inbox at once
	// and reach bob himself once the registrar has re-registered him.
	for i := range 20 {
		if err := alice.Send("bob", []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		f := expect(t, bob, client.OpReliable)
		if want := string([]byte{byte('a' + i)}); string(f.Msg) != want {
			t.Fatalf("delivery %d = %q, want %q", i, f.Msg, want)
		}
		if err := bob.Ack(f.ID); err != nil {
			t.Fatal(err)
		}
	}

	eventually(t, 3*time.Second, "bob online again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := alice.GetStatus(ctx, "bob")
		return err == nil && st.State == 1
	})
}

func TestProductionRefusesMissingDataDir(t *testing.T) {
	certFile, keyFile, _ := tlstest.WriteSelfSigned(t)
	cfg := config.Default()
	cfg.Node.Environment = "production"
	cfg.Node.DataDir = filepath.Join(t.TempDir(), "not-mounted")
	cfg.Auth.Required = true
	cfg.Auth.JWTSecret = config.Secret("0123456789abcdef0123456789abcdef")
	cfg.Edge.TLS = config.EdgeTLS{CertFile: certFile, KeyFile: keyFile}
	cfg.Edge.TCPAddr, cfg.Edge.WSAddr, cfg.Admin.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"

	_, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "node.data_dir") {
		t.Fatalf("Start with a missing data dir in production = %v, want an error naming node.data_dir", err)
	}
	if _, statErr := os.Stat(cfg.Node.DataDir); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("the missing data dir was created: %v", statErr)
	}
}

func TestFirstStartCreatesPrivateDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")
	startNode(t, func(c *config.Config) { c.Node.DataDir = dir })
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("data dir not created: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %o, want 700", perm)
	}
}

func TestProtoactorRepeatsLimited(t *testing.T) {
	var out bytes.Buffer
	h := newLimitedHandler(slog.NewTextHandler(&out, nil), 1, protoactorRepeatEvery)
	h.state.after = func(time.Duration, func()) {}
	logger := slog.New(h).With("component", "protoactor")
	for range 5 {
		logger.Error("EndpointWriter failed to connect", "address", "10.0.0.2:7946")
	}
	logger.Warn("sendGossipForMember failed")

	text := out.String()
	if n := strings.Count(text, "EndpointWriter failed to connect"); n != 1 {
		t.Errorf("repeated error written %d times, want once:\n%s", n, text)
	}
	if n := strings.Count(text, "sendGossipForMember failed"); n != 1 {
		t.Errorf("other message written %d times, want once", n)
	}
}
