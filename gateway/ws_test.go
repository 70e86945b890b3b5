package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/coder/websocket"

	"github.com/iris-im/iris/actors"
)

// startWSListener serves the WebSocket endpoint of cfg on a loopback port,
// with a session starter that spawns an actor which ignores its messages.
func startWSListener(t *testing.T) string {
	t.Helper()
	return startWSListenerWith(t, 0)
}

// startWSListenerWith is startWSListener with server pings every ping.
func startWSListenerWith(t *testing.T, ping time.Duration) string {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	cfg := &ListenerConfig{
		Transport:    "ws",
		WSPath:       "/ws",
		WriteTimeout: 200 * time.Millisecond,
		ReadBuffer:   4096,
		MaxWSMessage: 1 << 20,
		PingInterval: ping,
		System:       system,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Start: func(conn actors.Conn) (*actor.PID, error) {
			// Like a session's LOGIN_OK: a write sets the write deadline.
			if err := conn.Write([]byte("\x03LOGIN_OK")); err != nil {
				return nil, err
			}
			return system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {})), nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newWSServer(cfg)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// handshake opens a raw WebSocket connection to addr.
func handshake(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v, %v", resp, err)
	}
	return c, r
}

func TestWSHugeLengthClosesOnlyThatConnection(t *testing.T) {
	addr := startWSListener(t)
	bad, badReader := handshake(t, addr)
	// A masked binary frame whose 64-bit length has its top bit set, which
	// gws v1.8.9 turns into a negative slice bound.
	if _, err := bad.Write([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(badReader); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the bad connection until it closes: %v", err)
	}

	// The listener still serves others.
	handshake(t, addr)
}

func TestWSPingAfterIdleGetsPong(t *testing.T) {
	addr := startWSListener(t)
	c, r := handshake(t, addr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	first := make([]byte, 2+9)
	if _, err := io.ReadFull(r, first); err != nil || first[0] != 0x82 {
		t.Fatalf("first message = %x, %v; want the binary LOGIN_OK", first, err)
	}
	time.Sleep(400 * time.Millisecond) // longer than the write timeout
	// A masked ping with an empty payload.
	if _, err := c.Write([]byte{0x89, 0x80, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	head := make([]byte, 2)
	if _, err := io.ReadFull(r, head); err != nil || head[0] != 0x8A {
		t.Fatalf("answer to a ping after idle = %x, %v; want a pong (8a)", head, err)
	}
}

func TestWSSilentClientPingedThenClosed(t *testing.T) {
	addr := startWSListenerWith(t, 200*time.Millisecond)
	c, r := handshake(t, addr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()

	// The client reads but never responds: first the LOGIN_OK message, then a
	// ping, then the end of the connection.
	var sawPing bool
	for {
		head := make([]byte, 2)
		if _, err := io.ReadFull(r, head); err != nil {
			break
		}
		if head[0] == 0x89 {
			sawPing = true
		}
		if _, err := io.CopyN(io.Discard, r, int64(head[1]&0x7f)); err != nil {
			break
		}
	}
	if !sawPing {
		t.Error("the server closed a silent client without pinging it")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("silent client closed after %v, want about 2 ping intervals", d)
	}
}

func TestWSAnsweringClientStaysOpen(t *testing.T) {
	addr := startWSListenerWith(t, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil { // LOGIN_OK
		t.Fatal(err)
	}
	// Reading responds to pings; nothing else arrives, so the read times out
	// unless the server closes the connection.
	quiet, cancelQuiet := context.WithTimeout(ctx, time.Second)
	defer cancelQuiet()
	_, _, err = ws.Read(quiet)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read during a second of pings = %v, want the read to time out with the connection open", err)
	}
}
