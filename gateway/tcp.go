package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
)

// tcpConn is a client connection on the TCP listener.
type tcpConn struct {
	c            net.Conn
	writeTimeout time.Duration
	closeOnce    sync.Once
	closed       chan struct{}              // closed by Close; releases the read loop
	polled       atomic.Pointer[polledConn] // set while the read poller watches the connection
}

func newTCPConn(c net.Conn, writeTimeout time.Duration) *tcpConn {
	return &tcpConn{c: c, writeTimeout: writeTimeout, closed: make(chan struct{})}
}

func (t *tcpConn) Write(frames []byte) error {
	if err := t.c.SetWriteDeadline(time.Now().Add(t.writeTimeout)); err != nil {
		return err
	}
	_, err := t.c.Write(frames)
	return err
}

func (t *tcpConn) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	if p := t.polled.Load(); p != nil {
		p.finish() // before the socket closes and its descriptor can be reused
	}
	return t.c.Close()
}

func (t *tcpConn) RemoteAddr() string { return t.c.RemoteAddr().String() }
func (t *tcpConn) Transport() string  { return "tcp" }

// acceptTCP accepts connections until stop is closed. Temporary accept
// errors (such as running out of file descriptors) are retried with a
// growing pause; any other error ends the loop and is returned.
func acceptTCP(cfg *ListenerConfig, ln net.Listener, stop <-chan struct{}) error {
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			cfg.Logger.Warn("tcp accept failed; retrying", "err", err, "pause", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		if !admitTCP(cfg, c) {
			continue
		}
		go func() {
			defer recoverConn(cfg, c, nil)
			serveTCP(cfg, c)
		}()
	}
}

// serveTCP starts the session of one connection and then hands the
// connection to whatever feeds the session what the client sends: the
// process's read poller for a plain TCP connection, a new reader goroutine
// otherwise. The goroutine that started the session ends, because its stack
// grew during the start, and a parked goroutine keeps its stack until a
// garbage collection finds it mostly unused.
func serveTCP(cfg *ListenerConfig, c net.Conn) {
	ip, counted := remoteIP(c.RemoteAddr()) // counted by admitTCP
	handedOver := false
	defer func() {
		if counted && !handedOver {
			cfg.Conns.Release(ip)
		}
	}()

	setKeepAlive(c, cfg.KeepAlive)
	if tc, ok := c.(*tls.Conn); ok {
		// Finish the handshake before a session exists, within a deadline,
		// so that a client that never completes it holds nothing.
		_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			return
		}
		_ = tc.SetDeadline(time.Time{})
	}
	conn := newTCPConn(c, cfg.WriteTimeout)
	pid, err := cfg.Start(conn)
	if err != nil {
		cfg.Logger.Warn("session start failed; closing connection", "conn", conn.RemoteAddr(), "err", err)
		_ = c.Close()
		return
	}

	handedOver = true
	release := func() {
		if counted {
			cfg.Conns.Release(ip)
		}
	}
	if _, plain := c.(*net.TCPConn); plain {
		if poller := tcpPoller(cfg.Logger); poller != nil && poller.add(cfg, conn, pid, release) == nil {
			return
		}
	}
	go func() {
		defer release()
		defer recoverConn(cfg, c, func() { cfg.System.Root.Send(pid, &actors.ConnClosed{Err: errConnPanicked}) })
		readLoop(cfg, pid, conn)
	}()
}

// readLoop reads from the connection and hands each read to the session,
// waiting until the session has handled it before reading again. It ends
// when the connection fails or is closed, and then tells the session. A
// session that stops (even by a panic) closes its connection, which also
// releases a read loop waiting on it.
//
// It serves the connections that the read poller does not take: TLS ones,
// and every one where epoll is missing. On a plain TCP connection the loop
// first waits until the socket is readable and only then borrows a buffer
// from cfg's pool. The buffer goes back once the session has handled the
// read, so an idle connection holds no read buffer.
func readLoop(cfg *ListenerConfig, pid *actor.PID, conn *tcpConn) {
	waiter := newReadWaiter(conn.c)
	for {
		if waiter != nil {
			if err := waiter.wait(); err != nil {
				cfg.System.Root.Send(pid, &actors.ConnClosed{Err: err})
				return
			}
		}

		buf := cfg.readBuffer()
		n, err := conn.c.Read(*buf)
		if n > 0 {
			done := make(chan struct{})
			cfg.System.Root.Send(pid, &actors.Inbound{Data: (*buf)[:n], Done: func() { close(done) }})
			select {
			case <-done:
			case <-conn.closed:
				// The session may still hold the bytes, so the buffer is
				// left to the garbage collector instead of the pool.
				return
			}
		}
		cfg.readBuffers.Put(buf)

		if err != nil {
			cfg.System.Root.Send(pid, &actors.ConnClosed{Err: err})
			return
		}
	}
}

// setKeepAlive starts TCP keepalive probes after idle time without traffic:
// three probes idle/3 apart, so a peer whose network vanished (no FIN, no
// RST) is dropped about 2×idle after it fell silent, and its session ends.
func setKeepAlive(c net.Conn, idle time.Duration) {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if idle <= 0 {
		_ = tc.SetKeepAlive(false)
		return
	}
	_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: idle, Interval: max(idle/3, time.Second), Count: 3})
}

// handshakeTimeout bounds a client's TLS handshake.
const handshakeTimeout = 10 * time.Second

// errConnPanicked ends a session whose connection's reader panicked.
var errConnPanicked = errors.New("connection reader panicked")

// recoverConn, deferred in a connection's own goroutine, turns a panic
// there (in the codec, or in gws parsing a hostile frame) into the end of
// that connection alone: it closes the connection, calls ended, and logs.
// Without it, one client could end the process and every connection in it.
func recoverConn(cfg *ListenerConfig, c net.Conn, ended func()) {
	r := recover()
	if r == nil {
		return
	}
	_ = c.Close()
	if ended != nil {
		ended()
	}
	cfg.Logger.Error("connection reader panicked; closed that connection",
		"transport", cfg.Transport, "conn", c.RemoteAddr().String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}
