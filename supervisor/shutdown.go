package supervisor

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// killWait bounds the wait for a child after the supervisor sent it a Stop system message.
// Go cannot preempt a goroutine, so a child whose handler never returns is not stoppable.
// The supervisor then logs the child as abandoned and moves on, and a later restart of that
// child fails because its name is still registered.
// NOTE: five seconds is a judgement call, not a measured bound.
const killWait = 5 * time.Second

// exitWatcher is a bare process that closes done when it receives Terminated. It lets a
// supervisor wait for a child inside its own handler, where its mailbox cannot deliver
// the Terminated message that proto.actor sends to the parent.
type exitWatcher struct {
	done chan struct{}
	once sync.Once
}

func (w *exitWatcher) SendUserMessage(*actor.PID, any) {}

func (w *exitWatcher) SendSystemMessage(_ *actor.PID, message any) {
	if _, ok := message.(*actor.Terminated); ok {
		w.once.Do(func() { close(w.done) })
	}
}

func (w *exitWatcher) Stop(*actor.PID) {}

// watchExit returns a channel that is closed once target has terminated, and a function
// that unregisters the watcher. A target that no longer exists closes the channel at once,
// because proto.actor replies to a Watch sent to a dead letter with Terminated.
func watchExit(system *actor.ActorSystem, target *actor.PID) (<-chan struct{}, func()) {
	w := &exitWatcher{done: make(chan struct{})}
	watcherPID, _ := system.ProcessRegistry.Add(w, "supervisor-watch"+system.ProcessRegistry.NextId())

	process, _ := system.ProcessRegistry.Get(target)
	process.SendSystemMessage(target, &actor.Watch{Watcher: watcherPID})

	return w.done, func() { system.ProcessRegistry.Remove(watcherPID) }
}

// stopTarget is one child being stopped by stopChildren.
type stopTarget struct {
	pid  *actor.PID
	done <-chan struct{}
	stop func()
}

// stopChildren stops pids in parallel and waits for them. A worker first receives a
// PoisonPill, so it handles the user messages already queued before it stops, like an OTP
// process that receives the shutdown exit signal after its queued messages. A supervisor
// receives a Stop system message at once, because its Stopping handler performs the ordered
// shutdown of its own subtree and a supervisor that is escalating never reads user messages.
// Children still running after timeout get a Stop system message and killWait more time.
// stopChildren returns the PIDs that had not stopped by then and invokes onKill for each
// child it had to kill.
func stopChildren(ctx actor.Context, pids []*actor.PID, kind Kind, timeout time.Duration, onKill func(*actor.PID)) []*actor.PID {
	system := ctx.ActorSystem()
	targets := make([]stopTarget, 0, len(pids))
	for _, pid := range pids {
		done, stop := watchExit(system, pid)
		targets = append(targets, stopTarget{pid: pid, done: done, stop: stop})
	}
	defer func() {
		for _, t := range targets {
			t.stop()
		}
	}()

	remaining := targets
	if timeout != BrutalKill {
		for _, t := range targets {
			if kind == KindSupervisor {
				ctx.Stop(t.pid)
			} else {
				ctx.Poison(t.pid)
			}
		}
		remaining = waitTargets(targets, timeout)
	}

	for _, t := range remaining {
		if timeout != BrutalKill && onKill != nil {
			onKill(t.pid)
		}
		ctx.Stop(t.pid)
	}
	remaining = waitTargets(remaining, killWait)

	stuck := make([]*actor.PID, 0, len(remaining))
	for _, t := range remaining {
		stuck = append(stuck, t.pid)
	}

	return stuck
}

// waitTargets waits until every target has stopped or timeout has passed, and returns the
// targets still running. Infinity waits without a limit.
func waitTargets(targets []stopTarget, timeout time.Duration) []stopTarget {
	var deadline <-chan time.Time
	if timeout != Infinity {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		deadline = timer.C
	}

	for i, t := range targets {
		select {
		case <-t.done:
		case <-deadline:
			return pending(targets[i:])
		}
	}

	return nil
}

func pending(targets []stopTarget) []stopTarget {
	var running []stopTarget
	for _, t := range targets {
		select {
		case <-t.done:
		default:
			running = append(running, t)
		}
	}

	return running
}
