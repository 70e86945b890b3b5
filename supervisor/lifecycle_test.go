package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// panicOnStart is a worker whose Started handler panics, like an init/1 that crashes.
type panicOnStart struct{}

func (panicOnStart) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		panic("cannot load configuration")
	}
}

func TestStartFailureInStartedHandler(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	broken := ChildSpec{ID: "broken", Start: StartActor(func(any) actor.Actor { return panicOnStart{} })}

	_, err := Start(system, "sup", Spec{
		Intensity: 1,
		Children:  []ChildSpec{worker("a", log, Permanent), broken},
	})

	var startErr *StartError
	if !errors.As(err, &startErr) {
		t.Fatalf("Start error = %v, want *StartError", err)
	}
	if startErr.Child != "broken" {
		t.Errorf("StartError.Child = %q, want broken", startErr.Child)
	}
	if !strings.Contains(err.Error(), "cannot load configuration") {
		t.Errorf("error %q does not carry the panic value", err)
	}
	assertLines(t, log.snapshot(), []string{"start a", "stop a"})
	if got := system.ProcessRegistry.LocalPIDs.GetBucket("sup/broken").Count(); got != 0 {
		t.Errorf("name sup/broken still registered after the failed start")
	}
}

func TestStartFailureInChildSupervisor(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	inner := Spec{
		Intensity: 1,
		Children:  []ChildSpec{worker("y", log, Permanent), {ID: "bad", Start: failingStart("disk full")}},
	}

	_, err := Start(system, "root", Spec{
		Intensity: 1,
		Children:  []ChildSpec{worker("x", log, Permanent), SupervisorChild("inner", inner), worker("z", log, Permanent)},
	})

	var startErr *StartError
	if !errors.As(err, &startErr) {
		t.Fatalf("Start error = %v, want *StartError", err)
	}
	if startErr.Child != "inner" {
		t.Errorf("outer StartError.Child = %q, want inner", startErr.Child)
	}
	var innerErr *StartError
	if !errors.As(startErr.Err, &innerErr) || innerErr.Child != "bad" || innerErr.Supervisor != "root/inner" {
		t.Errorf("inner cause = %v, want child bad of root/inner", startErr.Err)
	}
	assertLines(t, log.snapshot(), []string{"start x", "start y", "stop y", "stop x"})
}

func TestShutdownStopsInReverseOrder(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	inner := Spec{Intensity: 1, Children: []ChildSpec{worker("x", log, Permanent), worker("y", log, Permanent)}}
	ref, err := Start(system, "root", Spec{
		Intensity: 1,
		Children:  []ChildSpec{worker("a", log, Permanent), SupervisorChild("inner", inner), worker("b", log, Permanent)},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	assertLines(t, log.snapshot(), []string{"start a", "start x", "start y", "start b"})
	log.reset()

	stopSupervisor(t, ref)

	assertLines(t, log.snapshot(), []string{"stop b", "stop y", "stop x", "stop a"})
	select {
	case <-ref.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if ref.Err() != nil {
		t.Errorf("Err() after Stop = %v, want nil", ref.Err())
	}
	if got := ref.Events().Snapshot().Shutdowns; got["root"] != 1 || got["root/inner"] != 1 {
		t.Errorf("Shutdowns = %v, want root and root/inner once", got)
	}
}

func TestShutdownTimeoutKillsChild(t *testing.T) {
	cases := []struct {
		name     string
		shutdown time.Duration
		killLine bool
	}{
		{"timeout", 50 * time.Millisecond, true},
		{"brutal kill", BrutalKill, false},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			system := newSystem(t)
			log := newEventLog()
			logs := &syncBuffer{}
			slow := worker("slow", log, Permanent)
			slow.Shutdown = tc.shutdown
			ref, err := Start(system, "sup", Spec{
				Intensity: 1,
				Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
				Children:  []ChildSpec{slow},
			})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			pid := childPIDs(t, ref)["slow"]
			for range 3 {
				system.Root.Send(pid, &slowWork{d: 150 * time.Millisecond})
			}

			stopSupervisor(t, ref)

			// A graceful stop would handle all three queued messages first; the kill
			// overtakes the ones not yet started.
			lines := log.snapshot()
			worked := strings.Count(strings.Join(lines, "\n"), "worked slow")
			if worked >= 3 {
				t.Errorf("child handled %d of 3 queued messages, want it killed before the last", worked)
			}
			if lines[len(lines)-1] != "stop slow" {
				t.Errorf("last event = %q, want stop slow", lines[len(lines)-1])
			}
			killed := logs.find("child did not stop within its shutdown timeout, killing it") != nil
			if killed != tc.killLine {
				t.Errorf("kill warning logged = %v, want %v", killed, tc.killLine)
			}
		})
	}
}

func TestDynamicChildOperations(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	ref := startSupervisor(t, system, "sup", Spec{
		Intensity: 1,
		Children:  []ChildSpec{worker("a", log, Permanent)},
	})

	b, err := ref.StartChild(worker("b", log, Permanent))
	if err != nil {
		t.Fatalf("StartChild(b): %v", err)
	}
	if b.Id != "sup/b" {
		t.Errorf("b PID id = %s, want sup/b", b.Id)
	}
	_, err = ref.StartChild(worker("b", log, Permanent))
	assertErrorIs(t, err, ErrAlreadyStarted)

	log.reset()
	if err := ref.TerminateChild("b"); err != nil {
		t.Fatalf("TerminateChild(b): %v", err)
	}
	if pid, present := childPIDs(t, ref)["b"]; !present || pid != nil {
		t.Errorf("after TerminateChild: b present=%v pid=%v, want kept and stopped", present, pid)
	}
	counts, err := ref.CountChildren()
	if err != nil {
		t.Fatalf("CountChildren: %v", err)
	}
	if counts != (Counts{Specs: 2, Active: 1, Workers: 2}) {
		t.Errorf("CountChildren = %+v, want 2 specs, 1 active, 2 workers", counts)
	}
	_, err = ref.StartChild(worker("b", log, Permanent))
	assertErrorIs(t, err, ErrAlreadyPresent)
	assertErrorIs(t, ref.DeleteChild("a"), ErrRunning)

	restarted, err := ref.RestartChild("b")
	if err != nil {
		t.Fatalf("RestartChild(b): %v", err)
	}
	if restarted == b {
		t.Errorf("RestartChild returned the old incarnation")
	}
	_, err = ref.RestartChild("b")
	assertErrorIs(t, err, ErrRunning)
	// A terminated permanent child is not restarted by its supervisor.
	assertLines(t, log.snapshot(), []string{"stop b", "start b"})

	if err := ref.TerminateChild("b"); err != nil {
		t.Fatalf("TerminateChild(b): %v", err)
	}
	if err := ref.DeleteChild("b"); err != nil {
		t.Fatalf("DeleteChild(b): %v", err)
	}
	if _, present := childPIDs(t, ref)["b"]; present {
		t.Error("b still listed after DeleteChild")
	}

	temp, err := ref.StartChild(worker("temp", log, Temporary))
	if err != nil || temp == nil {
		t.Fatalf("StartChild(temp): %v", err)
	}
	if err := ref.TerminateChild("temp"); err != nil {
		t.Fatalf("TerminateChild(temp): %v", err)
	}
	if _, present := childPIDs(t, ref)["temp"]; present {
		t.Error("temporary child spec kept after TerminateChild")
	}

	_, err = ref.StartChild(ChildSpec{ID: "broken", Start: failingStart("no route")})
	var startErr *StartError
	if !errors.As(err, &startErr) || startErr.Child != "broken" {
		t.Errorf("StartChild(broken) = %v, want *StartError for broken", err)
	}
	if _, present := childPIDs(t, ref)["broken"]; present {
		t.Error("spec kept after a failed StartChild")
	}

	assertErrorIs(t, ref.TerminateChild("missing"), ErrNotFound)
	_, err = ref.RestartChild("missing")
	assertErrorIs(t, err, ErrNotFound)
	assertErrorIs(t, ref.DeleteChild("missing"), ErrNotFound)
	_, err = ref.StartSimpleChild("x")
	assertErrorIs(t, err, ErrSimpleOneForOne)
	_, err = ref.StartChild(ChildSpec{ID: "a/b", Start: failingStart("unused")})
	if err == nil || !strings.Contains(err.Error(), `"a/b"`) {
		t.Errorf("StartChild with id a/b = %v, want an invalid id error", err)
	}
}

func TestNamedChildReachableAfterRestart(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	ref := startSupervisor(t, system, "sup", Spec{
		Intensity: 2,
		Period:    time.Minute,
		Children:  []ChildSpec{worker("a", log, Permanent)},
	})

	cached := childPIDs(t, ref)["a"]
	stable := ref.ChildPID("a")
	fresh := actor.NewPID(system.Address(), "sup/a")
	for _, pid := range []*actor.PID{cached, stable, fresh} {
		if got := pingPID(t, system, pid).incarnation; got != 1 {
			t.Fatalf("incarnation through %s before restart = %d, want 1", pid.Id, got)
		}
	}

	system.Root.Send(stable, &crash{})
	waitRestarted(t, ref, "a", cached)

	// cached holds the dead incarnation's process; proto.actor resolves it again by name.
	for _, pid := range []*actor.PID{cached, stable, fresh} {
		if got := pingPID(t, system, pid).incarnation; got != 2 {
			t.Errorf("incarnation through %s after restart = %d, want 2", pid.Id, got)
		}
	}
}

func TestTreeDescribesNestedSupervisors(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	inner := Spec{Strategy: RestForOne, Intensity: 1, Children: []ChildSpec{worker("x", log, Transient)}}
	ref := startSupervisor(t, system, "node", Spec{
		Intensity: 1,
		Children:  []ChildSpec{worker("a", log, Permanent), SupervisorChild("inner", inner)},
	})

	tree, err := ref.Tree()
	if err != nil {
		t.Fatalf("Tree: %v", err)
	}
	if tree.ID != "node" || tree.Strategy != OneForOne || len(tree.Children) != 2 {
		t.Fatalf("root node = %+v, want node, one_for_one, 2 children", tree)
	}
	sub := tree.Children[1]
	if sub.ID != "inner" || sub.Kind != KindSupervisor || sub.Strategy != RestForOne || len(sub.Children) != 1 {
		t.Fatalf("inner node = %+v, want supervisor inner, rest_for_one, 1 child", sub)
	}
	if x := sub.Children[0]; x.ID != "x" || x.Restart != Transient || x.PID == nil || x.PID.Id != "node/inner/x" {
		t.Errorf("x node = %+v, want transient x at node/inner/x", x)
	}

	want := "node supervisor one_for_one pid=node\n" +
		"  a worker permanent pid=node/a restarts=0\n" +
		"  inner supervisor permanent rest_for_one pid=node/inner restarts=0\n" +
		"    x worker transient pid=node/inner/x restarts=0\n"
	if got := tree.String(); got != want {
		t.Errorf("tree text:\n%s\nwant:\n%s", got, want)
	}
}

func TestRestartLogLineFields(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	logs := &syncBuffer{}
	ref := startSupervisor(t, system, "sup", Spec{
		Intensity: 1,
		Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
		Children:  []ChildSpec{worker("a", log, Permanent)},
	})

	old := childPIDs(t, ref)["a"]
	system.Root.Send(old, &crash{})
	waitRestarted(t, ref, "a", old)

	for _, message := range []string{"child exited abnormally", "child restarted"} {
		line := logs.find(message)
		if line == nil {
			t.Fatalf("no %q log line in:\n%s", message, logs.String())
		}
		if line["supervisor"] != "sup" || line["child"] != "a" {
			t.Errorf("%q fields supervisor=%v child=%v, want sup and a", message, line["supervisor"], line["child"])
		}
		if reason, _ := line["reason"].(string); !strings.Contains(reason, "crashed on purpose") {
			t.Errorf("%q reason = %q, want the panic value", message, reason)
		}
	}
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

// find returns the first JSON log line whose msg is message, or nil.
func (b *syncBuffer) find(message string) map[string]any {
	for _, raw := range strings.Split(b.String(), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(raw), &line) == nil && line["msg"] == message {
			return line
		}
	}

	return nil
}
