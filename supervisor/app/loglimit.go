package app

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// protoactorRepeatEvery is how often one message of proto.actor is written
// at most. While a node is down, its peers' remoting and gossip log a failure
// for it several times a second.
const protoactorRepeatEvery = 10 * time.Second

// Clients can cause some log lines as fast as they like: a rejected login, a
// slow consumer closed, a group change on a busy store. A client that retries
// a wrong password in a loop must not fill the disk, so each such message is
// written at most connLogBurst times per connLogEvery.
const (
	connLogBurst = 10
	connLogEvery = 10 * time.Second
)

// maxLimitedMessages bounds the messages a limitedHandler tracks; past it
// the counts start again, which at worst lets a few more lines through.
const maxLimitedMessages = 1024

// limitedHandler writes at most burst records with the same message per
// period and drops the rest. The number dropped is reported as "suppressed"
// on the first record written after the period. When none comes, a copy of
// the first dropped record carries it when the period ends. The log thus
// always shows that something repeated and how often.
type limitedHandler struct {
	slog.Handler
	state *limitState
}

type limitState struct {
	burst  int
	period time.Duration
	// after runs f once d has passed; time.AfterFunc outside tests.
	after func(d time.Duration, f func())

	mu       sync.Mutex
	messages map[string]*messageCount
}

type messageCount struct {
	start   time.Time // when the current period began
	written int
	dropped int
}

func newLimitedHandler(h slog.Handler, burst int, period time.Duration) *limitedHandler {
	state := &limitState{
		burst:    burst,
		period:   period,
		after:    func(d time.Duration, f func()) { time.AfterFunc(d, f) },
		messages: make(map[string]*messageCount),
	}
	return &limitedHandler{Handler: h, state: state}
}

func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	suppressed, write, firstDrop := h.state.admit(r.Message, r.Time)
	if firstDrop {
		h.reportAtPeriodEnd(r)
	}
	if !write {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.Handler.Handle(ctx, r)
}

// reportAtPeriodEnd writes dropped, the first record dropped in its period,
// with the number of drops when the period ends, unless a record written
// after the period has reported them by then.
func (h *limitedHandler) reportAtPeriodEnd(dropped slog.Record) {
	s := h.state
	s.mu.Lock()
	c := s.messages[dropped.Message]
	start := c.start
	s.mu.Unlock()

	dropped = dropped.Clone()
	s.after(start.Add(s.period).Sub(dropped.Time), func() {
		s.mu.Lock()
		n := 0
		if c := s.messages[dropped.Message]; c != nil && c.start.Equal(start) {
			n, c.dropped = c.dropped, 0
		}
		s.mu.Unlock()
		if n == 0 {
			return
		}
		dropped.AddAttrs(slog.Int("suppressed", n))
		_ = h.Handler.Handle(context.Background(), dropped)
	})
}

// admit reports whether a record with msg at now is written, how many
// records with msg the period before dropped, and whether this record is
// the first one dropped in its period.
func (s *limitState) admit(msg string, now time.Time) (suppressed int, write, firstDrop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.messages[msg]
	if c == nil {
		if len(s.messages) >= maxLimitedMessages {
			clear(s.messages)
		}
		c = &messageCount{start: now}
		s.messages[msg] = c
	}
	if now.Sub(c.start) >= s.period {
		suppressed = c.dropped
		*c = messageCount{start: now}
	}
	if c.written >= s.burst {
		c.dropped++
		return 0, false, c.dropped == 1
	}
	c.written++
	return suppressed, true, false
}

func (h *limitedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithAttrs(attrs), state: h.state}
}

func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithGroup(name), state: h.state}
}
