package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func TestDedupRepeatWithinWindow(t *testing.T) {
	s := openTestStore(t, Options{DedupWindow: time.Minute})
	appendAt := func(timeMS uint64, scope string) AppendResult {
		t.Helper()
		r, err := s.AppendSync(AppendRequest{
			User: "alice", Sender: "bob", TimeMS: timeMS, Body: []byte("hi"),
			Dedup: &DedupKey{Sender: "bob", Scope: scope, ID: 42},
		})
		if err != nil {
			t.Fatalf("append at %d: %v", timeMS, err)
		}
		return r
	}

	first := appendAt(10_000, "alice")
	if first.Duplicate || first.Seq != 1 {
		t.Fatalf("first append = %+v, want seq 1 and not a duplicate", first)
	}
	repeat := appendAt(10_000+59_999, "alice")
	if !repeat.Duplicate || repeat.Seq != first.Seq || repeat.Tag != first.Tag {
		t.Errorf("repeat inside the window = %+v, want a duplicate of %+v", repeat, first)
	}
	if n := inboxLen(t, s, "alice"); n != 1 {
		t.Errorf("InboxLen after a duplicate = %d, want 1", n)
	}

	otherScope := appendAt(10_001, "group-7")
	if otherScope.Duplicate || otherScope.Seq != 2 {
		t.Errorf("same id in another scope = %+v, want a new entry with seq 2", otherScope)
	}

	expired := appendAt(10_000+60_000, "alice")
	if expired.Duplicate || expired.Seq != 3 {
		t.Errorf("repeat at the end of the window = %+v, want a new entry with seq 3", expired)
	}
	renewed := appendAt(10_000+60_001, "alice")
	if !renewed.Duplicate || renewed.Seq != 3 {
		t.Errorf("repeat after the renewal = %+v, want a duplicate of seq 3", renewed)
	}
}

func TestDedupRepeatInSameBatch(t *testing.T) {
	s := openTestStore(t, Options{})
	key := &DedupKey{Sender: "bob", Scope: "alice", ID: 1}
	results, err := s.ApplyOps([]Op{
		{Kind: OpAppend, User: "alice", Tag: 11, TimeMS: 1000, Dedup: key, DedupUntilMS: 2000},
		{Kind: OpAppend, User: "alice", Tag: 22, TimeMS: 1001, Dedup: key, DedupUntilMS: 2001},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{{Seq: 1, Tag: 11}, {Seq: 1, Tag: 11, Duplicate: true}}
	if !reflect.DeepEqual(results, want) {
		t.Errorf("results = %+v, want %+v", results, want)
	}
}

func TestSweepDeletesExpiredDedupRecords(t *testing.T) {
	s := openTestStore(t, Options{})
	key := &DedupKey{Sender: "bob", Scope: "alice", ID: 9}
	id := dedupID(key)
	mustApply(t, s, Op{Kind: OpAppend, User: "alice", Tag: 1, TimeMS: 1000, Dedup: key, DedupUntilMS: 5000})

	mustApply(t, s, Op{Kind: OpSweepDedup, TimeMS: 4999})
	if !hasKey(t, s, dedupKey(id)) || !hasKey(t, s, dedupExpiryKey(5000, id)) {
		t.Fatalf("a sweep before the expiry deleted the dedup record or its index key")
	}

	mustApply(t, s, Op{Kind: OpSweepDedup, TimeMS: 5000})
	if hasKey(t, s, dedupKey(id)) {
		t.Errorf("dedup record still present after a sweep at its expiry")
	}
	if hasKey(t, s, dedupExpiryKey(5000, id)) {
		t.Errorf("dedup index key still present after a sweep at its expiry")
	}
	if n := inboxLen(t, s, "alice"); n != 1 {
		t.Errorf("the sweep changed the inbox: InboxLen = %d, want 1", n)
	}
}

func TestSweepReportsRecordsLeftOver(t *testing.T) {
	s := openTestStore(t, Options{})
	addExpiredDedupRecords(t, s, sweepLimit+10)

	first := mustApply(t, s, Op{Kind: OpSweepDedup, TimeMS: 5000})
	if !first[0].More {
		t.Errorf("a sweep that reached the limit reported no records left over")
	}
	if n := countDedupRecords(t, s); n != 10 {
		t.Errorf("after the first sweep %d dedup records remain, want 10", n)
	}
	second := mustApply(t, s, Op{Kind: OpSweepDedup, TimeMS: 5000})
	if second[0].More {
		t.Errorf("a sweep that deleted the rest reported records left over")
	}
	if n := countDedupRecords(t, s); n != 0 {
		t.Errorf("after the second sweep %d dedup records remain, want 0", n)
	}
}

// A busy store expires more records per sweep interval than one sweep deletes, so the
// commit loop sweeps again at once until none is left.
func TestCommitLoopSweepsUntilNoneLeft(t *testing.T) {
	s := openTestStore(t, Options{})
	addExpiredDedupRecords(t, s, 2*sweepLimit+10)

	if !s.enqueue(queuedOp{op: Op{Kind: OpSweepDedup, TimeMS: 5000}}) {
		t.Fatal("store closed")
	}
	waitFor(t, "every expired dedup record to be swept", func() bool { return countDedupRecords(t, s) == 0 })
}

// addExpiredDedupRecords appends n messages whose dedup records expire at 2000.
func addExpiredDedupRecords(t *testing.T, s *Store, n int) {
	t.Helper()
	var ops []Op
	for i := range n {
		ops = append(ops, Op{Kind: OpAppend, User: "alice", Tag: 1, TimeMS: 1000,
			Dedup: &DedupKey{Sender: "bob", Scope: "alice", ID: uint64(i)}, DedupUntilMS: 2000})
	}
	for chunk := range slices.Chunk(ops, 1000) {
		mustApply(t, s, chunk...)
	}
}

// countDedupRecords returns how many dedup records the store holds.
func countDedupRecords(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	for _, kv := range dumpStore(t, s) {
		if kv[0][0] == tagDedup {
			n++
		}
	}
	return n
}

func TestRenewedDedupRecordSurvivesSweep(t *testing.T) {
	s := openTestStore(t, Options{})
	key := &DedupKey{Sender: "bob", Scope: "alice", ID: 3}
	mustApply(t, s,
		Op{Kind: OpAppend, User: "alice", Tag: 1, TimeMS: 1000, Dedup: key, DedupUntilMS: 2000},
		Op{Kind: OpAppend, User: "alice", Tag: 2, TimeMS: 2500, Dedup: key, DedupUntilMS: 3500},
		Op{Kind: OpSweepDedup, TimeMS: 3000},
	)
	results := mustApply(t, s, Op{Kind: OpAppend, User: "alice", Tag: 3, TimeMS: 3100, Dedup: key, DedupUntilMS: 4100})
	if want := (Result{Seq: 2, Tag: 2, Duplicate: true}); !reflect.DeepEqual(results[0], want) {
		t.Errorf("repeat after the sweep = %+v, want %+v (the renewed record must survive)", results[0], want)
	}
}

func TestApplyOpsRejectsSingleOps(t *testing.T) {
	s := openTestStore(t, Options{MaxInbox: 1})
	results, err := s.ApplyOps([]Op{
		{Kind: OpAppend, User: "alice", Tag: 1},
		{Kind: OpAppend, User: "alice", Tag: 2},
		{Kind: OpAppend, User: "a:b", Tag: 3},
		{Kind: OpKind(99), User: "alice"},
		{Kind: OpAppend, User: "bob", Tag: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantErrs := []error{nil, ErrInboxFull, ErrInvalidRequest, ErrInvalidRequest, nil}
	for i, want := range wantErrs {
		// errors.Is(err, nil) holds only for a nil err.
		if !errors.Is(results[i].Err, want) {
			t.Errorf("op %d: Err = %v, want %v", i, results[i].Err, want)
		}
	}
	if results[4].Seq != 1 {
		t.Errorf("append after rejected ops: seq = %d, want 1", results[4].Seq)
	}
}

// TestApplyOpsIsDeterministic applies the same random ops to two stores, one directly in
// batches of 7 and one through MarshalOps and UnmarshalOps in batches of 13, and expects
// identical results and identical Pebble contents.
func TestApplyOpsIsDeterministic(t *testing.T) {
	ops := randomOps(rand.New(rand.NewPCG(1, 2)), 3000)
	limits := Options{MaxInbox: 20, MaxPrekeys: 6, MaxGroupSize: 3, MaxGroupsPerUser: 2}
	direct := openTestStore(t, limits)
	decoded := openTestStore(t, limits)

	directResults := applyInChunks(t, direct, ops, 7)

	var decodedResults []Result
	for chunk := range slices.Chunk(ops, 13) {
		data, err := MarshalOps(chunk)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalOps(data)
		if err != nil {
			t.Fatal(err)
		}
		decodedResults = append(decodedResults, applyInChunks(t, decoded, back, len(back))...)
	}

	for i := range ops {
		a, b := directResults[i], decodedResults[i]
		if fmt.Sprint(a.Err) != fmt.Sprint(b.Err) {
			t.Fatalf("op %d (%s): errors differ: %v vs %v", i, ops[i].Kind, a.Err, b.Err)
		}
		a.Err, b.Err = nil, nil
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("op %d (%s): results differ: %+v vs %+v", i, ops[i].Kind, a, b)
		}
	}
	dumpA, dumpB := dumpStore(t, direct), dumpStore(t, decoded)
	if len(dumpA) != len(dumpB) {
		t.Fatalf("stores hold %d and %d keys", len(dumpA), len(dumpB))
	}
	for i := range dumpA {
		if !bytes.Equal(dumpA[i][0], dumpB[i][0]) || !bytes.Equal(dumpA[i][1], dumpB[i][1]) {
			t.Fatalf("key %d differs: %q=%x vs %q=%x", i, dumpA[i][0], dumpA[i][1], dumpB[i][0], dumpB[i][1])
		}
	}
	kinds := map[bool]int{}
	for _, r := range directResults {
		kinds[r.Duplicate]++
	}
	if kinds[true] == 0 {
		t.Errorf("the random ops produced no duplicates, so dedup was not exercised")
	}

	// Every outcome of the key-bundle and group kinds must occur, or the comparison above
	// proves little about them.
	seen := map[string]bool{}
	for i, r := range directResults {
		seen[outcomeName(ops[i].Kind, r)] = true
	}
	for _, want := range []string{
		"key-upload ok", "key-upload " + ErrNotFound.Error(), "key-upload " + ErrPoolFull.Error(),
		"key-fetch prekey", "key-fetch empty pool", "key-fetch " + ErrNotFound.Error(),
		"group-create ok", "group-create " + ErrExists.Error(), "group-create " + ErrTooManyGroups.Error(),
		"group-add ok", "group-add duplicate", "group-add " + ErrNotFound.Error(), "group-add " + ErrNotAdmin.Error(),
		"group-add " + ErrGroupFull.Error(), "group-add " + ErrTooManyGroups.Error(),
		"group-leave ok", "group-leave deleted", "group-leave " + ErrNotFound.Error(), "group-leave " + ErrNotMember.Error(),
	} {
		if !seen[want] {
			t.Errorf("the random ops never produced the outcome %q", want)
		}
	}
}

// outcomeName names the outcome of one key-bundle or group op for the coverage check of the
// determinism test: the kind followed by the sentinel error or a short description.
func outcomeName(kind OpKind, r Result) string {
	for _, sentinel := range []error{ErrNotFound, ErrPoolFull, ErrExists, ErrTooManyGroups, ErrNotAdmin, ErrGroupFull, ErrNotMember} {
		if errors.Is(r.Err, sentinel) {
			return kind.String() + " " + sentinel.Error()
		}
	}
	switch {
	case r.Err != nil:
		return kind.String() + " other error"
	case kind == OpKeyFetch && r.Prekey != nil:
		return "key-fetch prekey"
	case kind == OpKeyFetch:
		return "key-fetch empty pool"
	case r.Duplicate:
		return kind.String() + " duplicate"
	case kind == OpGroupLeave && r.Group == nil:
		return "group-leave deleted"
	}
	return kind.String() + " ok"
}

func randomOps(rng *rand.Rand, n int) []Op {
	users := []string{"alice", "bob", "carol"}
	var ops []Op
	timeMS := uint64(1_000_000)
	for range n {
		timeMS += rng.Uint64N(50)
		user := users[rng.IntN(len(users))]
		if rng.IntN(3) == 0 {
			ops = append(ops, randomKeyOrGroupOp(rng, user, timeMS, len(ops)))
			continue
		}
		switch rng.IntN(10) {
		case 0, 1, 2, 3, 4:
			op := Op{Kind: OpAppend, User: user, Tag: rng.Uint64N(4), EntryKind: 0x02, Sender: "s", TimeMS: timeMS,
				Body: []byte(fmt.Sprint(len(ops)))}
			if rng.IntN(2) == 0 {
				op.Dedup = &DedupKey{Sender: "s", Scope: user, ID: rng.Uint64N(20)}
				op.DedupUntilMS = timeMS + 500
			}
			ops = append(ops, op)
		case 5, 6:
			ops = append(ops, Op{Kind: OpAck, User: user, Seq: rng.Uint64N(40), Tag: rng.Uint64N(4)})
		case 7:
			ops = append(ops, Op{Kind: OpAckUpTo, User: user, Seq: rng.Uint64N(60)})
		case 8:
			ops = append(ops, Op{Kind: OpSetLastSeen, User: user, LastSeenSec: timeMS / 1000})
		case 9:
			ops = append(ops, Op{Kind: OpSweepDedup, TimeMS: timeMS})
		}
	}
	return ops
}

// randomKeyOrGroupOp returns a key-bundle or group op on a few users and group ids, so that
// with small limits every outcome occurs, rejections included.
func randomKeyOrGroupOp(rng *rand.Rand, user string, timeMS uint64, n int) Op {
	users := []string{"alice", "bob", "carol", "dave"}
	groupID := []string{"g1", "g2", "g3"}[rng.IntN(3)]
	switch rng.IntN(8) {
	case 0:
		op := Op{Kind: OpKeyUpload, User: user}
		if rng.IntN(3) == 0 {
			op.Bundle = &KeyBundle{
				IdentityKey:           []byte(fmt.Sprint("id", n)),
				SignedPrekey:          []byte(fmt.Sprint("spk", n)),
				SignedPrekeySignature: []byte(fmt.Sprint("sig", n)),
				SignedPrekeyTimestamp: timeMS,
				HasTimestamp:          rng.IntN(2) == 0,
			}
		}
		for i := range rng.IntN(4) {
			op.Prekeys = append(op.Prekeys, []byte(fmt.Sprint("pk", n, ".", i)))
		}
		return op
	case 1:
		return Op{Kind: OpKeyFetch, User: user}
	case 2:
		return Op{Kind: OpGroupCreate, GroupID: groupID, Name: fmt.Sprint("name", n), User: user, TimeMS: timeMS}
	case 3, 4, 5, 6:
		return Op{Kind: OpGroupAdd, GroupID: groupID, User: users[rng.IntN(len(users))], By: user}
	default:
		return Op{Kind: OpGroupLeave, GroupID: groupID, User: user}
	}
}

func applyInChunks(t *testing.T, s *Store, ops []Op, size int) []Result {
	t.Helper()
	var results []Result
	for chunk := range slices.Chunk(ops, size) {
		r, err := s.ApplyOps(chunk)
		if err != nil {
			t.Fatalf("ApplyOps: %v", err)
		}
		results = append(results, r...)
	}
	return results
}

func mustApply(t *testing.T, s *Store, ops ...Op) []Result {
	t.Helper()
	results, err := s.ApplyOps(ops)
	if err != nil {
		t.Fatalf("ApplyOps: %v", err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("op %d (%s): %v", i, ops[i].Kind, r.Err)
		}
	}
	return results
}

func hasKey(t *testing.T, s *Store, key []byte) bool {
	t.Helper()
	db, release, err := s.readDB()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	closer.Close()
	return true
}

// dumpStore returns every key and value in the store, in key order.
func dumpStore(t *testing.T, s *Store) [][2][]byte {
	t.Helper()
	db, release, err := s.readDB()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	iter, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer iter.Close()
	var kvs [][2][]byte
	for iter.First(); iter.Valid(); iter.Next() {
		kvs = append(kvs, [2][]byte{slices.Clone(iter.Key()), slices.Clone(iter.Value())})
	}
	if err := iter.Error(); err != nil {
		t.Fatal(err)
	}
	return kvs
}
