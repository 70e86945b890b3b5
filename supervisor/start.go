package supervisor

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// StartActor returns a StartFunc that spawns the actor made by producer and waits until
// the actor has handled *actor.Started. Started thus plays the part of OTP's init/1, and a
// panic there makes the start fail with an error instead of counting as a crash. opts are
// applied to the props of every incarnation.
//
// The child's own supervisor strategy (actor.WithSupervisor in opts) applies to the
// child's children, not to the child itself.
func StartActor(producer func(arg any) actor.Actor, opts ...actor.PropsOption) StartFunc {
	return func(ctx actor.SpawnerContext, name string, arg any) (*actor.PID, error) {
		initResult := make(chan any, 1)
		options := append(slices.Clone(opts), actor.WithReceiverMiddleware(reportInit(initResult)))
		props := actor.PropsFromProducer(func() actor.Actor { return producer(arg) }, options...)

		pid, err := ctx.SpawnNamed(props, name)
		if err != nil {
			return nil, err
		}

		if reason := <-initResult; reason != nil {
			// The panicking actor is suspended, not stopped: free its name before reporting.
			stopAfterFailedStart(ctx, pid)

			if err, ok := reason.(error); ok {
				return nil, err // the child reported why it cannot start
			}
			return nil, fmt.Errorf("panic in Started handler: %v", reason)
		}

		return pid, nil
	}
}

// reportInit sends the outcome of the first Started message to result: nil, or the
// recovered panic value, which it raises again so proto.actor suspends the actor.
func reportInit(result chan<- any) actor.ReceiverMiddleware {
	var once sync.Once

	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, envelope *actor.MessageEnvelope) {
			if _, ok := envelope.Message.(*actor.Started); !ok {
				next(c, envelope)

				return
			}

			defer func() {
				reason := recover()
				once.Do(func() { result <- reason })
				if reason != nil {
					panic(reason)
				}
			}()
			next(c, envelope)
		}
	}
}

// StartSupervisor returns a StartFunc that starts a child supervisor with spec and waits
// until all of its children have started. A child that fails to start makes the whole
// start fail with a *StartError that names it. The child supervisor inherits the parent's
// Logger and Events when spec leaves them nil.
func StartSupervisor(spec Spec) StartFunc {
	return func(ctx actor.SpawnerContext, name string, _ any) (*actor.PID, error) {
		if err := spec.Validate(); err != nil {
			return nil, err
		}

		childSpec := spec
		if parent, ok := ctx.Actor().(*supervisorActor); ok {
			if childSpec.Logger == nil {
				childSpec.Logger = parent.logger
			}
			if childSpec.Events == nil {
				childSpec.Events = parent.events
			}
		}
		if childSpec.Logger == nil {
			childSpec.Logger = ctx.Logger()
		}
		if childSpec.Events == nil {
			childSpec.Events = NewEvents()
		}

		result := make(chan error, 1)
		props := actor.PropsFromProducer(func() actor.Actor {
			return newSupervisorActor(childSpec, true, result, nil)
		})

		pid, err := ctx.SpawnNamed(props, name)
		if err != nil {
			return nil, err
		}

		if err := <-result; err != nil {
			// The supervisor has stopped its children and is stopping itself.
			done, cancel := watchExit(ctx.ActorSystem(), pid)
			<-done
			cancel()

			return nil, err
		}

		return pid, nil
	}
}

// SupervisorChild returns the child spec of a permanent child supervisor with the given id.
func SupervisorChild(id string, spec Spec) ChildSpec {
	return ChildSpec{
		ID:       id,
		Start:    StartSupervisor(spec),
		Restart:  Permanent,
		Shutdown: Infinity,
		Kind:     KindSupervisor,
	}
}

// stopAfterFailedStart stops an actor whose start failed and waits, at most killWait, until
// its name is free.
func stopAfterFailedStart(ctx actor.SpawnerContext, pid *actor.PID) {
	system := ctx.ActorSystem()
	done, cancel := watchExit(system, pid)
	defer cancel()

	system.Root.Stop(pid)
	select {
	case <-done:
	case <-time.After(killWait):
		ctx.Logger().Error("supervisor: child did not stop after a failed start; its name stays taken",
			"child", pid.Id, "timeout", killWait)
	}
}
