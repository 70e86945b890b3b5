//go:build linux

package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
)

// readPoller waits for input on plain TCP connections with one epoll
// instance for the whole process, so that an idle connection has no
// goroutine of its own. A goroutine per connection kept at least a 2 KiB
// stack and a descriptor of about 400 bytes for as long as the client was
// connected, which was a third of an idle connection's memory.
//
// When a connection becomes readable, the poller sends its session an
// actors.Readable. The session reads once, without blocking, into a
// borrowed buffer, handles the bytes, and calls the read's Done, which
// returns the buffer and arms the connection again. Connections are armed
// one-shot, so at most one read of a connection is in progress. A session
// slow to handle its bytes is not read further, and TCP flow control slows
// its client down as it did with a reader goroutine per connection.
//
// The epoll instance is itself registered with Go's network poller, so
// waiting for it blocks no thread.
type readPoller struct {
	epfd int
	// epoll is epfd as a file registered with Go's poller. The reference
	// also keeps the file's finalizer from closing epfd.
	epoll *os.File
	raw   syscall.RawConn

	mu     sync.Mutex
	conns  map[int32]*polledConn // by the id each registration carries
	nextID int32
}

// polledConn is a connection registered with the poller.
type polledConn struct {
	poller  *readPoller
	id      int32
	cfg     *ListenerConfig
	conn    *tcpConn
	raw     syscall.RawConn
	pid     *actor.PID
	release func() // undoes admitTCP's count of the connection

	finished bool // guarded by poller.mu

	// The read in progress, used by the session's goroutine only: the
	// connection is armed again only after Done, so reads never overlap.
	readable *actors.Readable // sent on every event
	buf      *[]byte          // the borrowed buffer of the read
	ended    bool             // the read failed; the connection is never armed again
}

// pollEvents is how many ready connections one wait collects at most.
const pollEvents = 256

var (
	pollerOnce   sync.Once
	sharedPoller *readPoller
)

// tcpPoller returns the process's read poller, or nil when the kernel
// refused to make one; readers then fall back to a goroutine each.
func tcpPoller(logger *slog.Logger) *readPoller {
	pollerOnce.Do(func() {
		p, err := newReadPoller()
		if err != nil {
			logger.Warn("tcp read poller unavailable; using a reader goroutine per connection", "err", err)
			return
		}
		sharedPoller = p
		go p.run(logger)
	})
	return sharedPoller
}

func newReadPoller() (*readPoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("epoll instance: set non-blocking: %w", err)
	}
	// A non-blocking descriptor given to os.NewFile is registered with Go's
	// poller, so raw.Read below parks the goroutine instead of a thread.
	file := os.NewFile(uintptr(epfd), "tcp-read-poller")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("epoll instance: %w", err)
	}
	return &readPoller{epfd: epfd, epoll: file, raw: raw, conns: make(map[int32]*polledConn)}, nil
}

// run collects ready connections and starts a read for each, for the life
// of the process.
func (p *readPoller) run(logger *slog.Logger) {
	events := make([]syscall.EpollEvent, pollEvents)
	for {
		var n int
		err := p.raw.Read(func(fd uintptr) bool {
			for {
				var werr error
				n, werr = syscall.EpollWait(int(fd), events, 0)
				if werr == syscall.EINTR {
					continue
				}
				if werr != nil {
					n = 0
					logger.Error("tcp read poller: epoll_wait failed; waiting for the next event", "err", werr)
				}
				return n > 0
			}
		})
		if err != nil {
			logger.Error("tcp read poller stopped; idle connections are no longer read", "err", err)
			return
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if c := p.conns[ev.Fd]; c != nil {
				c.cfg.System.Root.Send(c.pid, c.readable)
			}
		}
		p.mu.Unlock()
	}
}

// add registers conn, whose session is pid, for reading. release is called
// once when the connection ends.
func (p *readPoller) add(cfg *ListenerConfig, conn *tcpConn, pid *actor.PID, release func()) error {
	tc, ok := conn.c.(*net.TCPConn)
	if !ok {
		return fmt.Errorf("read poller: %T is not a plain TCP connection", conn.c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return fmt.Errorf("read poller: %w", err)
	}
	c := &polledConn{poller: p, cfg: cfg, conn: conn, raw: raw, pid: pid, release: release}
	c.readable = &actors.Readable{Read: c.read}

	p.mu.Lock()
	for {
		p.nextID++
		if p.nextID <= 0 {
			p.nextID = 1
		}
		if p.conns[p.nextID] == nil {
			break
		}
	}
	c.id = p.nextID
	p.conns[c.id] = c
	p.mu.Unlock()

	// From here on Close finishes the registration. A Close that came
	// before is seen by the check below, and one that closes the socket
	// before it is armed makes arm fail.
	conn.polled.Store(c)
	select {
	case <-conn.closed:
		c.finish()
		return nil
	default:
	}
	if !c.arm(syscall.EPOLL_CTL_ADD) {
		c.finish()
	}
	return nil
}

// arm requests one readiness event for c. It reports false when the
// socket is closed.
func (c *polledConn) arm(op int) bool {
	var err error
	cerr := c.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLONESHOT, Fd: c.id}
		err = syscall.EpollCtl(c.poller.epfd, op, int(fd), &ev)
	})
	return cerr == nil && err == nil
}

// finish unregisters c and releases its count, once. It runs before the
// socket closes, because a closed descriptor number can be reused by a new
// connection before a late epoll_ctl would reach it.
func (c *polledConn) finish() {
	p := c.poller
	p.mu.Lock()
	if c.finished {
		p.mu.Unlock()
		return
	}
	c.finished = true
	delete(p.conns, c.id)
	p.mu.Unlock()

	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	c.release()
}

// read reads what the ready connection has, without waiting, on the
// session's goroutine. It returns nil and no error when nothing was there,
// arming the connection again. An error other than that ends the
// registration; the session then closes the connection.
func (c *polledConn) read() (*actors.Inbound, error) {
	c.buf = c.cfg.readBuffer()
	var n int
	var err error
	rerr := c.raw.Read(func(fd uintptr) bool {
		n, err = syscall.Read(int(fd), *c.buf)
		return true // return on EAGAIN too, because the session must not block
	})
	switch {
	case rerr != nil:
		n, err = 0, rerr // the connection was closed meanwhile
	case err == syscall.EAGAIN || err == syscall.EINTR:
		n, err = 0, nil // a stale event
	case err != nil:
		n = 0
	case n == 0:
		err = io.EOF
	}

	if err != nil {
		c.ended = true
		c.finish()
	}
	if n == 0 {
		c.done()
		return nil, err
	}
	return &actors.Inbound{Data: (*c.buf)[:n], Done: c.done}, err
}

// done returns the read's buffer and arms the connection again. The
// session calls it once it has handled the bytes.
func (c *polledConn) done() {
	c.cfg.readBuffers.Put(c.buf)
	c.buf = nil
	if c.ended {
		return
	}
	if !c.arm(syscall.EPOLL_CTL_MOD) {
		c.ended = true
		c.finish() // the session closed the connection meanwhile
	}
}
