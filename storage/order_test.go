package storage

import (
	"errors"
	"testing"
	"time"
)

// orderedAppend appends body to alice from bob in stream 7 with the given
// order key fields and returns the result.
func orderedAppend(t *testing.T, s *Store, timeMS, n, base uint64, body string) (AppendResult, error) {
	t.Helper()
	return s.AppendSync(AppendRequest{
		User: "alice", Sender: "bob", TimeMS: timeMS, Body: []byte(body),
		Order: &OrderKey{Stream: 7, N: n, Base: base},
	})
}

func inboxBodies(t *testing.T, s *Store, user string) []string {
	t.Helper()
	entries, err := s.Inbox(user, 0, 0)
	if err != nil {
		t.Fatalf("Inbox: %v", err)
	}
	bodies := make([]string, len(entries))
	for i, e := range entries {
		bodies[i] = string(e.Body)
	}
	return bodies
}

func TestOrderGateRejectsGap(t *testing.T) {
	s := openTestStore(t, Options{DedupWindow: time.Minute})

	if _, err := orderedAppend(t, s, 1000, 1, 1, "m1"); err != nil {
		t.Fatalf("append 1: %v", err)
	}
	// m2 was lost on the way: m3 must wait.
	if _, err := orderedAppend(t, s, 1000, 3, 2, "m3"); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("append 3 before 2: err = %v, want ErrOutOfOrder", err)
	}
	if got := inboxBodies(t, s, "alice"); len(got) != 1 {
		t.Fatalf("inbox after the rejected gap = %v, want only m1", got)
	}

	// The sender resends m2 and m3 in order.
	for n, body := range map[uint64]string{2: "m2"} {
		if _, err := orderedAppend(t, s, 1000, n, 2, body); err != nil {
			t.Fatalf("resend %d: %v", n, err)
		}
	}
	if _, err := orderedAppend(t, s, 1000, 3, 2, "m3"); err != nil {
		t.Fatalf("resend 3: %v", err)
	}
	if got := inboxBodies(t, s, "alice"); len(got) != 3 || got[0] != "m1" || got[1] != "m2" || got[2] != "m3" {
		t.Fatalf("inbox = %v, want [m1 m2 m3]", got)
	}
}

func TestOrderGateRepeatIsDuplicate(t *testing.T) {
	s := openTestStore(t, Options{DedupWindow: time.Minute})
	for n := uint64(1); n <= 2; n++ {
		if _, err := orderedAppend(t, s, 1000, n, 1, "m"); err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
	}
	res, err := orderedAppend(t, s, 1000, 1, 1, "m")
	if err != nil || !res.Duplicate {
		t.Fatalf("repeat of 1 = %+v, %v; want a duplicate", res, err)
	}
	if n := inboxLen(t, s, "alice"); n != 2 {
		t.Fatalf("InboxLen = %d, want 2", n)
	}
}

func TestOrderGateBaseSkipsFinishedAppends(t *testing.T) {
	s := openTestStore(t, Options{DedupWindow: time.Minute})
	// Appends 1..4 of the stream had final results elsewhere (for example a
	// failed commit) and were never recorded: Base says so.
	res, err := orderedAppend(t, s, 1000, 5, 5, "m5")
	if err != nil || res.Duplicate {
		t.Fatalf("append 5 with base 5 = %+v, %v; want stored", res, err)
	}
}

func TestOrderGateInboxFullCountsAsApplied(t *testing.T) {
	s := openTestStore(t, Options{DedupWindow: time.Minute, MaxInbox: 1})
	if _, err := orderedAppend(t, s, 1000, 1, 1, "m1"); err != nil {
		t.Fatalf("append 1: %v", err)
	}
	if _, err := orderedAppend(t, s, 1000, 2, 2, "m2"); !errors.Is(err, ErrInboxFull) {
		t.Fatalf("append 2 = %v, want ErrInboxFull", err)
	}
	s.AckUpTo("alice", 1)
	// N 2 is final, so 3 is next even though its base is still 2.
	if _, err := orderedAppend(t, s, 1000, 3, 2, "m3"); err != nil {
		t.Fatalf("append 3 after a full inbox: %v", err)
	}
}

func TestOrderRecordExpires(t *testing.T) {
	s := openTestStore(t, Options{DedupWindow: time.Minute})
	if _, err := orderedAppend(t, s, 1000, 1, 1, "m1"); err != nil {
		t.Fatalf("append 1: %v", err)
	}
	// A minute (and one rounding step of the expiry time) later the record
	// is gone: a repeat of 1 is stored again.
	res, err := orderedAppend(t, s, 1000+60_000+expiryStepMS, 1, 1, "m1 again")
	if err != nil || res.Duplicate {
		t.Fatalf("append 1 after expiry = %+v, %v; want stored", res, err)
	}

	mustApply(t, s, Op{Kind: OpSweepDedup, TimeMS: 1000 + 200_000})
	if hasKey(t, s, orderKey(orderID("alice", "bob", 7))) {
		t.Fatal("sweep left an expired order record")
	}
}

func TestMarshalOpsKeepsOrderKey(t *testing.T) {
	ops := []Op{{
		Kind: OpAppend, User: "alice", Sender: "bob", TimeMS: 5, Tag: 9, Body: []byte("x"),
		Dedup:        &DedupKey{Sender: "bob", Scope: "s", ID: 3},
		Order:        &OrderKey{Stream: 1 << 60, N: 12, Base: 10},
		DedupUntilMS: 99,
	}, {
		Kind: OpAppend, User: "alice", Sender: "bob", TimeMS: 5, Tag: 9, Body: []byte("y"),
		Order: &OrderKey{Stream: 2, N: 1, Base: 1}, DedupUntilMS: 7,
	}}
	data, err := MarshalOps(ops)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalOps(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		if *got[i].Order != *ops[i].Order || got[i].DedupUntilMS != ops[i].DedupUntilMS {
			t.Errorf("op %d: order %+v until %d, want %+v until %d", i, *got[i].Order, got[i].DedupUntilMS, *ops[i].Order, ops[i].DedupUntilMS)
		}
	}
	if got[1].Dedup != nil {
		t.Errorf("op 1 gained a dedup key %+v", got[1].Dedup)
	}
}
