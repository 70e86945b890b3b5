package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newSystem returns an actor system with quiet logs. The short dead-letter throttle
// interval lets proto.actor's throttle goroutine end before goleak checks.
func newSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	system := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return discardLogger() }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	t.Cleanup(system.Shutdown)

	return system
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func stopSupervisorB(b *testing.B, ref *Ref) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ref.Stop(ctx); err != nil {
		b.Errorf("Stop: %v", err)
	}
}

func childPIDsB(b *testing.B, ref *Ref) map[string]*actor.PID {
	b.Helper()
	children, err := ref.WhichChildren()
	if err != nil {
		b.Fatalf("WhichChildren: %v", err)
	}
	pids := make(map[string]*actor.PID, len(children))
	for _, c := range children {
		pids[c.ID] = c.PID
	}

	return pids
}

// eventLog records lifecycle events of test workers in the order they happen.
type eventLog struct {
	mu           sync.Mutex
	lines        []string
	incarnations map[string]int
}

func newEventLog() *eventLog {
	return &eventLog{incarnations: make(map[string]int)}
}

func (l *eventLog) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

func (l *eventLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()

	return slices.Clone(l.lines)
}

func (l *eventLog) reset() {
	l.mu.Lock()
	l.lines = nil
	l.mu.Unlock()
}

func (l *eventLog) nextIncarnation(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.incarnations[id]++

	return l.incarnations[id]
}

// Messages understood by testWorker.
type (
	crash      struct{}
	exitNormal struct{}
	ping       struct{}
	pong       struct {
		id          string
		incarnation int
		arg         any
	}
	slowWork struct{ d time.Duration }
)

// testWorker logs "start <id>" and "stop <id>" and obeys the test messages above.
type testWorker struct {
	id          string
	log         *eventLog
	incarnation int
	arg         any
	handled     *int
}

func (w *testWorker) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		w.log.add("start " + w.id)
	case *actor.Stopping:
		w.log.add("stop " + w.id)
	case *crash:
		panic(fmt.Sprintf("worker %s crashed on purpose", w.id))
	case *exitNormal:
		ctx.Stop(ctx.Self())
	case *ping:
		ctx.Respond(&pong{id: w.id, incarnation: w.incarnation, arg: w.arg})
	case *slowWork:
		time.Sleep(m.d)
		w.log.add("worked " + w.id)
	}
}

// worker returns a child spec for a testWorker that logs under the child id.
func worker(id string, log *eventLog, restart RestartType) ChildSpec {
	return ChildSpec{
		ID:      id,
		Restart: restart,
		Start: StartActor(func(arg any) actor.Actor {
			return &testWorker{id: id, log: log, incarnation: log.nextIncarnation(id), arg: arg}
		}),
	}
}

// failingStart returns a start function that fails with message, as an init/1 that
// cannot open its resource would.
func failingStart(message string) StartFunc {
	return func(actor.SpawnerContext, string, any) (*actor.PID, error) {
		return nil, errors.New(message)
	}
}

// simpleWorker returns a template whose workers log under their argument.
func simpleWorker(id string, log *eventLog, restart RestartType) ChildSpec {
	return ChildSpec{
		ID:      id,
		Restart: restart,
		Start: StartActor(func(arg any) actor.Actor {
			name := fmt.Sprint(arg)
			return &testWorker{id: name, log: log, incarnation: log.nextIncarnation(name), arg: arg}
		}),
	}
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitLog waits until the event log has at least n lines and returns them.
func waitLog(t *testing.T, log *eventLog, n int) []string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d event log lines", n), func() bool { return len(log.snapshot()) >= n })

	return log.snapshot()
}

func startSupervisor(t *testing.T, system *actor.ActorSystem, name string, spec Spec) *Ref {
	t.Helper()
	ref, err := Start(system, name, spec)
	if err != nil {
		t.Fatalf("Start(%q): %v", name, err)
	}
	t.Cleanup(func() { stopSupervisor(t, ref) })

	return ref
}

// stopSupervisor stops ref unless it has already stopped.
func stopSupervisor(t *testing.T, ref *Ref) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ref.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// childPIDs maps child ids to their running PIDs.
func childPIDs(t *testing.T, ref *Ref) map[string]*actor.PID {
	t.Helper()
	children, err := ref.WhichChildren()
	if err != nil {
		t.Fatalf("WhichChildren: %v", err)
	}
	pids := make(map[string]*actor.PID, len(children))
	for _, c := range children {
		pids[c.ID] = c.PID
	}

	return pids
}

// waitRestarted waits until the child id runs as an incarnation other than old.
func waitRestarted(t *testing.T, ref *Ref, id string, old *actor.PID) *actor.PID {
	t.Helper()
	var current *actor.PID
	waitFor(t, "restart of "+id, func() bool {
		children, err := ref.WhichChildren()
		if err != nil {
			return false
		}
		for _, c := range children {
			if c.ID == id && c.PID != nil && c.PID != old {
				current = c.PID
				return true
			}
		}
		return false
	})

	return current
}

// pingPID sends ping to the worker at pid and returns its pong.
func pingPID(t *testing.T, system *actor.ActorSystem, pid *actor.PID) *pong {
	t.Helper()
	result, err := system.Root.RequestFuture(pid, &ping{}, 2*time.Second).Result()
	if err != nil {
		t.Fatalf("ping %s: %v", pid.Id, err)
	}
	reply, ok := result.(*pong)
	if !ok {
		t.Fatalf("ping %s: reply %T, want *pong", pid.Id, result)
	}

	return reply
}

func assertLines(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("event log:\n got  %q\n want %q", got, want)
	}
}

func assertErrorIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}
