package actors

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/gateway/wire"
)

// Reasons sent in 0xFE and 0x0C frames by the session and shards.
const (
	reasonNotLoggedIn     = "not_logged_in"
	reasonAlreadyLoggedIn = "already_logged_in"
	reasonAuthFailed      = "auth_failed"
	reasonRateLimited     = "rate_limited"
	reasonStoreFailed     = "store_unavailable"
	reasonUnavailable     = "service_unavailable"
	reasonInboxFull       = "inbox_full"
	reasonBadMessageID    = "invalid_message_id"

	// reasonOutOfOrder is never sent to a client: the session resends the
	// appends of that target in order.
	reasonOutOfOrder = "out_of_order"
)

// Kinds of inbox entries: the opcode the content would have live.
const (
	kindPlain = wire.OpSend
	kindCBOR  = wire.OpCBORMsg
)

// handleFrame runs one decoded client frame. Frame fields alias the
// decoder's buffer, so anything kept past this call is copied.
func (s *session) handleFrame(ctx actor.Context, f *wire.Frame) {
	switch f.Op {
	case wire.OpLogin:
		s.login(ctx, profileV1, string(f.User), string(f.Token))
		return
	case wire.OpLogin2:
		s.login(ctx, profileV2, string(f.User), string(f.Token))
		return
	}

	if s.profile == profileNone {
		if f.Op == wire.OpSend2 {
			s.out = wire.AppendRejected(s.out, f.CID, reasonNotLoggedIn)
			return
		}
		s.rejectReason(reasonNotLoggedIn)
		return
	}

	switch f.Op {
	case wire.OpSend:
		s.send(ctx, f.Target, kindPlain, f.Msg, false, 0, "", 0)
	case wire.OpSendSeq:
		// The client's own sequence number makes a resend after reconnect
		// harmless: a repeat of (target, seq) within the dedup window is
		// not stored twice.
		s.send(ctx, f.Target, kindPlain, f.Msg, false, 0, "seq:"+string(f.Target), f.Seq)
	case wire.OpBatchSend:
		s.batchSend(ctx, f)
	case wire.OpSend2:
		// Dedup is per target as well as per cid, so that a cid reused for
		// another recipient is stored rather than answered with the seq of
		// a message in someone else's inbox.
		s.send(ctx, f.Target, kindPlain, f.Msg, true, f.CID, "send2:"+string(f.Target), f.CID)
	case wire.OpAck:
		s.ackByID(f.ID[:])
	case wire.OpAck2:
		s.ackUpTo(f.Seq)
	case wire.OpGetStatus:
		s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Status{
			Status: &irispb.StatusRequest{User: string(f.Target)},
		}})
	default:
		s.rejectReason("unsupported_opcode")
	}
}

// rejectFrame answers a frame the decoder skipped as invalid: a SEND2 with
// REJECTED for its cid, anything else with an error frame.
func (s *session) rejectFrame(ctx actor.Context, werr *wire.Error) {
	if s.decoder.SkippedOp() == wire.OpLogin2 {
		// A failed login ends the connection, as LOGIN does.
		s.cfg.Stats.LoginsFailed.Add(1)
		s.fail(ctx, werr.Reason)
		return
	}
	if cid, ok := s.decoder.SkippedCID(); ok {
		s.cfg.Stats.Rejected.Add(1)
		s.out = wire.AppendRejected(s.out, cid, werr.Reason)
		return
	}
	s.rejectReason(werr.Reason)
}

func (s *session) rejectReason(reason string) {
	s.cfg.Stats.BadFrames.Add(1)
	s.out = wire.AppendError(s.out, reason)
}

// login authenticates the user, registers this session with the user's
// shard, confirms with LOGIN_OK, and starts sending the inbox.
func (s *session) login(ctx actor.Context, p profile, user, token string) {
	if s.profile != profileNone {
		s.rejectReason(reasonAlreadyLoggedIn)
		return
	}
	if err := wire.ValidUserName([]byte(user)); err != nil {
		s.cfg.Stats.LoginsFailed.Add(1)
		s.fail(ctx, reasonOf(err))
		return
	}
	if s.cfg.AuthRequired || (token != "" && s.cfg.Verifier != nil) {
		if s.cfg.Verifier == nil || token == "" || s.cfg.Verifier.Verify(user, token, time.Now()) != nil {
			s.cfg.Stats.LoginsFailed.Add(1)
			s.cfg.Logger.Info("login rejected", "user", user, "conn", s.conn.RemoteAddr(), "reason", reasonAuthFailed)
			s.fail(ctx, reasonAuthFailed)
			return
		}
	}

	// Registration is awaited so that once the client has LOGIN_OK, every
	// other user sees it online and every new message is pushed to it.
	register := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Register{
		Register: &irispb.RegisterRequest{User: user, Session: fromPID(s.self)},
	}}
	reply, err := ctx.RequestFuture(s.cfg.Routers.For(user), register, s.cfg.RequestTimeout).Result()
	if _, ok := reply.(*irispb.Envelope); err != nil || !ok {
		s.cfg.Stats.LoginsFailed.Add(1)
		s.cfg.Logger.Warn("login failed: shard did not answer", "user", user, "err", err)
		s.fail(ctx, reasonUnavailable)
		return
	}

	s.profile, s.user = p, user
	ctx.Send(s.cfg.Registrar, &Track{User: user, Session: s.self})
	s.bucket = s.cfg.Limiter.Acquire(user)
	s.loginTimer.Stop()
	s.cfg.Stats.LoginsOK.Add(1)
	s.out = wire.AppendLoginOK(s.out)

	s.catchingUp = true
	s.fetchAfter(ctx, 0)
}

// send asks the target's shard to append one message. dedupScope and
// dedupID, when dedupID is non-zero or scope is set, identify a repeat.
func (s *session) send(ctx actor.Context, target []byte, kind uint8, msg []byte, v2 bool, cid uint64, dedupScope string, dedupID uint64) {
	s.cfg.Stats.Received.Add(1)
	if wait, ok := s.bucket.Take(1); !ok {
		s.rateLimited(v2, cid, wait)
		return
	}
	s.append(ctx, string(target), kind, msg, v2, cid, v2 || dedupScope != "", dedupScope, dedupID)
}

func (s *session) append(ctx actor.Context, target string, kind uint8, msg []byte, v2 bool, cid uint64, dedup bool, scope string, id uint64) {
	s.nextRef++
	ref := s.nextRef

	order := s.orders[target]
	if order == nil {
		order = &targetOrder{next: 1, answered: make(map[uint64]bool)}
		s.orders[target] = order
	}
	n := order.next
	order.next++
	order.waiting = append(order.waiting, n)

	body := make([]byte, len(msg))
	copy(body, msg)
	env := &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Append{Append: &irispb.AppendRequest{
		Ref:         ref,
		User:        target,
		Sender:      s.user,
		Kind:        uint32(kind),
		Body:        body,
		TimeMs:      uint64(time.Now().UnixMilli()),
		Dedup:       dedup,
		DedupScope:  scope,
		DedupId:     id,
		OrderStream: s.stream,
		OrderN:      n,
		OrderBase:   order.base(),
	}}}
	s.sends[ref] = &pendingSend{v2: v2, cid: cid, target: target, n: n, env: env, sentAt: time.Now()}
	s.toShard(ctx, env)

	if s.sendTimer == nil {
		self, root := s.self, s.sys.Root
		s.sendTimer = time.AfterFunc(sendRetryAfter, func() { root.Send(self, &sendRetryTick{}) })
	}
}

// sendRetryAfter is how long an append waits for its reply before it is
// sent again; each further try waits twice as long, up to maxSendRetryAfter.
// A reply normally takes one fsync, so this only fires when an actor on the
// path crashed with the request in its mailbox.
const (
	sendRetryAfter    = time.Second
	maxSendRetryAfter = 8 * time.Second
)

// retrySends sends again, in send order, every append whose reply is
// overdue. Each carries its order key, so a retry of an append that was
// stored after all is recognised as a repeat and stored once.
func (s *session) retrySends(ctx actor.Context) {
	s.sendTimer = nil
	if len(s.sends) == 0 || s.closing {
		return
	}
	now := time.Now()
	for _, ref := range s.sendRefs() {
		p := s.sends[ref]
		wait := min(sendRetryAfter<<p.tries, maxSendRetryAfter)
		if now.Sub(p.sentAt) < wait {
			continue
		}
		s.resend(ctx, p, now)
	}
	self, root := s.self, s.sys.Root
	s.sendTimer = time.AfterFunc(sendRetryAfter/2, func() { root.Send(self, &sendRetryTick{}) })
}

// resendTarget sends again, in order, every append to target that awaits
// its reply: one of them came back out of order, so an earlier one was lost
// on the way. Later out_of_order replies of the same burst are ignored for
// resendGuard, while the resent appends are on their way.
func (s *session) resendTarget(ctx actor.Context, target string) {
	order := s.orders[target]
	now := time.Now()
	if order == nil || now.Sub(order.resentAt) < resendGuard {
		return
	}
	order.resentAt = now
	for _, ref := range s.sendRefs() {
		if p := s.sends[ref]; p.target == target {
			s.resend(ctx, p, now)
		}
	}
}

const resendGuard = 100 * time.Millisecond

func (s *session) resend(ctx actor.Context, p *pendingSend, now time.Time) {
	p.tries++
	p.sentAt = now
	p.env.GetAppend().OrderBase = s.orders[p.target].base()
	s.cfg.Stats.SendRetries.Add(1)
	s.toShard(ctx, p.env)
}

// sendRefs returns the refs of pending appends in send order.
func (s *session) sendRefs() []uint64 {
	refs := make([]uint64, 0, len(s.sends))
	for ref := range s.sends {
		refs = append(refs, ref)
	}
	slices.Sort(refs)
	return refs
}

// batchSend appends every entry of a BATCH_SEND in blob order. The batch
// costs one token per entry, capped at the bucket's burst so that a full
// batch can pass when the bucket is full.
func (s *session) batchSend(ctx actor.Context, f *wire.Frame) {
	n := f.BatchLen
	s.cfg.Stats.Received.Add(uint64(n))
	if wait, ok := s.bucket.Take(min(n, s.cfg.Limiter.Burst())); !ok {
		s.rateLimited(false, 0, wait)
		return
	}
	target := string(f.Target)
	for it := f.BatchEntries(); ; {
		msg, ok := it.Next()
		if !ok {
			break
		}
		s.append(ctx, target, kindPlain, msg, false, 0, false, "", 0)
	}
}

func (s *session) rateLimited(v2 bool, cid uint64, wait time.Duration) {
	s.cfg.Stats.RateLimited.Add(1)
	if v2 {
		s.out = wire.AppendRejected(s.out, cid, reasonRateLimited)
		return
	}
	s.out = wire.AppendRateLimited(s.out, uint32(wait.Milliseconds())+1)
}

// finishSend answers the client once the shard has stored (or refused) one
// of its messages.
func (s *session) finishSend(ctx actor.Context, reply *irispb.AppendReply) {
	send, ok := s.sends[reply.Ref]
	if !ok {
		return // a late reply to an append already answered
	}
	if reply.Error == reasonOutOfOrder {
		s.resendTarget(ctx, send.target)
		return
	}
	delete(s.sends, reply.Ref)
	s.orders[send.target].answer(send.n)
	if reply.Duplicate && reply.Seq == 0 {
		// A repeat caught by the order gate alone: the first attempt was
		// stored and its reply was lost with it.
		if send.v2 {
			s.cfg.Logger.Warn("send2 repeat without a dedup record", "user", s.user, "cid", send.cid)
		}
		return
	}
	if len(s.sends) < s.cfg.MaxInflight {
		s.releaseHeldReader()
	}

	switch {
	case send.v2 && reply.Error == "":
		s.out = wire.AppendAccepted(s.out, send.cid, reply.Seq)
	case send.v2:
		s.out = wire.AppendRejected(s.out, send.cid, reply.Error)
	case reply.Error != "":
		s.rejectReason(reply.Error)
	}
}

// ackByID records a v1 ACK. The 16-byte id is the entry's seq followed by
// its tag; the store removes the entry only if the tag matches.
func (s *session) ackByID(id []byte) {
	if len(id) != 16 {
		s.rejectReason(reasonBadMessageID)
		return
	}
	seq := binary.BigEndian.Uint64(id[:8])
	tag := binary.BigEndian.Uint64(id[8:])
	if p, ok := s.pending[seq]; ok && p.entry.Tag == tag {
		delete(s.pending, seq)
	}
	s.acks = append(s.acks, &irispb.AckItem{Seq: seq, Tag: tag})
}

// ackUpTo records a v2 cumulative ACK2.
func (s *session) ackUpTo(seq uint64) {
	for q := range s.pending {
		if q <= seq {
			delete(s.pending, q)
		}
	}
	s.ackedUpTo = max(s.ackedUpTo, seq)
}

// sendAcks passes the acks gathered from one read to the shard in one
// envelope.
func (s *session) sendAcks(ctx actor.Context) {
	if len(s.acks) == 0 && s.ackedUpTo == 0 {
		return
	}
	s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Ack{Ack: &irispb.AckRequest{
		User:  s.user,
		Items: s.acks,
		UpTo:  s.ackedUpTo,
	}}})
	s.acks, s.ackedUpTo = nil, 0
}
