package storage

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestDedupSkipMatchesFullReads applies the same random appends and sweeps to two stores.
// One skips the reads that its dedup state rules out. The other starts that state over before
// every batch, so it reads Pebble whenever any dedup record is on disk. Results and contents
// must be the same. The first store is also closed and reopened halfway, with live records.
func TestDedupSkipMatchesFullReads(t *testing.T) {
	dir := t.TempDir()
	skipping := openTestStore(t, Options{Dir: dir})
	reading := openTestStore(t, Options{})
	rng := rand.New(rand.NewPCG(3, 5))
	senders := []string{"ann", "ben", "cid"}
	nextID := map[string]uint64{}
	sender := senders[0]
	timeMS := uint64(1_000_000)
	skipped := 0

	for round := range 300 {
		if round == 150 {
			if err := skipping.Close(); err != nil {
				t.Fatal(err)
			}
			skipping = openTestStore(t, Options{Dir: dir})
		}

		var ops []Op
		for range 1 + rng.IntN(8) {
			timeMS += rng.Uint64N(40)
			if rng.IntN(10) == 0 {
				timeMS += 300 + rng.Uint64N(900) // a pause, so records expire or come close to it
			}
			if rng.IntN(15) == 0 {
				ops = append(ops, Op{Kind: OpSweepDedup, TimeMS: timeMS})
				continue
			}
			if rng.IntN(5) == 0 {
				sender = senders[rng.IntN(len(senders))] // senders come in bursts
			}
			id := nextID[sender]
			if id > 0 && rng.IntN(4) == 0 {
				id -= 1 + rng.Uint64N(min(id, 3)) // a retry of one of the last ids
			} else {
				nextID[sender]++
			}
			ops = append(ops, Op{Kind: OpAppend, User: "dana", Tag: rng.Uint64(), EntryKind: 0x02, Sender: sender,
				TimeMS: timeMS, Body: []byte(fmt.Sprint(round)),
				Dedup: &DedupKey{Sender: sender, Scope: "dana", ID: id}, DedupUntilMS: timeMS + 1000})
			if skipping.dedup.exact && skipping.dedup.absent(ops[len(ops)-1].Dedup) {
				skipped++
			}
		}

		got, err := skipping.ApplyOps(ops)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		reading.applyMu.Lock()
		reading.dedup = dedupIDs{}
		reading.applyMu.Unlock()
		want, err := reading.ApplyOps(ops)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i := range ops {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("round %d, op %d (%s): result %+v, want %+v", round, i, ops[i].Kind, got[i], want[i])
			}
		}
	}

	a, b := dumpStore(t, skipping), dumpStore(t, reading)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the stores hold different keys: %d and %d", len(a), len(b))
	}
	if skipped == 0 {
		t.Errorf("no read was skipped, so the test proves nothing")
	}
}

func TestDedupRepeatFoundAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, Options{Dir: dir})
	key := &DedupKey{Sender: "bob", Scope: "alice", ID: 7}
	first := mustApply(t, s, Op{Kind: OpAppend, User: "alice", Tag: 1, TimeMS: 1000, Dedup: key, DedupUntilMS: 9000})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, Options{Dir: dir})
	again := mustApply(t, s, Op{Kind: OpAppend, User: "alice", Tag: 2, TimeMS: 2000, Dedup: key, DedupUntilMS: 10000})
	if !again[0].Duplicate || again[0].Seq != first[0].Seq {
		t.Errorf("repeat after reopen = %+v, want a duplicate of seq %d", again[0], first[0].Seq)
	}
	if s.dedup.exact {
		t.Errorf("the dedup state claims to know every record although one predates the reopen")
	}

	mustApply(t, s, Op{Kind: OpSweepDedup, TimeMS: 9000})
	if !s.dedup.exact {
		t.Errorf("the dedup state stayed unsure after a complete sweep past the old records' expiry")
	}
}
