package actors

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/gateway/wire"
)

// Conn is the client connection a session writes to. The gateway implements
// it for TCP and WebSocket. Write is called only from the session actor and
// writes whole frames. It must honour a write deadline, so that a client that
// stops reading cannot block its session forever.
type Conn interface {
	Write(frames []byte) error
	Close() error
	RemoteAddr() string
	Transport() string // "tcp" or "ws"
}

// LoadLevel reports how much optional work to shed: 0 none, 1 typing,
// 2 also presence queries, 3 also read receipts.
type LoadLevel interface{ Level() int }

// Verifier checks a login token.
type Verifier interface {
	Verify(user, token string, now time.Time) error
}

// SessionConfig holds the settings and services that every session of a node shares.
type SessionConfig struct {
	Limits            wire.Limits
	LoginTimeout      time.Duration // a connection not logged in by then is closed
	RedeliveryTimeout time.Duration // an unacked delivery is written again after this
	RequestTimeout    time.Duration // timeout of blocking requests to shards (login)
	MaxInflight       int           // appends awaiting their reply before reading pauses
	Window            int           // max unacknowledged deliveries written to a connection
	WindowBytes       int           // max bytes of unacknowledged deliveries
	SlowTimeout       time.Duration // a full window without acks for this long closes the connection
	FrameTimeout      time.Duration // an unfinished frame without new bytes for this long closes the connection
	IdleTimeout       time.Duration // a connection that sends nothing for this long is closed; 0 never
	FetchPage         int           // inbox entries requested per page at login

	AuthRequired bool
	Verifier     Verifier // nil when no secret is configured

	Load      LoadLevel     // shedding level; nil never sheds
	Logins    *LoginGuard   // blocks accounts after repeated failed logins; nil never blocks
	LoginGate chan struct{} // one slot per login running at once; nil is no limit
	Routers   *RouterPool
	Registrar *actor.PID // the edge's registrar; see registrar
	Limiter   *RateLimiter
	Stats     *Stats
	Logger    *slog.Logger

	decoders sync.Pool // *wire.Decoder with Limits, lent to sessions while bytes flow
}

// decoder borrows an empty decoder with the node's limits. A session holds
// one only while the client's bytes flow or a frame is unfinished, so idle
// sessions share a few instead of holding one each.
func (cfg *SessionConfig) decoder() *wire.Decoder {
	if d, ok := cfg.decoders.Get().(*wire.Decoder); ok {
		return d
	}
	return wire.NewDecoder(cfg.Limits)
}

// releaseDecoder returns d, which holds no part of a frame, to the pool.
func (cfg *SessionConfig) releaseDecoder(d *wire.Decoder) {
	d.Reset()
	cfg.decoders.Put(d)
}

// Inbound carries bytes read from the connection into the session. The
// session calls Done once it has handled them, and the reader reads again
// only then, so a session holds at most one unprocessed read and a fast
// sender is slowed down by TCP itself.
type Inbound struct {
	Data []byte
	Done func()
}

// Readable reports to the session that its connection has bytes waiting,
// and the session reads them itself with Read, which never blocks. A reader
// goroutine handing its bytes over, and waiting for the session to finish
// with them, cost two goroutine switches per read. Read returns the bytes
// as an Inbound, or nil when there were none, and the error that ended the
// connection, if any.
type Readable struct {
	Read func() (*Inbound, error)
}

// ConnClosed reports to the session that its connection is gone.
type ConnClosed struct{ Err error }

type loginTimeout struct{}
type loginGraceOver struct{}

// writeOut is the message a session sends itself to write its pending
// frames. The frames of all the messages queued before it then leave in one
// write: under load a session gets deliveries and replies in bursts, and a
// system call for each cost more than the rest of the delivery.
type writeOut struct{}

var writeOutMsg = &writeOut{}

type frameTimeout struct{}
type idleCheck struct{}
type redeliveryTick struct{}
type sendRetryTick struct{}

// loginGrace is how long a lone LOGIN opcode waits for the read that carries
// the user name. A LOGIN has no length field, so an opcode with nothing
// after it is either a login split by the network or an empty user name;
// the name of a split login usually arrives within microseconds.
const loginGrace = 250 * time.Millisecond

// profile is the protocol a session logged in with.
type profile uint8

const (
	profileNone profile = iota
	profileV1           // logged in with 0x01: deliveries as 0x10, errors as 0xFE
	profileV2           // logged in with 0x08: deliveries as 0x11, sends replied to with 0x0B/0x0C
)

// pendingDelivery is an entry written to the client and not yet acknowledged.
type pendingDelivery struct {
	entry  *irispb.Entry
	sentAt time.Time
}

// session is the actor of one client connection, the Go counterpart of the
// Erlang process per connection. It owns the connection's decoder, the
// login state, the sends awaiting durability, and the deliveries awaiting an
// ACK. It handles: Inbound (client bytes), Envelope (replies and pushed
// deliveries from shards), Readable, ConnClosed, and its own timers.
//
// Deliveries: at login the session registers with its user's shard and then
// pages through the inbox from the start. Entries the shard pushes while that
// catch-up runs are dropped, because the pages will contain them: the shard
// answers fetches and pushes entries from one mailbox, so any entry stored
// before a page was read is in the page and any entry stored after it is
// pushed after the page. After catch-up, a pushed entry at or below the last
// delivered seq is a duplicate and is dropped. Unacked deliveries are written
// again after RedeliveryTimeout, and again from the inbox at the next login.
//
// A panic in a session stops that session only: its supervisor stops it and
// the connection is closed; the inbox keeps everything not yet acked.
type session struct {
	cfg  *SessionConfig
	conn Conn
	self *actor.PID
	sys  *actor.ActorSystem

	flushes    []*irispb.Flush // Flush requests waiting for the next read
	flushTimer *time.Timer

	decoder *wire.Decoder // borrowed while a read is decoded or a frame is unfinished, else nil
	out     []byte        // frames to write at the end of the current message

	profile profile
	user    string
	bucket  *Bucket

	outbox    *outbox     // appends awaiting their reply
	sendTimer *time.Timer // checks the outbox for overdue replies

	statusWaiting []statusQuery // presence queries waiting for their replies, oldest first
	statusTimer   *time.Timer   // sends overdue presence queries again
	heldDone      func()        // a reader waiting until the outbox drops below MaxInflight

	catchingUp    bool
	lastDelivered uint64
	pending       map[uint64]*pendingDelivery
	pendingBytes  int               // size of the bodies in pending
	behind        bool              // entries were left in the inbox because the window was full
	lastAck       time.Time         // when an acknowledgement last made room in the window
	acks          []*irispb.AckItem // v1 acks gathered while handling one read
	ackedUpTo     uint64            // v2 cumulative ack gathered while handling one read

	lastRead        time.Time   // when the last bytes from the client arrived
	frameTimer      *time.Timer // pending while a frame is unfinished
	idleTimer       *time.Timer // pending while IdleTimeout is set
	loginTimer      *time.Timer
	redeliveryTimer *time.Timer
	closing         bool
	draining        bool // the client closed its side; the session waits for its pending sends
	writeQueued     bool // a writeOut is in the mailbox
}

// NewSession returns the session actor of conn.
func NewSession(cfg *SessionConfig, conn Conn) actor.Actor {
	return &session{
		cfg:    cfg,
		conn:   conn,
		outbox: newOutbox(cfg.Stats),
	}
}

// Receive handles one message and then writes whatever frames it produced.
func (s *session) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
	case *Inbound:
		s.receiveBytes(ctx, msg)
		s.answerFlushes(ctx)
	case *Readable:
		in, err := msg.Read()
		if in != nil {
			s.receiveBytes(ctx, in)
			s.answerFlushes(ctx)
		}
		if err != nil {
			s.connClosed(ctx, err)
		}
	case *flushGraceOver:
		s.flushTimer = nil
		s.answerFlushes(ctx)
	case *irispb.Envelope:
		s.receiveEnvelope(ctx, msg)
	case *loginTimeout:
		if s.profile == profileNone {
			s.fail(ctx, "login_timeout")
		}
	case *frameTimeout:
		s.checkFrameTimeout(ctx)
	case *idleCheck:
		s.checkIdle(ctx)
	case *loginGraceOver:
		if s.profile == profileNone && s.decoder != nil && s.decoder.PendingLogin() {
			s.fail(ctx, wire.ErrInvalidLogin.Reason)
		}
	case *redeliveryTick:
		s.redeliver(ctx)
	case *sendRetryTick:
		s.retrySends(ctx)
	case *statusRetryTick:
		s.retryStatus(ctx)
	case *RetrySends:
		if len(s.outbox.sends) > 0 {
			s.outbox.retryAll(time.Now(), func(env *irispb.Envelope) { s.toShard(ctx, env) })
		}
	case *Crash:
		panic(msg.Reason)
	case *ConnClosed:
		s.connClosed(ctx, msg.Err)
	case *actor.Stopping:
		s.stop(ctx)
	case *writeOut:
		s.writeQueued = false
	}

	switch {
	case len(s.out) == 0:
	case s.closing || !deferWrite(ctx.Message()):
		s.flush(ctx)
	case s.writeQueued:
		// The writeOut in the mailbox writes these frames too.
	default:
		s.writeQueued = true
		ctx.Send(s.self, writeOutMsg)
	}
}

// deferWrite reports whether the frames produced for msg may wait for a
// writeOut behind the messages already in the mailbox. The lifecycle
// messages and writeOut itself write at once.
func deferWrite(msg any) bool {
	switch msg.(type) {
	case *actor.Started, *actor.Stopping, *actor.Stopped, *writeOut:
		return false
	}
	return true
}

func (s *session) start(ctx actor.Context) {
	s.self = ctx.Self()
	s.sys = ctx.ActorSystem()
	if s.conn.Transport() == "ws" {
		s.cfg.Stats.SessionsWS.Add(1)
	} else {
		s.cfg.Stats.SessionsTCP.Add(1)
	}
	self, root := s.self, s.sys.Root
	s.loginTimer = time.AfterFunc(s.cfg.LoginTimeout, func() { root.Send(self, &loginTimeout{}) })
	s.lastRead = time.Now()
	if s.cfg.IdleTimeout > 0 {
		s.idleTimer = time.AfterFunc(s.cfg.IdleTimeout, func() { root.Send(self, &idleCheck{}) })
	}
}

// checkIdle closes a connection that has sent nothing for IdleTimeout, or
// checks again when the client's last bytes are more recent.
func (s *session) checkIdle(ctx actor.Context) {
	s.idleTimer = nil
	if s.closing {
		return
	}
	if idle := time.Since(s.lastRead); idle < s.cfg.IdleTimeout {
		self, root := s.self, s.sys.Root
		s.idleTimer = time.AfterFunc(s.cfg.IdleTimeout-idle, func() { root.Send(self, &idleCheck{}) })
		return
	}
	s.fail(ctx, reasonIdleTimeout)
}

func (s *session) stop(ctx actor.Context) {
	if !s.closing {
		// Stopped from outside (the node is shutting down): send the reason,
		// so the client reconnects instead of guessing at a network fault.
		s.out = wire.AppendError(s.out, reasonShuttingDown)
		s.closing = true
	}
	if s.conn.Transport() == "ws" {
		s.cfg.Stats.SessionsWS.Add(-1)
	} else {
		s.cfg.Stats.SessionsTCP.Add(-1)
	}
	if s.loginTimer != nil {
		s.loginTimer.Stop()
	}
	if s.redeliveryTimer != nil {
		s.redeliveryTimer.Stop()
	}
	if s.sendTimer != nil {
		s.sendTimer.Stop()
	}
	if s.statusTimer != nil {
		s.statusTimer.Stop()
	}
	if s.frameTimer != nil {
		s.frameTimer.Stop()
	}
	if s.flushTimer != nil {
		s.flushTimer.Stop()
	}
	if s.idleTimer != nil {
		s.idleTimer.Stop()
	}
	s.releaseHeldReader()

	if s.profile != profileNone {
		ctx.Send(s.cfg.Registrar, &Untrack{Session: s.self})
		s.sendAcks(ctx)
		s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Unregister{
			Unregister: &irispb.UnregisterRequest{User: s.user, Session: fromPID(s.self)},
		}})
		s.cfg.Limiter.Release(s.user)
	}
	s.flush(ctx)
	_ = s.conn.Close()
}

// receiveBytes decodes and handles every complete frame of one read.
func (s *session) receiveBytes(ctx actor.Context, in *Inbound) {
	defer func() {
		if s.heldDone == nil && s.outbox.pending() >= s.cfg.MaxInflight && !s.closing {
			s.heldDone = in.Done // released when replies arrive
			return
		}
		in.Done()
	}()
	if s.closing {
		return
	}

	if s.decoder == nil {
		s.decoder = s.cfg.decoder()
	}
	if err := s.decoder.Feed(in.Data); err != nil {
		s.cfg.Stats.BadFrames.Add(1)
		s.fail(ctx, reasonOf(err))
		return
	}
	for !s.closing {
		frame, err := s.decoder.Next()
		if err != nil {
			var werr *wire.Error
			if errors.As(err, &werr) && !werr.Fatal {
				s.rejectFrame(ctx, werr)
				continue
			}
			s.cfg.Stats.BadFrames.Add(1)
			s.fail(ctx, reasonOf(err))
			return
		}
		if frame == nil {
			break
		}
		s.handleFrame(ctx, frame)
	}
	s.sendAcks(ctx)
	s.afterAcks(ctx)

	// A client that stops in the middle of a frame holds its buffer; give
	// it FrameTimeout from its last bytes to send the rest. One timer per
	// session, re-armed when it fires early, however many reads end
	// inside a frame.
	s.lastRead = time.Now()
	if s.decoder.Buffered() && s.cfg.FrameTimeout > 0 && s.frameTimer == nil {
		s.armFrameTimer(s.cfg.FrameTimeout)
	}

	if s.profile == profileNone && s.decoder.PendingLogin() {
		self, root := s.self, s.sys.Root
		time.AfterFunc(loginGrace, func() { root.Send(self, &loginGraceOver{}) })
	}

	if !s.closing && !s.decoder.Buffered() {
		s.cfg.releaseDecoder(s.decoder)
		s.decoder = nil
	}
}

func (s *session) armFrameTimer(after time.Duration) {
	self, root := s.self, s.sys.Root
	s.frameTimer = time.AfterFunc(after, func() { root.Send(self, &frameTimeout{}) })
}

// checkFrameTimeout closes the connection when a frame has stayed
// unfinished for FrameTimeout since the client's last bytes.
func (s *session) checkFrameTimeout(ctx actor.Context) {
	s.frameTimer = nil
	if s.closing || s.decoder == nil || !s.decoder.Buffered() {
		return
	}
	if idle := time.Since(s.lastRead); idle < s.cfg.FrameTimeout {
		s.armFrameTimer(s.cfg.FrameTimeout - idle) // bytes came meanwhile
		return
	}
	s.cfg.Stats.BadFrames.Add(1)
	s.fail(ctx, reasonFrameTimeout)
}

// fail writes an error frame and closes the connection.
func (s *session) fail(ctx actor.Context, reason string) {
	s.out = wire.AppendError(s.out, reason)
	s.closing = true
	ctx.Stop(s.self)
}

// flush writes the frames produced while handling the current message.
func (s *session) flush(ctx actor.Context) {
	if len(s.out) == 0 {
		return
	}
	err := s.conn.Write(s.out)
	s.cfg.Stats.Writes.Add(1)
	if cap(s.out) > 256<<10 {
		s.out = nil // do not keep a large buffer after a burst
	} else {
		s.out = s.out[:0]
	}
	if err != nil && !s.closing {
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			// The client stopped reading for a whole write timeout.
			s.cfg.Stats.SlowConsumers.Add(1)
			s.cfg.Logger.Info("closing slow consumer: write timed out", "user", s.user, "conn", s.conn.RemoteAddr())
		}
		s.closing = true
		ctx.Stop(s.self)
	}
}

// releaseHeldReader lets a reader paused by MaxInflight read again.
func (s *session) releaseHeldReader() {
	if s.heldDone != nil {
		done := s.heldDone
		s.heldDone = nil
		done()
	}
}

// halfCloseGrace is how long a session whose client closed its side of the
// connection waits for the replies to that client's pending sends.
const halfCloseGrace = 5 * time.Second

// errHalfCloseGrace ends a session whose pending sends outlasted halfCloseGrace.
var errHalfCloseGrace = errors.New("no reply to the pending sends within the grace period after the client closed its side")

// connClosed stops the session once its connection is gone. A client that
// only closed its side (EOF) may still read: while sends of its are pending,
// the session waits up to halfCloseGrace for their replies, so that every
// SEND2 gets its ACCEPTED or REJECTED.
func (s *session) connClosed(ctx actor.Context, err error) {
	if errors.Is(err, io.EOF) && s.outbox.pending() > 0 && !s.closing && !s.draining {
		s.draining = true
		self, root := s.self, s.sys.Root
		time.AfterFunc(halfCloseGrace, func() { root.Send(self, &ConnClosed{Err: errHalfCloseGrace}) })
		return
	}
	s.answerFlushes(ctx)
	s.closing = true
	ctx.Stop(s.self)
}

// toShard sends env to the router of its user, with this session as sender.
func (s *session) toShard(ctx actor.Context, env *irispb.Envelope) {
	ctx.Request(s.cfg.Routers.For(envelopeUser(env)), env)
}

func reasonOf(err error) string {
	var werr *wire.Error
	if errors.As(err, &werr) {
		return werr.Reason
	}
	return "invalid_frame"
}
