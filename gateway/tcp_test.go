package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
)

// recordingSessions replaces the session actors of a TCP listener. It
// copies what every connection's reads carry, as a session's decoder does,
// and counts the reads and the closed connections. A read that carries a
// 'q' makes it close that connection from the server side.
type recordingSessions struct {
	mu     sync.Mutex
	conns  map[*actor.PID]actors.Conn
	data   map[*actor.PID]*bytes.Buffer
	reads  int
	closed int
}

func (r *recordingSessions) receive(ctx actor.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch msg := ctx.Message().(type) {
	case *actors.Inbound:
		r.record(ctx.Self(), msg)
	case *actors.Readable:
		in, err := msg.Read()
		if in != nil {
			r.record(ctx.Self(), in)
		}
		if err != nil {
			r.closed++
		}
	case *actors.ConnClosed:
		r.closed++
	}
}

// record keeps the bytes of one read and hands the read back, then closes
// the connection when the bytes carry a 'q'.
func (r *recordingSessions) record(self *actor.PID, in *actors.Inbound) {
	if r.data[self] == nil {
		r.data[self] = &bytes.Buffer{}
	}
	r.data[self].Write(in.Data)
	r.reads++
	quit := bytes.IndexByte(in.Data, 'q') >= 0
	in.Done()
	if quit {
		_ = r.conns[self].Close()
	}
}

// counts returns the reads and closed connections seen so far.
func (r *recordingSessions) counts() (reads, closed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, r.closed
}

// received returns everything the connections' reads carried, one string
// per connection.
func (r *recordingSessions) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.data {
		out = append(out, b.String())
	}
	return out
}

// startTCPListener accepts TCP connections on a loopback port and starts a
// recording actor for each. It returns the bound address and the
// listener's configuration, whose Conns counts the open connections.
func startTCPListener(t *testing.T, readBuffer int) (string, *recordingSessions, *ListenerConfig) {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)

	rec := &recordingSessions{conns: make(map[*actor.PID]actors.Conn), data: make(map[*actor.PID]*bytes.Buffer)}
	cfg := &ListenerConfig{
		Transport:    "tcp",
		WriteTimeout: time.Second,
		ReadBuffer:   readBuffer,
		Conns:        NewConnCounter(0, 0),
		System:       system,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Start: func(conn actors.Conn) (*actor.PID, error) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			pid := system.Root.Spawn(actor.PropsFromFunc(rec.receive))
			rec.conns[pid] = conn
			return pid, nil
		},
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = acceptTCP(cfg, ln, stop)
	}()
	t.Cleanup(func() {
		close(stop)
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String(), rec, cfg
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dialAll(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	return conns
}

// An idle TCP connection holds no read buffer: with 1 MiB buffers, 32
// connections that have each sent a byte and gone quiet would hold 32 MiB
// if their readers kept a buffer while they wait.
func TestIdleTCPReaderHoldsNoBuffer(t *testing.T) {
	const conns, readBuffer = 32, 1 << 20
	addr, rec, _ := startTCPListener(t, readBuffer)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	for _, c := range dialAll(t, addr, conns) {
		if _, err := c.Write([]byte{0x01}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a read from every connection", func() bool { reads, _ := rec.counts(); return reads == conns })

	runtime.GC()
	runtime.GC() // the second cycle frees what the pool dropped in the first
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perConn := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / conns
	if perConn >= readBuffer/4 {
		t.Errorf("an idle connection holds %d heap bytes, expected far below the %d-byte read buffer", perConn, readBuffer)
	}
}

// Bytes that arrive in more reads than the buffer holds, with idle pauses
// between them, reach the session complete and in order, and a client that
// closes its side ends the session.
func TestTCPReaderPassesEveryByte(t *testing.T) {
	addr, rec, _ := startTCPListener(t, 16)
	conns := dialAll(t, addr, 4)

	var want []string
	for i, c := range conns {
		msg := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
		for part := range slices.Chunk(msg, 300) {
			if _, err := c.Write(part); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond) // let the reader go idle between writes
		}
		want = append(want, string(msg))
	}
	for _, c := range conns {
		_ = c.Close()
	}
	waitFor(t, "every connection closed", func() bool { _, closed := rec.counts(); return closed == len(conns) })

	got := rec.received()
	if len(got) != len(want) {
		t.Fatalf("bytes arrived on %d connections, expected %d", len(got), len(want))
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("no connection received the %d bytes of %q", len(w), w[:1])
		}
	}
	if reads, _ := rec.counts(); reads < 4*1000/16 {
		t.Errorf("%d reads for 4000 bytes with a 16-byte buffer, expected at least %d", reads, 4*1000/16)
	}
}

// Connections closed by the client and connections closed by their
// session both release their count, whichever reader they had.
func TestTCPConnectionsReleasedOnClose(t *testing.T) {
	addr, rec, cfg := startTCPListener(t, 64)
	conns := dialAll(t, addr, 6)
	for _, c := range conns {
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a read from every connection", func() bool { reads, _ := rec.counts(); return reads >= len(conns) })
	if open := cfg.Conns.Open(); open != len(conns) {
		t.Fatalf("%d connections counted open, expected %d", open, len(conns))
	}

	for i, c := range conns {
		if i%2 == 0 {
			_ = c.Close()
			continue
		}
		if _, err := c.Write([]byte("q")); err != nil { // the session closes this one
			t.Fatal(err)
		}
	}
	waitFor(t, "every connection released", func() bool { return cfg.Conns.Open() == 0 })

	for i, c := range conns {
		if i%2 == 0 {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("connection %d: read succeeded after its session closed it", i)
		}
	}
}

// The reader goroutine that serves connections the read poller does not
// take (TLS, or systems without epoll) passes every byte too, and holds no
// buffer while its client is idle.
func TestReadLoopPassesEveryByte(t *testing.T) {
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	rec := &recordingSessions{conns: make(map[*actor.PID]actors.Conn), data: make(map[*actor.PID]*bytes.Buffer)}
	cfg := &ListenerConfig{ReadBuffer: 16, System: system, Logger: slog.New(slog.DiscardHandler)}
	pid := system.Root.Spawn(actor.PropsFromFunc(rec.receive))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn := newTCPConn(server, time.Second)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		readLoop(cfg, pid, conn)
	}()

	msg := bytes.Repeat([]byte("0123456789"), 50)
	for part := range slices.Chunk(msg, 70) {
		if _, err := client.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, "every byte", func() bool { got := rec.received(); return len(got) == 1 && len(got[0]) == len(msg) })
	if got := rec.received()[0]; got != string(msg) {
		t.Errorf("received %q, expected %q", got, msg)
	}

	_ = client.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("read loop did not end after the client closed")
	}
	waitFor(t, "the session told of the closed connection", func() bool { _, closed := rec.counts(); return closed == 1 })
}
