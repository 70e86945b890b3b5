package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
)

// tcpConn is a client connection on the TCP listener.
type tcpConn struct {
	c            net.Conn
	writeTimeout time.Duration
	closeOnce    sync.Once
	closed       chan struct{} // closed by Close; releases the read loop
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

// serveTCP starts the session of one connection and feeds it what the
// client sends, one read at a time.
func serveTCP(cfg *ListenerConfig, c net.Conn) {
	if ip, ok := remoteIP(c.RemoteAddr()); ok {
		defer cfg.Conns.Release(ip) // counted by admitTCP
	}
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
	defer recoverConn(cfg, c, func() { cfg.System.Root.Send(pid, &actors.ConnClosed{Err: errConnPanicked}) })
	readLoop(cfg.System, pid, conn, cfg.ReadBuffer)
}

// readLoop reads from the connection and hands each read to the session,
// waiting until the session has handled it before reading again. It ends
// when the connection fails or is closed, and then tells the session. A
// session that stops (even by a panic) closes its connection, which also
// releases a read loop waiting on it.
func readLoop(system *actor.ActorSystem, pid *actor.PID, conn *tcpConn, size int) {
	buf := make([]byte, size)
	for {
		n, err := conn.c.Read(buf)
		if n > 0 {
			done := make(chan struct{})
			system.Root.Send(pid, &actors.Inbound{Data: buf[:n], Done: done})
			select {
			case <-done:
			case <-conn.closed:
				return
			}
		}
		if err != nil {
			system.Root.Send(pid, &actors.ConnClosed{Err: err})
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
