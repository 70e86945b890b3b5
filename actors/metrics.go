package actors

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// LatencyBounds are the upper bounds of the latency histograms' buckets. A
// last bucket above them counts the slower rest.
var LatencyBounds = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Histogram counts durations in the buckets of LatencyBounds. Observe is
// lock-free, so hot paths can call it on every message.
type Histogram struct {
	counts   [17]atomic.Uint64 // len(LatencyBounds) + 1
	sumNanos atomic.Uint64
}

// Observe counts one duration. A negative one, from clocks of two nodes
// that disagree, counts as zero.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNanos.Add(uint64(d))
}

// HistogramSnapshot is a copy of a Histogram's counts.
type HistogramSnapshot struct {
	Counts []uint64 // per bucket of LatencyBounds, then the bucket above them
	Count  uint64
	Sum    time.Duration
}

// Snapshot copies the counts. Concurrent Observe calls may make Sum and
// the counts disagree by the few observations in flight.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
		s.Count += s.Counts[i]
	}
	s.Sum = time.Duration(h.sumNanos.Load())
	return s
}

// Quantile estimates the q-quantile (0 < q ≤ 1) by linear interpolation
// inside the bucket that contains it. It returns 0 when nothing was counted,
// and the highest bound when the quantile lies above every bound.
func (s HistogramSnapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.Count)))
	rank = max(rank, 1)
	var seen uint64
	for i, n := range s.Counts {
		if n == 0 || seen+n < rank {
			seen += n
			continue
		}
		if i == len(LatencyBounds) {
			return LatencyBounds[len(LatencyBounds)-1]
		}
		low := time.Duration(0)
		if i > 0 {
			low = LatencyBounds[i-1]
		}
		width := LatencyBounds[i] - low
		return low + time.Duration(float64(width)*float64(rank-seen)/float64(n))
	}
	return LatencyBounds[len(LatencyBounds)-1]
}

// Kind counts the live actors of one kind and the messages waiting in their
// mailboxes. Its PropsOptions install the counting on an actor's props.
type Kind struct {
	live    atomic.Int64
	waiting atomic.Int64 // user messages posted whose handler has not returned
}

// Live returns how many actors of the kind have started and not stopped.
func (k *Kind) Live() int64 { return k.live.Load() }

// Mailbox returns how many user messages wait in the kind's mailboxes,
// counting those that a handler is working on.
func (k *Kind) Mailbox() int64 { return max(k.waiting.Load(), 0) }

// PropsOptions returns the options of the actors of kind k: a mailbox that
// counts posted and handled messages, a middleware that counts the actor's
// stop, and the dispatcher on HotWorkers, because these actors handle every
// message.
func (k *Kind) PropsOptions() []actor.PropsOption {
	return []actor.PropsOption{
		actor.WithMailbox(func() actor.Mailbox { return actor.Unbounded(&mailboxCounter{kind: k})() }),
		actor.WithReceiverMiddleware(k.seeStop),
		actor.WithDispatcher(hotDispatcher),
	}
}

func (k *Kind) seeStop(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, envelope *actor.MessageEnvelope) {
		if _, ok := envelope.Message.(*actor.Stopped); ok {
			k.live.Add(-1)
		}
		next(c, envelope)
	}
}

// mailboxCounter is one actor's mailbox middleware. It keeps the actor's
// own count too, because the kind's total must not keep messages that will
// never be handled. A message whose handler panics is not reported as
// received, and neither are the messages behind it when the supervisor
// then stops the actor. The count of an empty mailbox, known to be zero,
// corrects the total, and so does the actor's Stop, after which the actor's
// messages no longer count.
type mailboxCounter struct {
	kind    *Kind
	waiting atomic.Int64 // stoppedMark and below once the actor has stopped
}

// stoppedMark is added to a stopped actor's count, so that the posts and
// receipts racing with the stop keep it far below zero and never reach
// the kind's total.
const stoppedMark = math.MinInt64 / 2

func (m *mailboxCounter) MailboxStarted() { m.kind.live.Add(1) }

func (m *mailboxCounter) MessagePosted(msg any) {
	if _, system := msg.(actor.SystemMessage); system {
		return
	}
	if m.waiting.Add(1) > stoppedMark/2 {
		m.kind.waiting.Add(1)
	}
}

func (m *mailboxCounter) MessageReceived(msg any) {
	if _, stop := msg.(*actor.Stop); stop {
		if n := m.waiting.Swap(stoppedMark); n > stoppedMark/2 {
			m.kind.waiting.Add(-n)
		}
		return
	}
	if _, system := msg.(actor.SystemMessage); system {
		return
	}
	if m.waiting.Add(-1) > stoppedMark/2 {
		m.kind.waiting.Add(-1)
	}
}

func (m *mailboxCounter) MailboxEmpty() {
	for {
		n := m.waiting.Load()
		if n == 0 || n <= stoppedMark/2 {
			return
		}
		if m.waiting.CompareAndSwap(n, 0) {
			m.kind.waiting.Add(-n)
			return
		}
	}
}

// ActorKinds are the kinds of actors whose numbers the admin server shows.
type ActorKinds struct {
	Session, Router, Shard, Group Kind
}

// Each calls fn with every kind and its name.
func (a *ActorKinds) Each(fn func(name string, k *Kind)) {
	fn("session", &a.Session)
	fn("router", &a.Router)
	fn("shard", &a.Shard)
	fn("group", &a.Group)
}
