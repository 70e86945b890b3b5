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

// Per-connection log lines (a rejected login, a slow consumer closed, a
// bad frame) come as fast as clients can cause them: a client that retries
// a wrong password in a loop must not fill the disk. Each message is written
// at most connLogBurst times per connLogEvery.
const (
	connLogBurst = 10
	connLogEvery = 10 * time.Second
)

// maxLimitedMessages bounds the messages a limitedHandler tracks; past it
// the counts start again, which at worst lets a few more lines through.
const maxLimitedMessages = 1024

// limitedHandler writes at most burst records with the same message per
// period and drops the rest. The first record written in a new period carries
// the number dropped in the period before it as "suppressed", so the log still
// shows that something repeated and how often.
type limitedHandler struct {
	slog.Handler
	state *limitState
}

type limitState struct {
	burst  int
	period time.Duration

	mu       sync.Mutex
	messages map[string]*messageCount
}

type messageCount struct {
	start   time.Time // when the current period began
	written int
	dropped int
}

func newLimitedHandler(h slog.Handler, burst int, period time.Duration) *limitedHandler {
	return &limitedHandler{Handler: h, state: &limitState{burst: burst, period: period, messages: make(map[string]*messageCount)}}
}

func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	suppressed, write := h.state.admit(r.Message, r.Time)
	if !write {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.Handler.Handle(ctx, r)
}

// admit reports whether a record with msg at now is written, and how many
// records with msg the period before dropped.
func (s *limitState) admit(msg string, now time.Time) (suppressed int, write bool) {
	if now.IsZero() {
		now = time.Now()
	}
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
		return 0, false
	}
	c.written++
	return suppressed, true
}

func (h *limitedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithAttrs(attrs), state: h.state}
}

func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{Handler: h.Handler.WithGroup(name), state: h.state}
}
