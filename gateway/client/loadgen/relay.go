package loadgen

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/iris-im/iris/gateway/wire"
)

// Relay is a server that speaks just enough of the client protocol for a
// steady run and keeps nothing. It logs clients in without checks, passes
// every SEND or SEND2 to the target's connection at once, replies to SEND2
// with ACCEPTED, and drops ACK and ACK2. It stores no message, so it loses
// whatever a client misses. A client that stops reading for
// relayWriteTimeout is closed.
//
// A steady run against it measures the machine and the generator rather
// than a server: the throughput and latency that the load's own system
// calls and scheduling allow on the cores that the server would share.
// No server that also stores and routes messages can do better on the same
// machine, so it is the ceiling to compare a server's figures with.
type Relay struct {
	ln net.Listener

	mu    sync.Mutex
	users map[string]*relayConn
	conns map[*relayConn]struct{}
	seq   uint64
	wg    sync.WaitGroup
}

// relayConn is one client connection of a Relay.
type relayConn struct {
	c    net.Conn
	user string
	v2   bool

	mu  sync.Mutex // serializes writes
	out []byte
}

// ListenRelay starts a Relay on addr, a host:port.
func ListenRelay(addr string) (*Relay, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, users: make(map[string]*relayConn), conns: make(map[*relayConn]struct{})}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr returns the address the relay listens on.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Close stops the relay, closes every connection and waits for their
// goroutines to end.
func (r *Relay) Close() error {
	err := r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		_ = c.c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		rc := &relayConn{c: c}
		r.mu.Lock()
		r.conns[rc] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(rc)
	}
}

// serve reads the frames of one connection until it ends.
func (r *Relay) serve(c *relayConn) {
	defer r.wg.Done()
	defer r.drop(c)

	d := wire.NewDecoder(wire.DefaultLimits())
	buf := make([]byte, 4<<10)
	for {
		n, err := c.c.Read(buf)
		if n > 0 {
			if ferr := d.Feed(buf[:n]); ferr != nil {
				return
			}
			for {
				f, ferr := d.Next()
				var werr *wire.Error
				if errors.As(ferr, &werr) && !werr.Fatal {
					continue // a bad frame of known length, skipped
				}
				if ferr != nil {
					return
				}
				if f == nil {
					break
				}
				r.handle(c, f)
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *Relay) handle(c *relayConn, f *wire.Frame) {
	switch f.Op {
	case wire.OpLogin, wire.OpLogin2:
		c.user = string(f.User)
		c.v2 = f.Op == wire.OpLogin2
		r.mu.Lock()
		r.users[c.user] = c
		r.mu.Unlock()
		c.write(func(b []byte) []byte { return wire.AppendLoginOK(b) })
	case wire.OpSend, wire.OpSend2:
		r.mu.Lock()
		r.seq++
		seq := r.seq
		target := r.users[string(f.Target)]
		r.mu.Unlock()
		if f.Op == wire.OpSend2 {
			c.write(func(b []byte) []byte { return wire.AppendAccepted(b, f.CID, seq) })
		}
		if target != nil {
			target.deliver(seq, c.user, f.Msg)
		}
	}
}

// deliver writes one message to c in c's profile.
func (c *relayConn) deliver(seq uint64, sender string, msg []byte) {
	c.write(func(b []byte) []byte {
		if c.v2 {
			return wire.AppendDeliver(b, seq, wire.OpSend, sender, uint64(time.Now().UnixMilli()), msg)
		}
		var id [wire.IDLen]byte
		binary.BigEndian.PutUint64(id[wire.IDLen-8:], seq)
		return wire.AppendReliable(b, id[:], msg)
	})
}

// relayWriteTimeout bounds one write. A client that stops reading holds up
// the senders to it for at most this long, and is then closed.
const relayWriteTimeout = time.Second

// write sends the frame that appendFrame produces, and closes c when the
// write fails or does not finish within relayWriteTimeout.
func (c *relayConn) write(appendFrame func([]byte) []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = appendFrame(c.out[:0])
	_ = c.c.SetWriteDeadline(time.Now().Add(relayWriteTimeout))
	if _, err := c.c.Write(c.out); err != nil {
		_ = c.c.Close()
	}
}

func (r *Relay) drop(c *relayConn) {
	_ = c.c.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
	if r.users[c.user] == c {
		delete(r.users, c.user)
	}
}
