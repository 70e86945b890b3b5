package actors

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

func TestHistogramQuantile(t *testing.T) {
	tests := []struct {
		name    string
		observe []time.Duration
		q       float64
		want    time.Duration
	}{
		{name: "empty", q: 0.99, want: 0},
		{name: "one sample takes its bucket's upper bound", observe: []time.Duration{80 * time.Microsecond}, q: 0.5, want: 100 * time.Microsecond},
		{name: "median interpolates inside the bucket",
			observe: []time.Duration{
				300 * time.Microsecond, 400 * time.Microsecond, 450 * time.Microsecond, 490 * time.Microsecond,
			},
			q: 0.5, want: 375 * time.Microsecond},
		{name: "p99 lands in the slow bucket",
			observe: append(repeat(99, 200*time.Microsecond), 40*time.Millisecond),
			q:       0.995, want: 50 * time.Millisecond},
		{name: "above every bound", observe: []time.Duration{time.Minute}, q: 0.99, want: 10 * time.Second},
		{name: "negative counts as zero", observe: []time.Duration{-time.Second}, q: 1, want: 100 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, d := range tt.observe {
				h.Observe(d)
			}
			snap := h.Snapshot()
			if snap.Count != uint64(len(tt.observe)) {
				t.Errorf("Count = %d, want %d", snap.Count, len(tt.observe))
			}
			if got := snap.Quantile(tt.q); got != tt.want {
				t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// blocker is an actor that holds its first message until release closes.
type blocker struct {
	entered chan struct{}
	release chan struct{}
	panicOn string
}

func (b *blocker) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case string:
		if msg == b.panicOn {
			panic("test: " + msg)
		}
		if msg == "hold" {
			close(b.entered)
			<-b.release
		}
	}
}

func TestKindCountsLiveActorsAndWaitingMessages(t *testing.T) {
	system := actor.NewActorSystem()
	var kind Kind
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{}), panicOn: "crash"}
	props := actor.PropsFromProducer(func() actor.Actor { return b }, kind.PropsOptions()...)
	pid := system.Root.Spawn(props)
	other := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &blocker{} }, kind.PropsOptions()...))

	waitFor(t, "two live actors", func() bool { return kind.Live() == 2 })

	system.Root.Send(pid, "hold")
	<-b.entered
	for range 5 {
		system.Root.Send(pid, "queued")
	}
	if got := kind.Mailbox(); got != 6 {
		t.Errorf("Mailbox with 5 messages queued behind one in its handler = %d, want 6", got)
	}
	close(b.release)
	waitFor(t, "an empty mailbox", func() bool { return kind.Mailbox() == 0 })

	// A message whose handler panics is never reported as handled; the
	// count still returns to zero once the mailbox is empty.
	system.Root.Send(pid, "crash")
	system.Root.Send(pid, "after")
	waitFor(t, "an empty mailbox after a crash", func() bool { return kind.Mailbox() == 0 })
	if got := kind.Live(); got != 2 {
		t.Errorf("Live after a restart = %d, want 2", got)
	}

	system.Root.StopFuture(other).Wait()
	waitFor(t, "one live actor", func() bool { return kind.Live() == 1 })
	system.Root.StopFuture(pid).Wait()
	waitFor(t, "no live actors", func() bool { return kind.Live() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An actor that its supervisor stops after a panic never handles the
// messages behind the one that panicked; they must not stay in the count.
func TestKindForgetsMessagesOfCrashedActor(t *testing.T) {
	system := actor.NewActorSystem()
	stopOnPanic := actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
	root := system.Root.WithGuardian(stopOnPanic)
	var kind Kind
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{}), panicOn: "crash"}
	pid := root.Spawn(actor.PropsFromProducer(func() actor.Actor { return b }, kind.PropsOptions()...))

	root.Send(pid, "hold")
	<-b.entered
	root.Send(pid, "crash")
	for range 4 {
		root.Send(pid, "queued")
	}
	close(b.release)

	waitFor(t, "the crashed actor to stop", func() bool { return kind.Live() == 0 })
	waitFor(t, "an empty count", func() bool { return kind.Mailbox() == 0 })
	// A send to the stopped actor goes to the dead letters at once and
	// must not count either.
	root.Send(pid, "after the stop")
	if got := kind.Mailbox(); got != 0 {
		t.Errorf("Mailbox after a message to the stopped actor = %d, want 0", got)
	}
}
