package supervisor

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEscalationParentRestartsChildSupervisor(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	inner := Spec{
		Strategy:  OneForOne,
		Intensity: 1,
		Period:    time.Minute,
		Children: []ChildSpec{
			worker("w1", log, Permanent),
			worker("w2", log, Permanent),
			worker("w3", log, Permanent),
		},
	}
	root := startSupervisor(t, system, "root", Spec{
		Strategy:  OneForOne,
		Intensity: 3,
		Period:    time.Minute,
		Children:  []ChildSpec{SupervisorChild("inner", inner), worker("other", log, Permanent)},
	})
	rootBefore := childPIDs(t, root)
	innerRef := root.Child("inner")

	// The first crash stays within the intensity of 1.
	w2 := childPIDs(t, innerRef)["w2"]
	log.reset()
	system.Root.Send(w2, &crash{})
	w2 = waitRestarted(t, innerRef, "w2", w2)
	assertLines(t, log.snapshot(), []string{"stop w2", "start w2"})

	// The second crash exceeds it: inner stops its children in reverse start order and
	// escalates, and root (one_for_one) restarts inner with fresh children.
	log.reset()
	system.Root.Send(w2, &crash{})
	waitRestarted(t, root, "inner", rootBefore["inner"])
	assertLines(t, log.snapshot(), []string{
		"stop w2", "stop w3", "stop w1",
		"start w1", "start w2", "start w3",
	})

	if got := childPIDs(t, root)["other"]; got != rootBefore["other"] {
		t.Errorf("sibling of the escalating supervisor was restarted")
	}

	stats := root.Events().Snapshot()
	if got := stats.Escalations["root/inner"]; got != 1 {
		t.Errorf("Escalations[root/inner] = %d, want 1", got)
	}
	if got := stats.Restarts["root/inner"]; got != 1 {
		t.Errorf("Restarts[root/inner] = %d, want 1", got)
	}
	if got := stats.Restarts["root/inner/w2"]; got != 1 {
		t.Errorf("Restarts[root/inner/w2] = %d, want 1", got)
	}
	if got := stats.AbnormalExits["root/inner"]; got != 1 {
		t.Errorf("AbnormalExits[root/inner] = %d, want 1", got)
	}

	// The stable name of a grandchild reaches the incarnation started after escalation.
	reply := pingPID(t, system, innerRef.ChildPID("w2"))
	if reply.incarnation != 3 {
		t.Errorf("w2 incarnation through its stable PID = %d, want 3", reply.incarnation)
	}
}

func TestEscalationParentRestForOne(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	fragile := Spec{Strategy: OneForOne, Intensity: 0, Children: []ChildSpec{worker("w", log, Permanent)}}
	root := startSupervisor(t, system, "root", Spec{
		Strategy:  RestForOne,
		Intensity: 3,
		Period:    time.Minute,
		Children: []ChildSpec{
			worker("before", log, Permanent),
			SupervisorChild("inner", fragile),
			worker("after", log, Permanent),
		},
	})
	rootBefore := childPIDs(t, root)

	log.reset()
	system.Root.Send(root.Child("inner").ChildPID("w"), &crash{})
	waitRestarted(t, root, "after", rootBefore["after"])

	assertLines(t, log.snapshot(), []string{"stop w", "stop after", "start w", "start after"})
	rootAfter := childPIDs(t, root)
	if rootAfter["before"] != rootBefore["before"] {
		t.Errorf("child started before the escalating supervisor was restarted")
	}
	if rootAfter["inner"] == rootBefore["inner"] {
		t.Errorf("escalating supervisor was not restarted")
	}
}

func TestTopLevelEscalationStopsSupervisor(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	ref, err := Start(system, "top", Spec{
		Strategy:  OneForOne,
		Intensity: 2,
		Period:    time.Minute,
		Children:  []ChildSpec{worker("a", log, Permanent), worker("b", log, Permanent)},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}

	a := childPIDs(t, ref)["a"]
	for restart := 1; restart <= 2; restart++ {
		system.Root.Send(a, &crash{})
		a = waitRestarted(t, ref, "a", a)
	}
	log.reset()
	system.Root.Send(a, &crash{})

	select {
	case <-ref.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("top-level supervisor did not stop after exceeding its intensity")
	}
	assertLines(t, log.snapshot(), []string{"stop a", "stop b"})

	var escalation *EscalationError
	if !errors.As(ref.Err(), &escalation) {
		t.Fatalf("Err() = %v, want *EscalationError", ref.Err())
	}
	if escalation.Child != "a" || escalation.Intensity != 2 {
		t.Errorf("escalation = %+v, want child a and intensity 2", escalation)
	}
	if got := ref.Events().Snapshot().Restarts["top/a"]; got != 2 {
		t.Errorf("Restarts[top/a] = %d, want 2", got)
	}
	_, err = ref.WhichChildren()
	assertErrorIs(t, err, ErrNotRunning)
}

func TestIntensityWindowForgetsOldRestarts(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	ref := startSupervisor(t, system, "sup", Spec{
		Strategy:  OneForOne,
		Intensity: 1,
		Period:    50 * time.Millisecond,
		Children:  []ChildSpec{worker("a", log, Permanent)},
	})

	a := childPIDs(t, ref)["a"]
	for restart := 1; restart <= 3; restart++ {
		system.Root.Send(a, &crash{})
		a = waitRestarted(t, ref, "a", a)
		// Let the previous restart leave the 50 ms window before the next crash.
		deadline := time.Now().Add(60 * time.Millisecond)
		waitFor(t, "end of the intensity period", func() bool { return time.Now().After(deadline) })
	}

	if got := ref.Events().Snapshot().TotalEscalations(); got != 0 {
		t.Errorf("escalations = %d, want 0 when restarts are further apart than the period", got)
	}
}

func TestStartFailureNamesChild(t *testing.T) {
	system := newSystem(t)
	log := newEventLog()
	failing := ChildSpec{ID: "b", Start: failingStart("address already in use")}

	_, err := Start(system, "sup", Spec{
		Strategy:  OneForOne,
		Intensity: 1,
		Children:  []ChildSpec{worker("a", log, Permanent), failing, worker("c", log, Permanent)},
	})

	var startErr *StartError
	if !errors.As(err, &startErr) {
		t.Fatalf("Start error = %v, want *StartError", err)
	}
	if startErr.Child != "b" || startErr.Supervisor != "sup" {
		t.Errorf("StartError names supervisor %q child %q, want sup and b", startErr.Supervisor, startErr.Child)
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not carry the cause", err)
	}
	assertLines(t, log.snapshot(), []string{"start a", "stop a"})

	// The failed supervisor has released its name.
	log.reset()
	ref := startSupervisor(t, system, "sup", Spec{Intensity: 1, Children: []ChildSpec{worker("a", log, Permanent)}})
	if _, err := ref.WhichChildren(); err != nil {
		t.Errorf("WhichChildren after restart under the same name: %v", err)
	}
}
