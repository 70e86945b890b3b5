package gateway

import (
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/lxzan/gws"

	"github.com/iris-im/iris/actors"
)

// wsConn is a client connection on the WebSocket listener. Each write sends
// one binary WebSocket message holding one or more whole frames.
type wsConn struct {
	socket       *gws.Conn
	writeTimeout time.Duration
	closeOnce    sync.Once
	closed       chan struct{} // closed by Close; releases a waiting OnMessage
}

// Write sends frames within the write timeout. The deadline is cleared
// afterwards: gws replies to pings from its read goroutine on the same
// connection, and a deadline left from an earlier write would make a late
// pong fail and close an idle connection.
func (w *wsConn) Write(frames []byte) error {
	if err := w.socket.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		return err
	}
	err := w.socket.WriteMessage(gws.OpcodeBinary, frames)
	_ = w.socket.SetWriteDeadline(time.Time{})
	return err
}

// Close sends a close frame, within a short deadline so that a client that
// does not read cannot hold it, and closes the connection.
func (w *wsConn) Close() error {
	first := false
	w.closeOnce.Do(func() {
		close(w.closed)
		first = true
	})
	if first {
		_ = w.socket.SetWriteDeadline(time.Now().Add(time.Second))
		_ = w.socket.WriteClose(1000, nil)
	}
	return w.socket.NetConn().Close()
}

func (w *wsConn) RemoteAddr() string { return w.socket.RemoteAddr().String() }
func (w *wsConn) Transport() string  { return "ws" }

// wsHandler receives gws events. gws calls the handlers of one connection
// from that connection's read goroutine, one at a time.
type wsHandler struct {
	gws.BuiltinEventHandler
	cfg *ListenerConfig
}

// wsState holds the handler's state of one socket.
type wsState struct {
	conn      *wsConn
	pid       *actor.PID
	lastHeard atomic.Int64 // Unix nanoseconds of the last frame of any kind from the client
}

// heard records that the client sent something.
func (st *wsState) heard() { st.lastHeard.Store(time.Now().UnixNano()) }

// keepPinging pings the client when it has been silent for a whole interval
// and closes the connection when a further interval passes without any
// frame, not even the pong. Unlike TCP keepalive, which stops at the first
// proxy or load balancer, a WebSocket ping travels to the client itself.
func (h *wsHandler) keepPinging(socket *gws.Conn, st *wsState) {
	interval := h.cfg.PingInterval
	var check func()
	check = func() {
		select {
		case <-st.conn.closed:
			return
		default:
		}
		silent := time.Since(time.Unix(0, st.lastHeard.Load()))
		if silent >= 2*interval {
			h.cfg.Logger.Info("closing websocket: no response to ping", "conn", st.conn.RemoteAddr(), "silent", silent.Round(time.Millisecond))
			_ = socket.NetConn().Close()
			return
		}
		if silent >= interval {
			_ = socket.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
			_ = socket.WritePing(nil)
			_ = socket.SetWriteDeadline(time.Time{})
		}
		time.AfterFunc(interval/2, check)
	}
	time.AfterFunc(interval/2, check)
}

const wsStateKey = "iris"

// wsSlot is the session storage of one gws connection. It holds only the
// *wsState stored under wsStateKey, because the default storage, a map
// with a mutex, costs several hundred bytes per idle connection.
//
// NB: Store ignores every other key; nothing in this package uses one.
type wsSlot struct {
	state atomic.Pointer[wsState]
}

func (s *wsSlot) Len() int {
	if s.state.Load() == nil {
		return 0
	}
	return 1
}

func (s *wsSlot) Load(key string) (any, bool) {
	if st := s.state.Load(); key == wsStateKey && st != nil {
		return st, true
	}
	return nil, false
}

func (s *wsSlot) Delete(key string) {
	if key == wsStateKey {
		s.state.Store(nil)
	}
}

func (s *wsSlot) Store(key string, value any) {
	if st, ok := value.(*wsState); ok && key == wsStateKey {
		s.state.Store(st)
	}
}

func (s *wsSlot) Range(f func(key string, value any) bool) {
	if st := s.state.Load(); st != nil {
		f(wsStateKey, st)
	}
}

func (h *wsHandler) OnOpen(socket *gws.Conn) {
	setKeepAlive(socket.NetConn(), h.cfg.KeepAlive)
	conn := &wsConn{socket: socket, writeTimeout: h.cfg.WriteTimeout, closed: make(chan struct{})}
	pid, err := h.cfg.Start(conn)
	if err != nil {
		h.cfg.Logger.Warn("session spawn failed; closing websocket", "conn", conn.RemoteAddr(), "err", err)
		_ = socket.NetConn().Close()
		return
	}
	st := &wsState{conn: conn, pid: pid}
	st.heard()
	socket.Session().Store(wsStateKey, st)
	if h.cfg.PingInterval > 0 {
		h.keepPinging(socket, st)
	}
}

// OnMessage hands one WebSocket message to the session and waits until the
// session has handled it, so that the message buffer can be returned to
// gws and a fast sender is slowed down by TCP.
func (h *wsHandler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	st := wsStateOf(socket)
	if st == nil {
		return
	}
	st.heard()
	done := make(chan struct{})
	h.cfg.System.Root.Send(st.pid, &actors.Inbound{Data: message.Bytes(), Done: func() { close(done) }})
	select {
	case <-done:
	case <-st.conn.closed:
	}
}

// OnPing replies to a ping with a pong written within the write timeout.
func (h *wsHandler) OnPong(socket *gws.Conn, _ []byte) {
	if st := wsStateOf(socket); st != nil {
		st.heard()
	}
}

func (h *wsHandler) OnPing(socket *gws.Conn, payload []byte) {
	if st := wsStateOf(socket); st != nil {
		st.heard()
	}
	_ = socket.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
	_ = socket.WritePong(payload)
	_ = socket.SetWriteDeadline(time.Time{})
}

func (h *wsHandler) OnClose(socket *gws.Conn, err error) {
	if st := wsStateOf(socket); st != nil {
		h.cfg.System.Root.Send(st.pid, &actors.ConnClosed{Err: err})
	}
}

func wsStateOf(socket *gws.Conn) *wsState {
	v, ok := socket.Session().Load(wsStateKey)
	if !ok {
		return nil
	}
	return v.(*wsState)
}

// maxWSReadBuffer caps the read buffer of a WebSocket connection. gws
// keeps that buffer for the connection's whole life, idle or not, so it is
// smaller than a TCP connection's, which is borrowed only while bytes flow.
// gws reads a message through it into the message's own buffer, and reads
// that exceed the read buffer bypass it.
const maxWSReadBuffer = 1 << 10

// newWSServer returns the HTTP server that upgrades requests on the
// configured path to WebSocket connections.
func newWSServer(cfg *ListenerConfig) *http.Server {
	upgrader := gws.NewUpgrader(&wsHandler{cfg: cfg}, &gws.ServerOption{
		ReadMaxPayloadSize: cfg.MaxWSMessage,
		ReadBufferSize:     min(cfg.ReadBuffer, maxWSReadBuffer),
		HandshakeTimeout:   10 * time.Second,
		Recovery:           gws.Recovery,
		NewSession:         func() gws.SessionStorage { return &wsSlot{} },
	})
	mux := http.NewServeMux()
	mux.HandleFunc(cfg.WSPath, func(w http.ResponseWriter, r *http.Request) {
		if !admitWS(cfg, w, r) {
			return
		}
		release := func() {} // admitWS counted the connection; undo that when it ends
		if addrPort, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			release = func() { cfg.Conns.Release(addrPort.Addr()) }
		}
		socket, err := upgrader.Upgrade(w, r)
		if err != nil {
			release()
			return // gws has already responded to the failed handshake
		}
		go func() {
			defer release()
			defer recoverConn(cfg, socket.NetConn(), func() {
				if st := wsStateOf(socket); st != nil {
					cfg.System.Root.Send(st.pid, &actors.ConnClosed{Err: errConnPanicked})
				}
			})
			socket.ReadLoop()
		}()
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}
