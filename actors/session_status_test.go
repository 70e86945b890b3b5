package actors

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/gateway/wire"
)

// statusHarness runs the presence-query part of a session inside an actor
// and hands each batch of frames it writes to out.
type statusHarness struct {
	s   *session
	out chan []byte
}

func (h *statusHarness) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		h.s.self, h.s.sys = ctx.Self(), ctx.ActorSystem()
	case string:
		h.s.askStatus(ctx, msg)
	case *statusRetryTick:
		h.s.retryStatus(ctx)
	case *irispb.Envelope:
		if r := msg.GetStatusReply(); r != nil {
			h.s.answerStatus(r)
		}
	}
	if len(h.s.out) > 0 {
		h.out <- append([]byte(nil), h.s.out...)
		h.s.out = h.s.out[:0]
	}
}

// lossyShard replies to presence queries as a shard does, but drops the
// first drop queries, like a shard whose core died with them.
type lossyShard struct {
	drop     int32
	received atomic.Int32
}

func (l *lossyShard) Receive(ctx actor.Context) {
	env, ok := ctx.Message().(*irispb.Envelope)
	if !ok || env.GetStatus() == nil {
		return
	}
	if l.received.Add(1) <= l.drop {
		return
	}
	ctx.Respond(&irispb.Envelope{Version: 1, Body: &irispb.Envelope_StatusReply{
		StatusReply: &irispb.StatusReply{User: env.GetStatus().User, Online: true},
	}})
}

func startStatusHarness(t *testing.T, drop int32) (*actor.RootContext, *actor.PID, chan []byte, *lossyShard) {
	t.Helper()
	system := actor.NewActorSystem()
	shard := &lossyShard{drop: drop}
	system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return shard }), "router-0")
	out := make(chan []byte, 16)
	s := &session{cfg: &SessionConfig{Routers: NewRouterPool(system, []string{"router-0"}), Stats: &Stats{}}}
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &statusHarness{s: s, out: out} }))
	t.Cleanup(func() { system.Root.StopFuture(pid).Wait() })
	return system.Root, pid, out, shard
}

// nextFrames returns the next frames the harness wrote, within 10 s.
func nextFrames(t *testing.T, out chan []byte) []byte {
	t.Helper()
	select {
	case b := <-out:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no frame within 10 s")
	}
	return nil
}

func TestLostStatusQueryAskedAgain(t *testing.T) {
	root, pid, out, shard := startStatusHarness(t, 1)
	root.Send(pid, "bob")

	want := wire.AppendStatus(nil, "bob", true, 0)
	if got := nextFrames(t, out); string(got) != string(want) {
		t.Fatalf("answer to a query whose first attempt was lost = %x, want %x (bob online)", got, want)
	}
	if got := shard.received.Load(); got != 2 {
		t.Errorf("shard got %d queries, want 2: the lost one and the retry", got)
	}
	select {
	case b := <-out:
		t.Errorf("a second answer to one query: %x", b)
	case <-time.After(2 * statusRetryAfter):
	}
}

func TestUnansweredStatusQueryGetsError(t *testing.T) {
	root, pid, out, shard := startStatusHarness(t, statusTries)
	root.Send(pid, "bob")

	want := wire.AppendError(nil, reasonStatusUnavailable)
	if got := nextFrames(t, out); string(got) != string(want) {
		t.Fatalf("answer after %d lost queries = %x, want %x (FE %s)", statusTries, got, want, reasonStatusUnavailable)
	}
	if got := shard.received.Load(); got != statusTries {
		t.Errorf("shard got %d queries, want %d", got, statusTries)
	}
}
