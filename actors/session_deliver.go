package actors

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/gateway/wire"
	"github.com/iris-im/iris/storage"
)

// receiveEnvelope handles replies and pushed deliveries from shards.
func (s *session) receiveEnvelope(ctx actor.Context, env *irispb.Envelope) {
	switch body := env.Body.(type) {
	case *irispb.Envelope_AppendReply:
		s.finishSend(ctx, body.AppendReply)
	case *irispb.Envelope_Deliver:
		if s.profile == profileNone || s.catchingUp {
			return // the inbox pages of the catch-up contain it
		}
		if e := body.Deliver.Entry; e.Seq > s.lastDelivered+1 {
			// Entries before this one were stored without reaching this
			// session, for example pushed by a shard on a core that died.
			// Delivering this one first would let a cumulative ACK2 delete
			// them unseen, so the inbox is read from the last delivered
			// entry instead; its pages contain this entry too.
			s.catchingUp = true
			s.fetchAfter(ctx, s.lastDelivered)
			return
		}
		fresh := body.Deliver.Entry.Seq > s.lastDelivered
		if s.deliver(body.Deliver.Entry) && fresh && body.Deliver.SentUnixNano != 0 {
			s.cfg.Stats.DeliveryLatency.Observe(time.Since(time.Unix(0, body.Deliver.SentUnixNano)))
		}
		// false from deliver: the window is full, and the entry waits in the inbox
	case *irispb.Envelope_FetchReply:
		s.receivePage(ctx, body.FetchReply)
	case *irispb.Envelope_Ack:
		s.ackedElsewhere(ctx, body.Ack)
	case *irispb.Envelope_Flush:
		s.startFlush(ctx, body.Flush)
	case *irispb.Envelope_Kick:
		s.fail(ctx, body.Kick.Reason)
	case *irispb.Envelope_Relay:
		if s.profile != profileNone {
			s.out = append(s.out, body.Relay.Frame...)
		}
	case *irispb.Envelope_KeyReply:
		s.finishKeys(body.KeyReply, body.KeyReply.Fetch)
	case *irispb.Envelope_GroupReply:
		s.finishGroup(body.GroupReply)
	case *irispb.Envelope_Resync:
		// The shard lost this session's registration (it restarted or
		// moved) and may have stored entries without pushing them.
		if s.profile != profileNone && !s.catchingUp {
			s.catchingUp = true
			s.fetchAfter(ctx, s.lastDelivered)
		}
	case *irispb.Envelope_StatusReply:
		s.answerStatus(body.StatusReply)
	}
}

// ackedElsewhere drops deliveries that another session of the same user
// has acknowledged.
func (s *session) ackedElsewhere(ctx actor.Context, ack *irispb.AckRequest) {
	for _, item := range ack.Items {
		if p, ok := s.pending[item.Seq]; ok && p.entry.Tag == item.Tag {
			s.forget(item.Seq)
		}
	}
	if ack.UpTo > 0 {
		for seq := range s.pending {
			if seq <= ack.UpTo {
				s.forget(seq)
			}
		}
	}
	s.afterAcks(ctx)
}

// fetchAfter requests the next page of the inbox from the shard.
func (s *session) fetchAfter(ctx actor.Context, seq uint64) {
	s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Fetch{Fetch: &irispb.FetchRequest{
		User:     s.user,
		AfterSeq: seq,
		Limit:    uint32(s.cfg.FetchPage),
	}}})
}

// receivePage delivers one page of the inbox during catch-up and requests
// the next one until the inbox is exhausted.
func (s *session) receivePage(ctx actor.Context, page *irispb.FetchReply) {
	if page.Error != "" {
		// The store could not be read: close, so that the client logs in
		// again rather than believe its inbox is empty.
		s.fail(ctx, page.Error)
		return
	}
	for _, e := range page.Entries {
		if !s.deliver(e) {
			// The window is full: the rest of the inbox is read again
			// once acknowledgements make room.
			s.catchingUp = false
			return
		}
	}
	if page.More && page.ScannedTo > 0 {
		s.fetchAfter(ctx, page.ScannedTo)
		return
	}
	s.catchingUp = false
}

// windowFull reports whether the connection has as many unacknowledged
// deliveries, or bytes of them, as its window allows.
func (s *session) windowFull() bool {
	return len(s.pending) >= s.cfg.Window || s.pendingBytes >= s.cfg.WindowBytes
}

// deliver writes one entry to the client and keeps it until it is acked.
// When the window is full it writes nothing, marks the session behind and
// reports false: the entry stays in the inbox and is read again once
// acknowledgements make room.
func (s *session) deliver(e *irispb.Entry) bool {
	if e.Seq <= s.lastDelivered {
		return true
	}
	if s.windowFull() {
		if !s.behind {
			s.behind = true
			s.lastAck = time.Now() // the slow-consumer clock starts when the window fills
		}
		return false
	}
	s.lastDelivered = e.Seq
	if s.pending == nil {
		s.pending = make(map[uint64]*pendingDelivery) // made at the first delivery, so idle sessions hold none
	}
	s.pending[e.Seq] = &pendingDelivery{entry: e, sentAt: time.Now()}
	s.pendingBytes += len(e.Body)
	s.writeEntry(e)
	s.cfg.Stats.Delivered.Add(1)

	if s.redeliveryTimer == nil {
		self, root := s.self, s.sys.Root
		s.redeliveryTimer = time.AfterFunc(s.redeliveryPeriod(), func() { root.Send(self, &redeliveryTick{}) })
	}
	return true
}

// forget drops an acknowledged delivery from the window.
func (s *session) forget(seq uint64) {
	if p, ok := s.pending[seq]; ok {
		s.pendingBytes -= len(p.entry.Body)
		delete(s.pending, seq)
		s.lastAck = time.Now()
	}
}

// afterAcks reads the inbox again when acknowledgements have made room for
// entries left there while the window was full. It waits for half the
// window to be free, so that it reads pages rather than single entries.
func (s *session) afterAcks(ctx actor.Context) {
	if !s.behind || s.catchingUp || s.profile == profileNone {
		return
	}
	if len(s.pending) > s.cfg.Window/2 || s.pendingBytes > s.cfg.WindowBytes/2 {
		return
	}
	s.behind = false
	s.catchingUp = true
	s.fetchAfter(ctx, s.lastDelivered)
}

// writeEntry encodes an entry for this session's profile.
func (s *session) writeEntry(e *irispb.Entry) {
	if s.profile == profileV2 {
		s.out = wire.AppendDeliver(s.out, e.Seq, uint8(e.Kind), e.Sender, e.TimeMs, e.Body)
		return
	}
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], e.Seq)
	binary.BigEndian.PutUint64(id[8:], e.Tag)
	if uint8(e.Kind) == kindPlain || uint8(e.Kind) == kindCBOR {
		s.out = wire.AppendReliable(s.out, id[:], e.Body)
		return
	}
	// v1 clients get other content as the complete live frame, opcode
	// included, inside a 0x10 frame, so that it is acked like a message.
	live := make([]byte, 0, 1+len(e.Body))
	live = append(append(live, uint8(e.Kind)), e.Body...)
	s.out = wire.AppendReliable(s.out, id[:], live)
}

// redeliver writes again, in seq order, every delivery unacked for longer
// than RedeliveryTimeout.
func (s *session) redeliver(ctx actor.Context) {
	s.redeliveryTimer = nil
	if len(s.pending) == 0 || s.closing {
		return
	}
	if s.behind && time.Since(s.lastAck) >= s.cfg.SlowTimeout {
		s.cfg.Stats.SlowConsumers.Add(1)
		s.cfg.Logger.Info("closing slow consumer", "user", s.user, "conn", s.conn.RemoteAddr(),
			"unacked", len(s.pending), "unacked_bytes", s.pendingBytes)
		s.fail(ctx, reasonSlowConsumer)
		return
	}
	now := time.Now()
	due := make([]uint64, 0, len(s.pending))
	for seq, p := range s.pending {
		if now.Sub(p.sentAt) >= s.cfg.RedeliveryTimeout {
			due = append(due, seq)
		}
	}
	slices.Sort(due)
	for _, seq := range due {
		p := s.pending[seq]
		p.sentAt = now
		s.writeEntry(p.entry)
		s.cfg.Stats.Redelivered.Add(1)
	}
	self, root := s.self, s.sys.Root
	s.redeliveryTimer = time.AfterFunc(s.redeliveryPeriod(), func() { root.Send(self, &redeliveryTick{}) })
}

// redeliveryPeriod is how often the pending deliveries are checked: half
// the timeout, so an entry is written again at most 1.5 timeouts after the
// previous write.
func (s *session) redeliveryPeriod() time.Duration {
	return max(s.cfg.RedeliveryTimeout/2, 10*time.Millisecond)
}

// storeErrorReason maps a store error to the reason a client is sent.
func storeErrorReason(err error) string {
	switch {
	case errors.Is(err, storage.ErrInboxFull):
		return reasonInboxFull
	case errors.Is(err, storage.ErrOutOfOrder):
		return reasonOutOfOrder
	default:
		return reasonStoreFailed
	}
}

// flushGrace is how long a session waits for its next read before it
// replies to a Flush. A client that sends an ACK and closes its connection
// right before it logs in on a new one has the ACK and the close queued in
// this connection's socket; one more read brings them in, so the new login
// does not read the acked entry back.
const flushGrace = 50 * time.Millisecond

// flushGraceOver ends the wait of startFlush.
type flushGraceOver struct{}

// startFlush records a Flush request of the shard: another login of this
// user waits until this session has sent the acks of what it read. The
// reply goes out after the next read, when the connection closes, or after
// flushGrace, whichever comes first.
func (s *session) startFlush(ctx actor.Context, f *irispb.Flush) {
	s.flushes = append(s.flushes, f)
	if s.flushTimer == nil {
		self, root := s.self, s.sys.Root
		s.flushTimer = time.AfterFunc(flushGrace, func() { root.Send(self, &flushGraceOver{}) })
	}
}

// answerFlushes sends the acks of everything read so far and then, through
// the same router so that they arrive after the acks, the Flush replies.
func (s *session) answerFlushes(ctx actor.Context) {
	if len(s.flushes) == 0 {
		return
	}
	if s.flushTimer != nil {
		s.flushTimer.Stop()
		s.flushTimer = nil
	}
	s.sendAcks(ctx)
	for _, f := range s.flushes {
		s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Flush{Flush: &irispb.Flush{
			User: f.User, Token: f.Token, Session: fromPID(s.self),
		}}})
	}
	s.flushes = nil
}
