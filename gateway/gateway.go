// Package gateway owns the client-facing side of an edge: the TCP and
// WebSocket listeners, the connections they accept, and the hand-over of
// each connection to a session actor. The wire codec is in gateway/wire,
// JWT checks in gateway/auth, the admin HTTP server in gateway/admin.
package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors"
)

// SessionStarter starts the session actor of a new connection.
type SessionStarter func(conn actors.Conn) (*actor.PID, error)

// ListenerConfig configures one listener. It is shared by every incarnation
// of the listener actor, so a restarted listener binds the same address,
// including the port the first one picked when Addr asks for port 0.
type ListenerConfig struct {
	Transport    string        // "tcp" or "ws"
	Addr         string        // host:port to bind
	WSPath       string        // HTTP path of the WebSocket endpoint
	WriteTimeout time.Duration // deadline of each write to a client
	ReadBuffer   int           // bytes read from a connection at once; WebSocket caps it at 1 KiB
	Conns        *ConnCounter  // open connection limits, shared by a node's listeners; nil is no limit
	TLS          *tls.Config   // when set, the listener speaks TLS
	KeepAlive    time.Duration // idle time before TCP keepalive probes; 0 turns them off
	PingInterval time.Duration // WebSocket: ping a client silent this long, close it after twice; 0 turns pings off
	MaxWSMessage int           // max payload of one WebSocket message

	// IPLimit limits new connections per remote address. Nil disables the
	// limit.
	IPLimit *IPLimiter
	// OnReject, when set, is called once for every connection the listener
	// rejects, with the reason (such as ReasonTooManyConnections), for
	// metrics. It runs on the accept path, so it must not block.
	OnReject func(reason string)

	System *actor.ActorSystem
	Start  SessionStarter
	Logger *slog.Logger

	bound       atomic.Pointer[string] // address the first incarnation bound
	rejects     rejectLog              // rate limit of the log lines about rejections
	readBuffers sync.Pool              // *[]byte of ReadBuffer bytes, lent to TCP reads
}

// readBuffer borrows a buffer of ReadBuffer bytes. Return it to
// c.readBuffers once nothing refers to its bytes.
func (c *ListenerConfig) readBuffer() *[]byte {
	if b, ok := c.readBuffers.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, c.ReadBuffer)
	return &b
}

// BoundAddr returns the address the listener is bound to, or "" before the
// first start.
func (c *ListenerConfig) BoundAddr() string {
	if p := c.bound.Load(); p != nil {
		return *p
	}
	return ""
}

// acceptFailed reports that the accept loop ended with an error while the
// listener was not being stopped.
type acceptFailed struct{ err error }

// listener is the actor that owns one listening socket. It binds in
// Started, so a bind failure fails the start of the node with the
// listener's name; accepted connections are handed to sessions and live on
// when the listener stops. If the accept loop fails, the actor panics, and
// its supervisor restarts it, which binds the socket again.
//
// Handles: acceptFailed, actors.Crash.
type listener struct {
	cfg  *ListenerConfig
	ln   net.Listener
	http *http.Server
	wg   sync.WaitGroup
	stop chan struct{}
}

// NewListener returns the producer of the listener actor for cfg, in the
// form supervisor.StartActor expects.
func NewListener(cfg *ListenerConfig) func(arg any) actor.Actor {
	return func(any) actor.Actor { return &listener{cfg: cfg} }
}

// Receive handles one message.
func (l *listener) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		if err := l.listen(ctx); err != nil {
			panic(err)
		}
	case *actor.Stopping:
		l.close()
	case *actor.Restarting:
		l.close()
	case *acceptFailed:
		panic(fmt.Errorf("%s listener on %s failed: %w", l.cfg.Transport, l.ln.Addr(), msg.err))
	case *actors.Crash:
		panic(msg.Reason)
	}
}

func (l *listener) listen(ctx actor.Context) error {
	addr := l.cfg.Addr
	if bound := l.cfg.BoundAddr(); bound != "" {
		addr = bound
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", l.cfg.Transport, err)
	}
	bound := ln.Addr().String()
	if l.cfg.TLS != nil {
		ln = tls.NewListener(ln, l.cfg.TLS)
	}
	l.ln = ln
	l.cfg.bound.Store(&bound)
	l.stop = make(chan struct{})

	self, root := ctx.Self(), ctx.ActorSystem().Root
	failed := func(err error) { root.Send(self, &acceptFailed{err: err}) }
	l.wg.Add(1)
	if l.cfg.Transport == "ws" {
		l.http = newWSServer(l.cfg)
		go func() {
			defer l.wg.Done()
			if err := l.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !l.stopping() {
				failed(err)
			}
		}()
	} else {
		go func() {
			defer l.wg.Done()
			if err := acceptTCP(l.cfg, ln, l.stop); err != nil {
				failed(err)
			}
		}()
	}
	l.cfg.Logger.Info("listener started", "transport", l.cfg.Transport, "addr", bound)
	return nil
}

func (l *listener) stopping() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// close stops accepting and waits for the accept loop to end. Connections
// already accepted belong to their sessions and stay open.
func (l *listener) close() {
	if l.ln == nil {
		return
	}
	close(l.stop)
	if l.http != nil {
		_ = l.http.Close()
	}
	_ = l.ln.Close()
	l.wg.Wait()
	l.ln, l.http = nil, nil
}
