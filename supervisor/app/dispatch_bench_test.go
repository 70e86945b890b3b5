package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/config"
	"github.com/iris-im/iris/gateway/client"
)

// BenchmarkDispatch measures one v2 message through a whole node in
// process: the sender's session decodes SEND2, a router forwards it to the
// recipient's shard, the store commits it (with an fsync shared by the
// group commit), the shard answers ACCEPTED to the sender and pushes
// DELIVER to the recipient's session, and the recipient's ACK2 goes back
// the same way. Sessions write to in-memory connections instead of
// sockets, so no network I/O is measured. Each pair sends one message and
// waits for its delivery before the next, so pairs=1 shows the latency of
// the path and more pairs show how group commit and the actors scale.
func BenchmarkDispatch(b *testing.B) {
	for _, pairs := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) { benchmarkDispatch(b, pairs) })
	}
}

func benchmarkDispatch(b *testing.B, pairs int) {
	n := startBenchNode(b)
	type pair struct{ sender, receiver *memSession }
	ps := make([]pair, pairs)
	for i := range ps {
		ps[i] = pair{
			sender:   startMemSession(b, n, fmt.Sprintf("sender-%d", i)),
			receiver: startMemSession(b, n, fmt.Sprintf("receiver-%d", i)),
		}
	}
	body := make([]byte, 200)

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for _, p := range ps {
		wg.Go(func() {
			var cid uint64
			for next.Add(1) <= int64(b.N) {
				cid++
				frame, err := client.AppendSend2(nil, cid, p.receiver.user, body)
				if err != nil {
					b.Error(err)
					return
				}
				if err := p.sender.feed(frame); err != nil {
					b.Error(err)
					return
				}
				accepted, err := p.sender.expect(client.OpAccepted)
				if err == nil && accepted.CID != cid {
					err = fmt.Errorf("%s: ACCEPTED cid %d, want %d", p.sender.user, accepted.CID, cid)
				}
				if err != nil {
					b.Error(err)
					return
				}
				delivered, err := p.receiver.expect(client.OpDeliver)
				if err == nil {
					err = p.receiver.feed(client.AppendAck2(nil, delivered.Seq))
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// startBenchNode starts an all-in-one node on loopback ports whose send
// rate limit does not throttle the benchmark.
func startBenchNode(b *testing.B) *Node {
	b.Helper()
	cfg := config.Default()
	cfg.Node.DataDir = b.TempDir()
	cfg.Edge.TCPAddr = "127.0.0.1:0"
	cfg.Edge.WSAddr = "127.0.0.1:0"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Limits.SendRate = 1 << 30
	cfg.Limits.SendBurst = 1 << 30
	n, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatalf("start node: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			b.Errorf("stop node: %v", err)
		}
	})
	return n
}

// memSession is a session actor of a running node whose connection is in
// memory: the benchmark feeds it client bytes and reads the frames it
// writes.
type memSession struct {
	user   string
	pid    *actor.PID
	root   *actor.RootContext
	conn   *memConn
	frames []client.Frame // decoded and not yet taken
}

// startMemSession starts a session through the node's TCP session starter
// and logs user in with LOGIN2.
func startMemSession(b *testing.B, n *Node, user string) *memSession {
	b.Helper()
	conn := &memConn{writes: make(chan []byte, 64), closed: make(chan struct{})}
	pid, err := n.tcp.Start(conn)
	if err != nil {
		b.Fatalf("start session for %s: %v", user, err)
	}
	s := &memSession{user: user, pid: pid, root: n.system.Root, conn: conn}
	login, err := client.AppendLogin2(nil, user, "")
	if err != nil {
		b.Fatal(err)
	}
	if err := s.feed(login); err != nil {
		b.Fatal(err)
	}
	if _, err := s.expect(client.OpLoginOK); err != nil {
		b.Fatal(err)
	}
	return s
}

// feed hands data to the session as one read and waits until the session
// has handled it, as the gateway's reader does.
func (s *memSession) feed(data []byte) error {
	done := make(chan struct{})
	s.root.Send(s.pid, &actors.Inbound{Data: data, Done: func() { close(done) }})
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: session did not finish a read within 10s", s.user)
	}
}

// expect returns the next frame the session wrote, and an error unless its
// opcode is op.
func (s *memSession) expect(op client.Op) (client.Frame, error) {
	for len(s.frames) == 0 {
		select {
		case w := <-s.conn.writes:
			frames, err := splitServerFrames(w)
			if err != nil {
				return client.Frame{}, fmt.Errorf("%s: %w", s.user, err)
			}
			s.frames = frames
		case <-time.After(10 * time.Second):
			return client.Frame{}, fmt.Errorf("%s: no %v within 10s", s.user, op)
		}
	}
	f := s.frames[0]
	s.frames = s.frames[1:]
	if f.Op != op {
		return f, fmt.Errorf("%s: got %v, want %v", s.user, f, op)
	}
	return f, nil
}

// memConn is an actors.Conn that passes each write to a channel.
type memConn struct {
	writes    chan []byte
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *memConn) Write(frames []byte) error {
	// The session may reuse its buffer after Write returns.
	data := append([]byte(nil), frames...)
	select {
	case c.writes <- data:
		return nil
	case <-c.closed:
		return io.ErrClosedPipe
	}
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) RemoteAddr() string { return "127.0.0.1:1" }
func (c *memConn) Transport() string  { return "tcp" }

// splitServerFrames cuts one session write into the frames a v2 session
// sends in this benchmark and decodes each. The client package decodes
// only from a stream or one whole frame, so the frame ends are found here
// from the layouts of LOGIN_OK, ACCEPTED, REJECTED, DELIVER and ERROR.
func splitServerFrames(w []byte) ([]client.Frame, error) {
	var frames []client.Frame
	for len(w) > 0 {
		n, err := serverFrameLen(w)
		if err != nil {
			return nil, err
		}
		f, err := client.ParseFrame(w[:n])
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
		w = w[n:]
	}
	return frames, nil
}

func serverFrameLen(w []byte) (int, error) {
	u16 := func(at int) (int, error) {
		if len(w) < at+2 {
			return 0, fmt.Errorf("frame 0x%02x cut off at %d bytes", w[0], len(w))
		}
		return int(binary.BigEndian.Uint16(w[at:])), nil
	}
	switch client.Op(w[0]) {
	case client.OpLoginOK:
		return 9, nil
	case client.OpAccepted:
		return 17, nil
	case client.OpRejected:
		n, err := u16(9)
		return 11 + n, err
	case client.OpError:
		n, err := u16(1)
		return 3 + n, err
	case client.OpDeliver:
		slen, err := u16(10)
		if err != nil {
			return 0, err
		}
		at := 12 + slen + 8 // seq, kind, slen, sender, ts_ms
		if len(w) < at+4 {
			return 0, fmt.Errorf("DELIVER cut off at %d bytes", len(w))
		}
		return at + 4 + int(binary.BigEndian.Uint32(w[at:])), nil
	}
	return 0, fmt.Errorf("unexpected server frame 0x%02x in a v2 benchmark session", w[0])
}
