package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/gateway/wire"
)

// Presence queries go to the target's shard, and the client waits for the
// reply. A query sent while that shard's core dies is lost with it. The
// client would wait for good, so the session sends the query again after
// statusRetryAfter, and after statusTries attempts it writes an error frame
// instead.
const (
	statusRetryAfter = time.Second
	statusTries      = 3
	// maxStatusWaiting bounds the queries one session has in flight. The
	// session rejects more with reasonOverloaded.
	maxStatusWaiting = 64
)

// reasonStatusUnavailable is the error for a presence query that no shard
// replied to.
const reasonStatusUnavailable = "status_unavailable"

// statusQuery is a presence query waiting for its shard's reply.
type statusQuery struct {
	user  string
	sent  time.Time
	tries int
}

type statusRetryTick struct{}

// askStatus sends a presence query for user and waits for its reply.
func (s *session) askStatus(ctx actor.Context, user string) {
	if len(s.statusWaiting) >= maxStatusWaiting {
		s.rejectReason(reasonOverloaded)
		return
	}
	s.statusWaiting = append(s.statusWaiting, statusQuery{user: user, sent: time.Now(), tries: 1})
	s.sendStatusQuery(ctx, user)
	if s.statusTimer == nil {
		self, root := s.self, s.sys.Root
		s.statusTimer = time.AfterFunc(statusRetryAfter, func() { root.Send(self, &statusRetryTick{}) })
	}
}

func (s *session) sendStatusQuery(ctx actor.Context, user string) {
	s.toShard(ctx, &irispb.Envelope{Version: 1, Body: &irispb.Envelope_Status{
		Status: &irispb.StatusRequest{User: user},
	}})
}

// answerStatus writes a shard's reply for the oldest query of its user. A
// reply that matches no waiting query is a late reply to a query sent again
// and already replied to. It is dropped, so the client gets one reply per
// query.
func (s *session) answerStatus(r *irispb.StatusReply) {
	for i, q := range s.statusWaiting {
		if q.user == r.User {
			s.statusWaiting = append(s.statusWaiting[:i], s.statusWaiting[i+1:]...)
			s.out = wire.AppendStatus(s.out, r.User, r.Online, r.LastSeen)
			return
		}
	}
}

// retryStatus sends overdue queries again, and gives up on those that have
// had all their tries.
func (s *session) retryStatus(ctx actor.Context) {
	s.statusTimer = nil
	if s.closing {
		return
	}
	now := time.Now()
	waiting := s.statusWaiting[:0]
	for _, q := range s.statusWaiting {
		switch {
		case now.Sub(q.sent) < statusRetryAfter:
			waiting = append(waiting, q)
		case q.tries >= statusTries:
			s.out = wire.AppendError(s.out, reasonStatusUnavailable)
		default:
			q.sent, q.tries = now, q.tries+1
			s.sendStatusQuery(ctx, q.user)
			waiting = append(waiting, q)
		}
	}
	s.statusWaiting = waiting
	if len(waiting) > 0 {
		self, root := s.self, s.sys.Root
		s.statusTimer = time.AfterFunc(statusRetryAfter/2, func() { root.Send(self, &statusRetryTick{}) })
	}
}
