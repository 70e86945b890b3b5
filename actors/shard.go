// Package actors holds the actors a message passes through: the session
// (one per client connection), the router pool of an edge, and the shard
// grains that own users' presence and inbox operations on cores. Messages
// between them that may cross nodes are irispb.Envelope values.
package actors

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/storage"
)

// Store is the durable state a shard works on: the single-node Pebble store
// today, the replicated store in a cluster.
type Store interface {
	Append(req storage.AppendRequest, done func(storage.AppendResult, error))
	// Submit queues an ack or last-seen op; done, if not nil, runs once it
	// is committed or has failed.
	Submit(op storage.Op, done func(error))
	// Do queues a key or group op and reports its result once committed.
	Do(op storage.Op, done func(storage.Result, error))
	LastSeen(user string) (sec uint64, ok bool, err error)
	Inbox(user string, afterSeq uint64, limit int) ([]storage.Entry, error)
}

// Barrier is implemented by a store whose local reads can miss writes made
// through another node, such as the replicated store of a core. Barrier
// returns once every write committed before the call is visible locally.
type Barrier interface {
	Barrier(timeout time.Duration) error
}

// barrierTimeout bounds the wait of an activating grain for its store. It
// covers a raft election after a core died.
const barrierTimeout = 5 * time.Second

// waitForStore blocks an activating grain until its store shows the writes
// of the grain's previous activation, which may have run on another core.
// Messages wait in the grain's mailbox meanwhile. On a timeout the grain
// starts anyway and logs it, because its writes still go through raft.
func waitForStore(store any, logger *slog.Logger, identity string) {
	b, ok := store.(Barrier)
	if !ok {
		return
	}
	if err := b.Barrier(barrierTimeout); err != nil {
		logger.Warn("grain activated before its store caught up; reads may miss the newest writes", "grain", identity, "err", err)
	}
}

// ShardConfig holds the settings and services every shard grain of a node shares.
type ShardConfig struct {
	// ReplaceOnLogin closes a user's older sessions when the user logs in
	// again, instead of keeping one session per device.
	ReplaceOnLogin bool

	Store   Store
	Stats   *Stats
	Logger  *slog.Logger
	MaxPage int // max entries in one FetchReply
}

// shard is a cluster grain ("shard-<n>") that owns the users whose names hash
// to n. It keeps the live sessions of each of its users (registered at login,
// watched so that a crashed session is removed), replies to presence queries, and runs
// inbox operations against the store. An append is answered only after the
// store reports it durable; the entry is then pushed to every live session
// of the recipient, in seq order, because the store reports commits of one
// user in seq order and they reach this mailbox in that order.
//
// Handles: Envelope{Append, Ack, Register, Unregister, Fetch, Status},
// appendDone (from the store's commit goroutine), actor.Terminated.
//
// The shard holds no durable state of its own: after a restart or a move to
// another node, sessions re-register and everything else is in the store.
type shard struct {
	cfg      *ShardConfig
	identity string
	self     *actor.PID
	system   *actor.ActorSystem

	sessions map[string][]*actor.PID // user → live sessions
	owners   map[pidKey]string       // session → user

	// Writes queued in the store but not yet committed, which reads of the
	// store do not show yet. With them, an inbox page does not bring back an
	// entry acked a moment ago, and a user who just went offline does not
	// look never seen.
	acking   map[string]*pendingAcks // user → acks not yet committed
	lastSeen map[string]uint64       // user → last-seen time not yet committed

	// Logins waiting for the user's other sessions to flush their acks.
	flushes   map[uint64]*pendingLogin
	nextFlush uint64
}

// pendingLogin is a registration whose reply waits for flushes.
type pendingLogin struct {
	user    string
	others  []*actor.PID    // the user's sessions when the login came
	reply   *actor.PID      // the registering session's request
	waiting map[pidKey]bool // sessions yet to flush
}

// flushTimeout bounds how long a login waits for the user's other sessions
// to flush: a session busy writing to a slow client must not hold it up.
const flushTimeout = 200 * time.Millisecond

type flushExpired struct{ token uint64 }

// pendingAcks are the acks of one user queued in the store.
type pendingAcks struct {
	items map[uint64]uint64 // seq → tag
	upTo  uint64            // the highest cumulative ack queued
	ops   int               // ops queued and not yet committed
}

// hides reports whether e is acked by a queued ack.
func (p *pendingAcks) hides(e storage.Entry) bool {
	tag, ok := p.items[e.Seq]
	return e.Seq <= p.upTo || (ok && tag == e.Tag)
}

// ackCommitted and lastSeenCommitted report a queued write as committed
// (or failed, which makes the store's state visible again just the same).
type ackCommitted struct {
	user     string
	seq, tag uint64 // one entry, or zero
	upTo     uint64 // a cumulative ack, or zero
}

type lastSeenCommitted struct {
	user string
	sec  uint64
}

// keyDone carries the result of a key op back into the shard's mailbox.
type keyDone struct {
	requester *actor.PID
	req       *irispb.KeyRequest
	result    storage.Result
	err       error
}

// appendDone carries a store commit result back into the shard's mailbox.
type appendDone struct {
	requester *actor.PID
	req       *irispb.AppendRequest
	result    storage.AppendResult
	err       error
}

// NewShardKind returns the cluster kind that activates shard grains.
func NewShardKind(cfg *ShardConfig) *protocluster.Kind {
	props := actor.PropsFromProducer(func() actor.Actor {
		return &shard{
			cfg:      cfg,
			sessions: make(map[string][]*actor.PID),
			owners:   make(map[pidKey]string),
			acking:   make(map[string]*pendingAcks),
			lastSeen: make(map[string]uint64),
			flushes:  make(map[uint64]*pendingLogin),
		}
	}, cfg.Stats.Actors.Shard.PropsOptions()...)
	return protocluster.NewKind(cluster.ShardKind, props)
}

// Receive handles one message.
func (s *shard) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *protocluster.ClusterInit:
		s.identity = msg.Identity.Identity
		s.self = ctx.Self()
		s.system = ctx.ActorSystem()
		s.cfg.Stats.ShardsActive.Add(1)
		waitForStore(s.cfg.Store, s.cfg.Logger, s.identity)
		s.system.EventStream.Publish(&ShardActivated{Identity: s.identity})
	case *actor.Stopping, *actor.Restarting:
		s.cfg.Stats.ShardsActive.Add(-1)
	case *irispb.Envelope:
		s.receiveEnvelope(ctx, msg)
	case *appendDone:
		s.finishAppend(ctx, msg)
	case *flushExpired:
		if p := s.flushes[msg.token]; p != nil {
			s.confirmLogin(ctx, msg.token, p)
		}
	case *keyDone:
		s.finishKeys(ctx, msg)
	case *ackCommitted:
		s.finishAck(msg)
	case *lastSeenCommitted:
		if s.lastSeen[msg.user] == msg.sec {
			delete(s.lastSeen, msg.user)
		}
	case *Crash:
		panic(msg.Reason)
	case *actor.Terminated:
		s.removeSession(ctx, msg.Who, false)
	}
}

func (s *shard) receiveEnvelope(ctx actor.Context, env *irispb.Envelope) {
	switch body := env.Body.(type) {
	case *irispb.Envelope_Append:
		s.startAppend(ctx, body.Append)
	case *irispb.Envelope_Ack:
		s.ack(ctx, env, body.Ack)
	case *irispb.Envelope_Register:
		s.register(ctx, body.Register)
	case *irispb.Envelope_Unregister:
		if pid := toPID(body.Unregister.Session); pid != nil {
			s.removeSession(ctx, pid, true)
		}
	case *irispb.Envelope_Fetch:
		s.fetch(ctx, body.Fetch)
	case *irispb.Envelope_Status:
		s.status(ctx, body.Status)
	case *irispb.Envelope_Refresh:
		s.refresh(ctx, body.Refresh)
	case *irispb.Envelope_Relay:
		for _, pid := range s.sessions[body.Relay.User] {
			ctx.Send(pid, env)
			s.cfg.Stats.Relayed.Add(1)
		}
	case *irispb.Envelope_Key:
		s.keys(ctx, body.Key)
	case *irispb.Envelope_Flush:
		s.flushed(ctx, body.Flush)
	}
}

func (s *shard) startAppend(ctx actor.Context, req *irispb.AppendRequest) {
	requester := ctx.Sender()
	self, system := s.self, s.system

	sreq := storage.AppendRequest{
		User:   req.User,
		Kind:   uint8(req.Kind),
		Sender: req.Sender,
		TimeMS: req.TimeMs,
		Body:   req.Body,
	}
	if req.Dedup {
		sreq.Dedup = &storage.DedupKey{Sender: req.Sender, Scope: req.DedupScope, ID: req.DedupId}
	}
	if req.OrderN > 0 {
		sreq.Order = &storage.OrderKey{Stream: req.OrderStream, N: req.OrderN, Base: req.OrderBase}
	}

	// The callback runs on the store's commit goroutine: it only posts the
	// result back to this shard, which owns the session lists.
	s.cfg.Store.Append(sreq, func(res storage.AppendResult, err error) {
		system.Root.Send(self, &appendDone{requester: requester, req: req, result: res, err: err})
	})
}

func (s *shard) finishAppend(ctx actor.Context, done *appendDone) {
	reply := &irispb.AppendReply{Ref: done.req.Ref}
	if done.err != nil {
		reply.Error = storeErrorReason(done.err)
		s.cfg.Stats.Rejected.Add(1)
		if reply.Error == reasonStoreFailed {
			s.cfg.Logger.Warn("append failed", "shard", s.identity, "user", done.req.User, "err", done.err)
		}
	} else {
		reply.Seq, reply.Tag, reply.Duplicate = done.result.Seq, done.result.Tag, done.result.Duplicate
	}
	if done.requester != nil {
		ctx.Send(done.requester, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_AppendReply{AppendReply: reply}})
	}
	if done.err != nil {
		return
	}
	live := s.sessions[done.req.User]
	if done.result.Duplicate {
		s.cfg.Stats.Deduplicated.Add(1)
		s.pushRepeated(ctx, done, live)
		return
	}

	s.cfg.Stats.Appended.Add(1)
	if len(live) == 0 {
		return
	}
	deliver := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Deliver{Deliver: &irispb.Deliver{
		User:         done.req.User,
		SentUnixNano: done.req.SentUnixNano,
		Entry: &irispb.Entry{
			Seq:    done.result.Seq,
			Tag:    done.result.Tag,
			Kind:   done.req.Kind,
			Sender: done.req.Sender,
			TimeMs: done.req.TimeMs,
			Body:   done.req.Body,
		},
	}}}
	for _, pid := range live {
		ctx.Send(pid, deliver)
	}
}

// pushRepeated pushes the stored entry that a repeated append names (a dedup
// hit carries its seq) to the recipient's live sessions. The sender repeats an
// append when it got no reply, and the reply and the first push may both have
// been lost with a shard on a core that died. Sessions skip entries they have
// already delivered, so the push costs nothing when the first one arrived.
// The entry is read from the store rather than rebuilt from the repeat, whose
// body need not match what was stored.
func (s *shard) pushRepeated(ctx actor.Context, done *appendDone, live []*actor.PID) {
	seq := done.result.Seq
	if seq == 0 || len(live) == 0 {
		return
	}
	entries, err := s.cfg.Store.Inbox(done.req.User, seq-1, 1)
	if err != nil || len(entries) == 0 || entries[0].Seq != seq || entries[0].Tag != done.result.Tag {
		return // acked and deleted already, or unreadable: nothing to push
	}
	e := entries[0]
	if pending := s.acking[done.req.User]; pending != nil && pending.hides(e) {
		return // an ack of it is being written
	}
	deliver := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Deliver{Deliver: &irispb.Deliver{
		User:  done.req.User,
		Entry: &irispb.Entry{Seq: e.Seq, Tag: e.Tag, Kind: uint32(e.Kind), Sender: e.Sender, TimeMs: e.TimeMS, Body: e.Body},
	}}}
	for _, pid := range live {
		ctx.Send(pid, deliver)
	}
}

// ack removes acknowledged entries and passes the acks to the user's other sessions, so
// that they stop redelivering what one device has already acknowledged.
func (s *shard) ack(ctx actor.Context, env *irispb.Envelope, req *irispb.AckRequest) {
	user := req.User
	pending := s.acking[user]
	if pending == nil {
		pending = &pendingAcks{items: make(map[uint64]uint64)}
		s.acking[user] = pending
	}
	self, root := s.self, s.system.Root
	for _, item := range req.Items {
		seq, tag := item.Seq, item.Tag
		pending.items[seq] = tag
		pending.ops++
		s.cfg.Store.Submit(storage.Op{Kind: storage.OpAck, User: user, Seq: seq, Tag: tag}, func(error) {
			root.Send(self, &ackCommitted{user: user, seq: seq, tag: tag})
		})
	}
	if upTo := req.UpTo; upTo > 0 {
		pending.upTo = max(pending.upTo, upTo)
		pending.ops++
		s.cfg.Store.Submit(storage.Op{Kind: storage.OpAckUpTo, User: user, Seq: upTo}, func(error) {
			root.Send(self, &ackCommitted{user: user, upTo: upTo})
		})
	}
	s.cfg.Stats.Acked.Add(uint64(len(req.Items)))

	from := ctx.Sender()
	for _, pid := range s.sessions[req.User] {
		if from == nil || !pid.Equal(from) {
			ctx.Send(pid, env)
		}
	}
}

// keys runs a key bundle upload or fetch in the store. A fetch removes one
// one-time prekey in the same committed op that reads it, so no prekey is
// handed out twice, whatever the number of concurrent fetches.
func (s *shard) keys(ctx actor.Context, req *irispb.KeyRequest) {
	op := storage.Op{Kind: storage.OpKeyFetch, User: req.User}
	if !req.Fetch {
		op = storage.Op{Kind: storage.OpKeyUpload, User: req.User, Prekeys: req.OneTimePrekeys}
		if req.HasBundle {
			op.Bundle = &storage.KeyBundle{
				IdentityKey:           req.IdentityKey,
				SignedPrekey:          req.SignedPrekey,
				SignedPrekeySignature: req.SignedPrekeySignature,
				SignedPrekeyTimestamp: req.SignedPrekeyTimestamp,
				HasTimestamp:          req.HasTimestamp,
			}
		}
	}
	requester, self, root := ctx.Sender(), s.self, s.system.Root
	s.cfg.Store.Do(op, func(res storage.Result, err error) {
		root.Send(self, &keyDone{requester: requester, req: req, result: res, err: err})
	})
}

func (s *shard) finishKeys(ctx actor.Context, done *keyDone) {
	reply := &irispb.KeyReply{Ref: done.req.Ref, Fetch: done.req.Fetch, Status: "ok"}
	err := done.err
	if err == nil {
		err = done.result.Err
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		reply.Status = "not_found"
	case errors.Is(err, storage.ErrPoolFull):
		reply.Status, reply.Reason, reply.Count = "error", "prekey_pool_full", uint32(done.result.Count)
	case err != nil:
		s.cfg.Logger.Warn("key op failed", "shard", s.identity, "user", done.req.User, "err", err)
		reply.Status, reply.Reason = "error", reasonStoreFailed
	default:
		reply.Count = uint32(done.result.Count)
		if b := done.result.Bundle; b != nil {
			reply.IdentityKey, reply.SignedPrekey, reply.SignedPrekeySignature = b.IdentityKey, b.SignedPrekey, b.SignedPrekeySignature
			reply.HasTimestamp, reply.SignedPrekeyTimestamp = b.HasTimestamp, b.SignedPrekeyTimestamp
		}
		reply.OneTimePrekey = done.result.Prekey
	}
	if done.requester != nil {
		ctx.Send(done.requester, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_KeyReply{KeyReply: reply}})
	}
}

// finishAck drops a queued ack once the store has committed it.
func (s *shard) finishAck(msg *ackCommitted) {
	pending := s.acking[msg.user]
	if pending == nil {
		return
	}
	if msg.upTo > 0 && pending.upTo == msg.upTo {
		pending.upTo = 0 // later cumulative acks, if any, are higher and still queued
	}
	if msg.upTo == 0 && pending.items[msg.seq] == msg.tag {
		delete(pending.items, msg.seq)
	}
	pending.ops--
	if pending.ops <= 0 {
		delete(s.acking, msg.user)
	}
}

func (s *shard) register(ctx actor.Context, req *irispb.RegisterRequest) {
	pid := toPID(req.Session)
	if pid == nil {
		return
	}
	others := slices.Clone(s.sessions[req.User])
	s.addSession(ctx, req.User, pid)
	if len(others) == 0 {
		ctx.Respond(registered(req.User))
		return
	}

	// The user is connected elsewhere, perhaps on a connection that is
	// closing with acks still on their way: have those sessions flush
	// before the new one reads the inbox.
	s.nextFlush++
	token := s.nextFlush
	p := &pendingLogin{user: req.User, others: others, reply: ctx.Sender(), waiting: make(map[pidKey]bool)}
	flush := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Flush{Flush: &irispb.Flush{User: req.User, Token: token}}}
	for _, other := range others {
		p.waiting[keyOf(other)] = true
		ctx.Send(other, flush)
	}
	s.flushes[token] = p
	self, root := s.self, s.system.Root
	time.AfterFunc(flushTimeout, func() { root.Send(self, &flushExpired{token: token}) })
}

func registered(user string) *irispb.Envelope {
	return &irispb.Envelope{Version: 1, Body: &irispb.Envelope_RegisterReply{RegisterReply: &irispb.RegisterReply{User: user}}}
}

// flushed records a session's flush reply and confirms the login once no
// other session is left to reply.
func (s *shard) flushed(ctx actor.Context, f *irispb.Flush) {
	p := s.flushes[f.Token]
	if p == nil || f.Session == nil {
		return
	}
	delete(p.waiting, pidKey{address: f.Session.Address, id: f.Session.Id})
	if len(p.waiting) == 0 {
		s.confirmLogin(ctx, f.Token, p)
	}
}

func (s *shard) confirmLogin(ctx actor.Context, token uint64, p *pendingLogin) {
	delete(s.flushes, token)
	if s.cfg.ReplaceOnLogin {
		kick := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Kick{Kick: &irispb.Kick{Reason: reasonReplaced}}}
		for _, old := range p.others {
			ctx.Send(old, kick)
		}
	}
	if p.reply != nil {
		ctx.Send(p.reply, registered(p.user))
	}
}

// addSession records a live session of user and watches it. It reports
// false when the session was already known.
func (s *shard) addSession(ctx actor.Context, user string, pid *actor.PID) bool {
	key := keyOf(pid)
	if _, known := s.owners[key]; known {
		return false
	}
	s.owners[key] = user
	s.sessions[user] = append(s.sessions[user], pid)
	ctx.Watch(pid)
	return true
}

// refresh re-adds an edge's live sessions. A session this shard did not
// know was registered with an earlier incarnation of it, whose pushes may
// have been lost, so it gets a Resync to read its inbox again.
func (s *shard) refresh(ctx actor.Context, req *irispb.RefreshRequest) {
	for _, r := range req.Registrations {
		pid := toPID(r.Session)
		if pid == nil || !s.addSession(ctx, r.User, pid) {
			continue
		}
		ctx.Send(pid, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Resync{Resync: &irispb.Resync{User: r.User}}})
	}
}

// removeSession removes a session. When it was the user's last one, the user
// goes offline and the store records the time as last seen.
//
// unregistered tells the two callers apart. An Unregister comes through the
// session's router after the session's last acks, so a login waiting for
// that session to flush can go on. The Terminated of a watch can overtake
// those acks, because proto.actor delivers system messages first and the
// acks take one hop more; a login waiting for that session keeps waiting for
// the Unregister, or for flushTimeout when the session's node died with it.
func (s *shard) removeSession(ctx actor.Context, pid *actor.PID, unregistered bool) {
	key := keyOf(pid)
	for token, p := range s.flushes {
		if unregistered && p.waiting[key] {
			delete(p.waiting, key)
			if len(p.waiting) == 0 {
				s.confirmLogin(ctx, token, p)
			}
		}
	}
	user, known := s.owners[key]
	if !known {
		return
	}
	delete(s.owners, key)
	if unregistered {
		ctx.Unwatch(pid)
	}

	live := s.sessions[user]
	for i, p := range live {
		if p.Equal(pid) {
			live = append(live[:i], live[i+1:]...)
			break
		}
	}
	if len(live) > 0 {
		s.sessions[user] = live
		return
	}
	delete(s.sessions, user)
	sec := uint64(time.Now().Unix())
	s.lastSeen[user] = sec
	self, root := s.self, s.system.Root
	s.cfg.Store.Submit(storage.Op{Kind: storage.OpSetLastSeen, User: user, LastSeenSec: sec}, func(error) {
		root.Send(self, &lastSeenCommitted{user: user, sec: sec})
	})
}

func (s *shard) fetch(ctx actor.Context, req *irispb.FetchRequest) {
	limit := int(req.Limit)
	if limit <= 0 || limit > s.cfg.MaxPage {
		limit = s.cfg.MaxPage
	}
	reply := &irispb.FetchReply{Ref: req.Ref}

	entries, err := s.cfg.Store.Inbox(req.User, req.AfterSeq, limit)
	if err != nil {
		s.cfg.Logger.Warn("inbox read failed", "shard", s.identity, "user", req.User, "err", err)
		reply.Error = reasonStoreFailed
	}
	pending := s.acking[req.User]
	reply.Entries = make([]*irispb.Entry, 0, len(entries))
	for _, e := range entries {
		if pending != nil && pending.hides(e) {
			continue
		}
		reply.Entries = append(reply.Entries, &irispb.Entry{Seq: e.Seq, Tag: e.Tag, Kind: uint32(e.Kind), Sender: e.Sender, TimeMs: e.TimeMS, Body: e.Body})
	}
	reply.More = len(entries) == limit
	if len(entries) > 0 {
		reply.ScannedTo = entries[len(entries)-1].Seq
	}
	ctx.Respond(&irispb.Envelope{Version: 1, Body: &irispb.Envelope_FetchReply{FetchReply: reply}})
}

func (s *shard) status(ctx actor.Context, req *irispb.StatusRequest) {
	reply := &irispb.StatusReply{Ref: req.Ref, User: req.User}
	if len(s.sessions[req.User]) > 0 {
		reply.Online = true
	} else if sec, ok := s.lastSeen[req.User]; ok {
		reply.LastSeen = sec
	} else if sec, ok, err := s.cfg.Store.LastSeen(req.User); err == nil && ok {
		reply.LastSeen = sec
	}
	ctx.Respond(&irispb.Envelope{Version: 1, Body: &irispb.Envelope_StatusReply{StatusReply: reply}})
}

func toPID(p *irispb.Pid) *actor.PID {
	if p == nil || p.Id == "" {
		return nil
	}
	return actor.NewPID(p.Address, p.Id)
}

func fromPID(p *actor.PID) *irispb.Pid {
	return &irispb.Pid{Address: p.Address, Id: p.Id}
}
