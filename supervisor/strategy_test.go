package supervisor

import (
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

func TestStrategyRestartsExpectedChildren(t *testing.T) {
	cases := []struct {
		strategy  Strategy
		want      []string
		restarted []string
	}{
		{
			strategy:  OneForOne,
			want:      []string{"stop b", "start b"},
			restarted: []string{"b"},
		},
		{
			strategy:  OneForAll,
			want:      []string{"stop b", "stop d", "stop c", "stop a", "start a", "start b", "start c", "start d"},
			restarted: []string{"a", "b", "c", "d"},
		},
		{
			strategy:  RestForOne,
			want:      []string{"stop b", "stop d", "stop c", "start b", "start c", "start d"},
			restarted: []string{"b", "c", "d"},
		},
	}

	for _, tc := range cases {
		t.Run(tc.strategy.String(), func(t *testing.T) {
			system := newSystem(t)
			log := newEventLog()
			ref := startSupervisor(t, system, "sup", Spec{
				Strategy:  tc.strategy,
				Intensity: 3,
				Period:    time.Minute,
				Children: []ChildSpec{
					worker("a", log, Permanent),
					worker("b", log, Permanent),
					worker("c", log, Permanent),
					worker("d", log, Permanent),
				},
			})
			assertLines(t, waitLog(t, log, 4), []string{"start a", "start b", "start c", "start d"})

			before := childPIDs(t, ref)
			log.reset()
			system.Root.Send(before["b"], &crash{})
			waitRestarted(t, ref, "b", before["b"])

			// The supervisor replies to WhichChildren only after the whole restart, so the log is complete.
			assertLines(t, log.snapshot(), tc.want)

			after := childPIDs(t, ref)
			for _, id := range []string{"a", "b", "c", "d"} {
				changed := after[id] != before[id]
				if changed != slices.Contains(tc.restarted, id) {
					t.Errorf("child %s: new incarnation = %v, want %v", id, changed, !changed)
				}
				if after[id].Id != before[id].Id {
					t.Errorf("child %s: PID id changed from %s to %s", id, before[id].Id, after[id].Id)
				}
			}

			stats := ref.Events().Snapshot()
			for _, id := range tc.restarted {
				if got := stats.Restarts["sup/"+id]; got != 1 {
					t.Errorf("Restarts[sup/%s] = %d, want 1", id, got)
				}
			}
			if got := stats.AbnormalExits["sup/b"]; got != 1 {
				t.Errorf("AbnormalExits[sup/b] = %d, want 1", got)
			}
		})
	}
}

func TestRestartTypeDecidesRestart(t *testing.T) {
	cases := []struct {
		name      string
		restart   RestartType
		message   any
		restarted bool
		specKept  bool
	}{
		{"permanent normal exit", Permanent, &exitNormal{}, true, true},
		{"permanent crash", Permanent, &crash{}, true, true},
		{"transient normal exit", Transient, &exitNormal{}, false, true},
		{"transient crash", Transient, &crash{}, true, true},
		{"temporary normal exit", Temporary, &exitNormal{}, false, false},
		{"temporary crash", Temporary, &crash{}, false, false},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			system := newSystem(t)
			log := newEventLog()
			ref := startSupervisor(t, system, "sup", Spec{
				Strategy:  OneForOne,
				Intensity: 3,
				Period:    time.Minute,
				Children:  []ChildSpec{worker("a", log, Permanent), worker("x", log, tc.restart)},
			})
			old := childPIDs(t, ref)["x"]
			log.reset()
			system.Root.Send(old, tc.message)

			if tc.restarted {
				current := waitRestarted(t, ref, "x", old)
				if got := pingPID(t, system, current).incarnation; got != 2 {
					t.Errorf("incarnation after restart = %d, want 2", got)
				}
				assertLines(t, log.snapshot(), []string{"stop x", "start x"})

				return
			}

			waitFor(t, "exit of x", func() bool {
				pid, present := childPIDs(t, ref)["x"]
				return pid == nil || !present
			})
			_, present := childPIDs(t, ref)["x"]
			if present != tc.specKept {
				t.Errorf("spec kept = %v, want %v", present, tc.specKept)
			}
			assertLines(t, log.snapshot(), []string{"stop x"})
			if got := ref.Events().Snapshot().TotalRestarts(); got != 0 {
				t.Errorf("TotalRestarts = %d, want 0", got)
			}
		})
	}
}

func TestSimpleOneForOneChildren(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	ref := startSupervisor(t, system, "sessions", Spec{
		Strategy:  SimpleOneForOne,
		Intensity: 3,
		Period:    time.Minute,
		Children:  []ChildSpec{simpleWorker("session", log, Transient)},
	})

	counts, err := ref.CountChildren()
	if err != nil {
		t.Fatalf("CountChildren: %v", err)
	}
	if counts.Specs != 0 {
		t.Fatalf("children before StartSimpleChild = %d, want 0", counts.Specs)
	}

	pids := make([]*actor.PID, 0, 3)
	for _, arg := range []string{"s1", "s2", "s3"} {
		pid, err := ref.StartSimpleChild(arg)
		if err != nil {
			t.Fatalf("StartSimpleChild(%s): %v", arg, err)
		}
		pids = append(pids, pid)
	}
	if pids[1].Id != "sessions/session-2" {
		t.Errorf("second child PID id = %s, want sessions/session-2", pids[1].Id)
	}

	// A crash restarts only that child, with the same argument.
	system.Root.Send(pids[1], &crash{})
	current := waitRestarted(t, ref, "session-2", pids[1])
	reply := pingPID(t, system, current)
	if reply.arg != "s2" || reply.incarnation != 2 {
		t.Errorf("restarted child: arg %v incarnation %d, want s2 and 2", reply.arg, reply.incarnation)
	}
	if got := childPIDs(t, ref)["session-1"]; got != pids[0] {
		t.Errorf("session-1 was restarted by a sibling's crash")
	}

	// A transient child that exits normally is removed, not restarted.
	system.Root.Send(pids[2], &exitNormal{})
	waitFor(t, "removal of session-3", func() bool {
		_, present := childPIDs(t, ref)["session-3"]
		return !present
	})

	if err := ref.TerminateChild("session-1"); err != nil {
		t.Fatalf("TerminateChild(session-1): %v", err)
	}
	children, err := ref.WhichChildren()
	if err != nil {
		t.Fatalf("WhichChildren: %v", err)
	}
	if len(children) != 1 || children[0].ID != "session-2" {
		t.Errorf("children = %+v, want only session-2", children)
	}

	_, err = ref.StartChild(worker("other", log, Permanent))
	assertErrorIs(t, err, ErrSimpleOneForOne)
	_, err = ref.RestartChild("session-2")
	assertErrorIs(t, err, ErrSimpleOneForOne)
	assertErrorIs(t, ref.DeleteChild("session-2"), ErrSimpleOneForOne)

	stats := ref.Events().Snapshot()
	if got := stats.Restarts["sessions/session"]; got != 1 {
		t.Errorf("Restarts[sessions/session] = %d, want 1", got)
	}
}

func TestSimpleOneForOneShutdownStopsAll(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	ref, err := Start(system, "sessions", Spec{
		Strategy:  SimpleOneForOne,
		Intensity: 1,
		Children:  []ChildSpec{simpleWorker("session", log, Temporary)},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	for i := range 20 {
		if _, err := ref.StartSimpleChild(i); err != nil {
			t.Fatalf("StartSimpleChild(%d): %v", i, err)
		}
	}
	log.reset()

	stopSupervisor(t, ref)

	stops := 0
	for _, line := range log.snapshot() {
		if len(line) > 5 && line[:5] == "stop " {
			stops++
		}
	}
	if stops != 20 {
		t.Errorf("children stopped = %d, want 20", stops)
	}
}
