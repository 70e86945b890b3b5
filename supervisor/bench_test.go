package supervisor

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// quietWorker ignores every message and panics on crash.
type quietWorker struct{}

func (quietWorker) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*crash); ok {
		panic("crash requested by benchmark")
	}
}

func quietStart() StartFunc {
	return StartActor(func(any) actor.Actor { return quietWorker{} })
}

func BenchmarkStartSimpleChild(b *testing.B) {
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discardLogger() }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	defer system.Shutdown()
	ref, err := Start(system, "sessions", Spec{
		Strategy:  SimpleOneForOne,
		Intensity: 1,
		Logger:    discardLogger(),
		Children:  []ChildSpec{{ID: "session", Restart: Temporary, Start: quietStart()}},
	})
	if err != nil {
		b.Fatalf("Start: %v", err)
	}
	b.ReportAllocs()

	for b.Loop() {
		if _, err := ref.StartSimpleChild(nil); err != nil {
			b.Fatalf("StartSimpleChild: %v", err)
		}
	}

	b.StopTimer()
	stopSupervisorB(b, ref)
}

// BenchmarkSimpleSupervisorShutdown measures stopping a SimpleOneForOne supervisor with
// 1000 running children; one operation is the whole shutdown.
func BenchmarkSimpleSupervisorShutdown(b *testing.B) {
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discardLogger() }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	defer system.Shutdown()
	b.ReportAllocs()

	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ref, err := Start(system, "sessions", Spec{
			Strategy:  SimpleOneForOne,
			Intensity: 1,
			Logger:    discardLogger(),
			Children:  []ChildSpec{{ID: "session", Restart: Temporary, Start: quietStart()}},
		})
		if err != nil {
			b.Fatalf("Start: %v", err)
		}
		for range 1000 {
			if _, err := ref.StartSimpleChild(nil); err != nil {
				b.Fatalf("StartSimpleChild: %v", err)
			}
		}
		b.StartTimer()

		stopSupervisorB(b, ref)
	}
}

func BenchmarkOneForOneRestart(b *testing.B) {
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discardLogger() }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	defer system.Shutdown()
	ref, err := Start(system, "sup", Spec{
		Intensity: 1 << 30,
		Period:    time.Hour,
		Logger:    discardLogger(),
		Children:  []ChildSpec{{ID: "a", Start: quietStart()}},
	})
	if err != nil {
		b.Fatalf("Start: %v", err)
	}
	defer stopSupervisorB(b, ref)
	b.ReportAllocs()

	// Each iteration also polls WhichChildren until the new incarnation shows, so the
	// time per restart is an upper bound.
	current := childPIDsB(b, ref)["a"]
	for b.Loop() {
		system.Root.Send(current, &crash{})
		for {
			next := childPIDsB(b, ref)["a"]
			if next != nil && next != current {
				current = next
				break
			}
		}
	}
}
