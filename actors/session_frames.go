package actors

import (
	"encoding/binary"
	"net"
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
	reasonTooManyFailures = "too_many_login_failures"
	reasonShuttingDown    = "server_shutting_down"
	reasonSlowConsumer    = "slow_consumer"
	reasonReplaced        = "replaced_by_new_login"
	reasonServerBusy      = "server_busy"
	reasonFrameTimeout    = "frame_timeout"
	reasonIdleTimeout     = "idle_timeout"

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
		// another recipient is stored rather than given the seq of
		// a message in someone else's inbox.
		s.send(ctx, f.Target, kindPlain, f.Msg, true, f.CID, "send2:"+string(f.Target), f.CID)
	case wire.OpAck:
		s.ackByID(f.ID[:])
	case wire.OpAck2:
		s.ackUpTo(f.Seq)
	case wire.OpGetStatus:
		s.getStatus(ctx, f)
	case wire.OpCBORMsg:
		s.sendCBOR(ctx, f)
	case wire.OpE2EE:
		s.sendE2EE(ctx, f)
	case wire.OpTypingStart, wire.OpTypingStop:
		s.typing(ctx, f)
	case wire.OpReadReceipt:
		s.receipt(ctx, f)
	case wire.OpPrekeyUpload:
		s.uploadKeys(ctx, f)
	case wire.OpPrekeyFetch:
		s.fetchKeys(ctx, f)
	case wire.OpGroupCreate, wire.OpGroupLeave, wire.OpGroupRoster, wire.OpGroupAddMember, wire.OpGroupMessage, wire.OpGroupSenderKey:
		s.handleGroupFrame(ctx, f)
	default:
		s.rejectReason("unsupported_opcode")
	}
}

// rejectFrame replies to a frame the decoder skipped as invalid: a SEND2 with
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
	// Failures count per account and client address, so that failures
	// from elsewhere cannot lock the real user out.
	guardKey := user + "\x00" + remoteHost(s.conn.RemoteAddr())
	now := time.Now()
	if _, blocked := s.cfg.Logins.Blocked(guardKey, now); blocked {
		s.cfg.Stats.LoginsBlocked.Add(1)
		s.fail(ctx, reasonTooManyFailures)
		return
	}
	if s.cfg.AuthRequired || (token != "" && s.cfg.Verifier != nil) {
		if s.cfg.Verifier == nil || token == "" || s.cfg.Verifier.Verify(user, token, now) != nil {
			s.cfg.Stats.LoginsFailed.Add(1)
			s.cfg.Logins.Failed(guardKey, now)
			s.cfg.Logger.Info("login rejected", "user", user, "conn", s.conn.RemoteAddr(), "reason", reasonAuthFailed)
			s.fail(ctx, reasonAuthFailed)
			return
		}
		s.cfg.Logins.Succeeded(guardKey)
	}

	// A login storm takes turns: a login waits for a slot, in arrival order,
	// rather than all of them contending for the shards at once.
	if s.cfg.LoginGate != nil {
		wait := time.NewTimer(s.cfg.RequestTimeout)
		select {
		case s.cfg.LoginGate <- struct{}{}:
			wait.Stop()
			defer func() { <-s.cfg.LoginGate }()
		case <-wait.C:
			s.cfg.Stats.LoginsFailed.Add(1)
			s.fail(ctx, reasonServerBusy)
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
	s.loginTimer = nil // a stopped timer still holds its closure
	s.cfg.Stats.LoginsOK.Add(1)
	s.out = wire.AppendLoginOK(s.out)

	s.catchingUp = true
	s.fetchAfter(ctx, 0)
}

// send requests that the target's shard append one message. dedupScope and
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
	body := make([]byte, len(msg))
	copy(body, msg)
	now := time.Now()
	req := &irispb.AppendRequest{
		User:         target,
		Sender:       s.user,
		Kind:         uint32(kind),
		Body:         body,
		TimeMs:       uint64(now.UnixMilli()),
		SentUnixNano: now.UnixNano(),
		Dedup:        dedup,
		DedupScope:   scope,
		DedupId:      id,
	}
	s.outbox.add(req, sendMeta{v2: v2, cid: cid}, func(env *irispb.Envelope) { s.toShard(ctx, env) })
	s.scheduleSendRetry()
}

func (s *session) scheduleSendRetry() {
	if s.sendTimer == nil && s.outbox.pending() > 0 {
		self, root := s.self, s.sys.Root
		s.sendTimer = time.AfterFunc(sendRetryAfter/2, func() { root.Send(self, &sendRetryTick{}) })
	}
}

// retrySends sends again the appends whose reply is overdue.
func (s *session) retrySends(ctx actor.Context) {
	s.sendTimer = nil
	if s.closing {
		return
	}
	s.outbox.retryDue(time.Now(), func(env *irispb.Envelope) { s.toShard(ctx, env) })
	s.scheduleSendRetry()
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

// finishSend replies to the client once the shard has stored (or rejected) one
// of its messages.
func (s *session) finishSend(ctx actor.Context, reply *irispb.AppendReply) {
	send, ok := s.outbox.answer(reply, func(env *irispb.Envelope) { s.toShard(ctx, env) })
	if !ok {
		return
	}
	if s.outbox.pending() < s.cfg.MaxInflight {
		s.releaseHeldReader()
	}
	if s.draining && s.outbox.pending() == 0 {
		defer s.connClosed(ctx, nil) // after this reply's frame is queued
	}
	if reply.Duplicate && reply.Seq == 0 {
		// A repeat caught by the order gate alone: the first attempt was
		// stored and its reply was lost with it.
		if send.v2 {
			s.cfg.Logger.Warn("send2 repeat without a dedup record", "user", s.user, "cid", send.cid)
		}
		return
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
	p, ok := s.pending[seq]
	if !ok || p.entry.Tag != tag {
		// Not an id this connection has outstanding: a repeat, or made up.
		// Dropping it here keeps a flood of ACKs from becoming store work;
		// an entry of an earlier connection is written again and acked then.
		s.cfg.Stats.AcksIgnored.Add(1)
		return
	}
	s.forget(seq)
	s.acks = append(s.acks, &irispb.AckItem{Seq: seq, Tag: tag})
}

// ackUpTo records a v2 cumulative ACK2.
func (s *session) ackUpTo(seq uint64) {
	for q := range s.pending {
		if q <= seq {
			s.forget(q)
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

// remoteHost returns the host part of a host:port address.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
