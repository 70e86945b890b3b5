package storage

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func TestAppendStoresEntriesInOrder(t *testing.T) {
	s := openTestStore(t, Options{})

	var results []AppendResult
	for i := range 5 {
		r, err := s.AppendSync(AppendRequest{
			User: "alice", Kind: 0x10, Sender: "bob", TimeMS: uint64(1000 + i), Body: []byte(fmt.Sprintf("m%d", i)),
		})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if r.Seq != uint64(i+1) {
			t.Errorf("append %d: seq = %d, want %d", i, r.Seq, i+1)
		}
		if r.Duplicate {
			t.Errorf("append %d: Duplicate = true without a dedup key", i)
		}
		results = append(results, r)
	}
	if r := mustAppend(t, s, "carol", "first"); r.Seq != 1 {
		t.Errorf("first append to another user: seq = %d, want 1", r.Seq)
	}

	entries, err := s.Inbox("alice", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Fatalf("Inbox returned %d entries, want 5", len(entries))
	}
	for i, e := range entries {
		if e.Seq != results[i].Seq || e.Tag != results[i].Tag {
			t.Errorf("entry %d: (seq, tag) = (%d, %x), want (%d, %x)", i, e.Seq, e.Tag, results[i].Seq, results[i].Tag)
		}
		if e.Kind != 0x10 || e.Sender != "bob" || e.TimeMS != uint64(1000+i) {
			t.Errorf("entry %d: kind %#x sender %q time %d, want 0x10 bob %d", i, e.Kind, e.Sender, e.TimeMS, 1000+i)
		}
		if want := fmt.Sprintf("m%d", i); string(e.Body) != want {
			t.Errorf("entry %d: body %q, want %q", i, e.Body, want)
		}
	}
	if n := inboxLen(t, s, "alice"); n != 5 {
		t.Errorf("InboxLen = %d, want 5", n)
	}
}

func TestInboxAfterSeqAndLimit(t *testing.T) {
	s := openTestStore(t, Options{})
	for i := range 6 {
		mustAppend(t, s, "alice", fmt.Sprint(i))
	}

	entries, err := s.Inbox("alice", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, e := range entries {
		got = append(got, e.Seq)
	}
	if want := []uint64{3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("Inbox(after 2, limit 3) seqs = %v, want %v", got, want)
	}

	entries, err = s.Inbox("alice", 6, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("Inbox after the last seq returned %d entries, want 0", len(entries))
	}
	if seqs := inboxSeqs(t, s, "nobody"); len(seqs) != 0 {
		t.Errorf("Inbox of an unknown user = %v, want empty", seqs)
	}
}

func TestSeqsContinueAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustAppend(t, s, "alice", "before")
	}
	s.AckUpTo("alice", 3)
	barrier(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTestStore(t, Options{Dir: dir})
	if n := inboxLen(t, s, "alice"); n != 0 {
		t.Errorf("InboxLen after reopen = %d, want 0", n)
	}
	if r := mustAppend(t, s, "alice", "after"); r.Seq != 4 {
		t.Errorf("first append after reopen: seq = %d, want 4 (seqs are never reused)", r.Seq)
	}
	if seqs := inboxSeqs(t, s, "alice"); !slices.Equal(seqs, []uint64{4}) {
		t.Errorf("inbox seqs = %v, want [4]", seqs)
	}
}

func TestAckIgnoresWrongTag(t *testing.T) {
	s := openTestStore(t, Options{})
	first := mustAppend(t, s, "alice", "a")
	second := mustAppend(t, s, "alice", "b")

	s.Ack("alice", first.Seq, first.Tag+1)
	s.Ack("alice", 99, first.Tag)
	barrier(t, s)
	if seqs := inboxSeqs(t, s, "alice"); !slices.Equal(seqs, []uint64{1, 2}) {
		t.Errorf("after acks with a wrong tag or seq: seqs = %v, want [1 2]", seqs)
	}
	if n := inboxLen(t, s, "alice"); n != 2 {
		t.Errorf("after acks with a wrong tag or seq: InboxLen = %d, want 2", n)
	}

	s.Ack("alice", second.Seq, second.Tag)
	barrier(t, s)
	if seqs := inboxSeqs(t, s, "alice"); !slices.Equal(seqs, []uint64{1}) {
		t.Errorf("after a matching ack of seq 2: seqs = %v, want [1]", seqs)
	}
	if n := inboxLen(t, s, "alice"); n != 1 {
		t.Errorf("after a matching ack: InboxLen = %d, want 1", n)
	}

	// A repeated ack of an entry already gone changes nothing.
	s.Ack("alice", second.Seq, second.Tag)
	barrier(t, s)
	if n := inboxLen(t, s, "alice"); n != 1 {
		t.Errorf("after a repeated ack: InboxLen = %d, want 1", n)
	}
}

func TestAckUpToDeletesPrefix(t *testing.T) {
	s := openTestStore(t, Options{})
	var results []AppendResult
	for i := range 6 {
		results = append(results, mustAppend(t, s, "alice", fmt.Sprint(i)))
	}
	s.Ack("alice", 3, results[2].Tag) // leaves a hole inside the acked range

	s.AckUpTo("alice", 4)
	barrier(t, s)
	if seqs := inboxSeqs(t, s, "alice"); !slices.Equal(seqs, []uint64{5, 6}) {
		t.Errorf("after AckUpTo(4): seqs = %v, want [5 6]", seqs)
	}
	if n := inboxLen(t, s, "alice"); n != 2 {
		t.Errorf("after AckUpTo(4): InboxLen = %d, want 2", n)
	}

	// An ack beyond the last seq deletes everything but must not hide later appends.
	s.AckUpTo("alice", 100)
	barrier(t, s)
	if n := inboxLen(t, s, "alice"); n != 0 {
		t.Errorf("after AckUpTo(100): InboxLen = %d, want 0", n)
	}
	if r := mustAppend(t, s, "alice", "later"); r.Seq != 7 {
		t.Errorf("append after AckUpTo(100): seq = %d, want 7", r.Seq)
	}
	if seqs := inboxSeqs(t, s, "alice"); !slices.Equal(seqs, []uint64{7}) {
		t.Errorf("after AckUpTo(100) and an append: seqs = %v, want [7]", seqs)
	}
}

func TestAppendToFullInboxFails(t *testing.T) {
	s := openTestStore(t, Options{MaxInbox: 3})
	var results []AppendResult
	for i := range 3 {
		results = append(results, mustAppend(t, s, "alice", fmt.Sprint(i)))
	}

	_, err := s.AppendSync(AppendRequest{User: "alice", Body: []byte("overflow")})
	if !errors.Is(err, ErrInboxFull) {
		t.Fatalf("append to a full inbox: err = %v, want ErrInboxFull", err)
	}
	if n := inboxLen(t, s, "alice"); n != 3 {
		t.Errorf("InboxLen after a rejected append = %d, want 3", n)
	}
	if r := mustAppend(t, s, "bob", "other inbox"); r.Seq != 1 {
		t.Errorf("append to another user: seq = %d, want 1", r.Seq)
	}

	s.Ack("alice", 1, results[0].Tag)
	if r := mustAppend(t, s, "alice", "fits again"); r.Seq != 4 {
		t.Errorf("append after an ack: seq = %d, want 4 (the rejected append takes no seq)", r.Seq)
	}
}

func TestLastSeenRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.LastSeen("alice"); err != nil || ok {
		t.Fatalf("LastSeen before any set: ok = %v, err = %v; want false, nil", ok, err)
	}
	s.SetLastSeen("alice", 1_700_000_000)
	s.SetLastSeen("alice", 1_700_000_042)
	barrier(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, Options{Dir: dir})
	sec, ok, err := s.LastSeen("alice")
	if err != nil || !ok || sec != 1_700_000_042 {
		t.Errorf("LastSeen after reopen = (%d, %v, %v), want (1700000042, true, nil)", sec, ok, err)
	}
}

func TestInvalidUserRejected(t *testing.T) {
	s := openTestStore(t, Options{})
	for _, user := range []string{"", "a:b", "a\x00b", string(bytes.Repeat([]byte("u"), maxUserLen+1))} {
		if _, err := s.AppendSync(AppendRequest{User: user}); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("append to %q: err = %v, want ErrInvalidRequest", user, err)
		}
		if _, err := s.Inbox(user, 0, 0); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Inbox(%q): err = %v, want ErrInvalidRequest", user, err)
		}
	}
	// A rejected op does not affect the other ops of its batch.
	if r := mustAppend(t, s, "alice", "valid"); r.Seq != 1 {
		t.Errorf("valid append after rejected ones: seq = %d, want 1", r.Seq)
	}
}

func TestConcurrentAppendsKeepOrder(t *testing.T) {
	s := openTestStore(t, Options{})
	const goroutines, perGoroutine, users = 32, 50, 4

	seqsBy := make([][]uint64, goroutines) // seqs that goroutine g got, in call order
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			user := fmt.Sprintf("user%d", g%users)
			for i := range perGoroutine {
				r, err := s.AppendSync(AppendRequest{User: user, Body: []byte(fmt.Sprintf("%d/%d", g, i))})
				if err != nil {
					t.Errorf("goroutine %d append %d: %v", g, i, err)
					return
				}
				seqsBy[g] = append(seqsBy[g], r.Seq)
			}
		})
	}
	wg.Wait()

	for g, seqs := range seqsBy {
		if !slices.IsSorted(seqs) {
			t.Errorf("goroutine %d got seqs out of call order: %v", g, seqs)
		}
	}
	perUser := goroutines / users * perGoroutine
	for u := range users {
		user := fmt.Sprintf("user%d", u)
		entries, err := s.Inbox(user, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != perUser {
			t.Errorf("%s has %d entries, want %d", user, len(entries), perUser)
			continue
		}
		for i, e := range entries {
			if e.Seq != uint64(i+1) {
				t.Errorf("%s entry %d has seq %d, want %d (no gaps)", user, i, e.Seq, i+1)
				break
			}
		}
	}
	if st := s.Stats(); st.Commits >= st.Appends {
		t.Errorf("group commit did not batch: %d commits for %d appends", st.Commits, st.Appends)
	}
}

func TestAppendDoneCallsInSeqOrder(t *testing.T) {
	s := openTestStore(t, Options{MaxBatch: 16})
	const total = 600
	var mu sync.Mutex
	var wg sync.WaitGroup
	got := make(map[string][]uint64)
	wg.Add(total)
	for i := range total {
		user := fmt.Sprintf("user%d", i%3)
		s.Append(AppendRequest{User: user, Body: []byte("x")}, func(r AppendResult, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("append to %s: %v", user, err)
				return
			}
			mu.Lock()
			got[user] = append(got[user], r.Seq)
			mu.Unlock()
		})
	}
	wg.Wait()

	for user, seqs := range got {
		for i, seq := range seqs {
			if seq != uint64(i+1) {
				t.Errorf("%s: done call %d reported seq %d, want %d", user, i, seq, i+1)
				break
			}
		}
	}
	if st := s.Stats(); st.Commits < total/16 {
		t.Errorf("MaxBatch 16 allows at most 16 ops per commit, but %d appends took %d commits", total, st.Commits)
	}
}

func TestCloseRunsQueuedOps(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const total = 200
	var mu sync.Mutex
	var succeeded int
	for range total {
		s.Append(AppendRequest{User: "alice", Body: []byte("x")}, func(_ AppendResult, err error) {
			if err != nil {
				t.Errorf("queued append failed: %v", err)
				return
			}
			mu.Lock()
			succeeded++
			mu.Unlock()
		})
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	if succeeded != total {
		t.Errorf("%d of %d queued appends succeeded before Close returned", succeeded, total)
	}
	mu.Unlock()

	if _, err := s.AppendSync(AppendRequest{User: "alice"}); !errors.Is(err, ErrClosed) {
		t.Errorf("append after Close: err = %v, want ErrClosed", err)
	}
	if _, err := s.Inbox("alice", 0, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Inbox after Close: err = %v, want ErrClosed", err)
	}
	if _, err := s.ApplyOps([]Op{{Kind: OpAckUpTo, User: "alice", Seq: 1}}); !errors.Is(err, ErrClosed) {
		t.Errorf("ApplyOps after Close: err = %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: err = %v, want ErrClosed", err)
	}

	s = openTestStore(t, Options{Dir: dir})
	if n := inboxLen(t, s, "alice"); n != total {
		t.Errorf("InboxLen after reopen = %d, want %d", n, total)
	}
}

func TestBacklogCountsUnackedEntriesAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var alice []AppendResult
	for i := range 4 {
		alice = append(alice, mustAppend(t, s, "alice", fmt.Sprint(i)))
	}
	for i := range 3 {
		mustAppend(t, s, "bob", fmt.Sprint(i))
	}
	s.Ack("alice", 2, alice[1].Tag)
	s.Ack("alice", 3, alice[2].Tag+1) // a wrong tag deletes nothing
	s.AckUpTo("bob", 2)
	barrier(t, s)
	// barrier appends one entry to an inbox of its own each time.
	if got := s.Stats().Backlog; got != 5 {
		t.Errorf("Backlog = %d, want 5 (alice 3, bob 1, barrier 1)", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTestStore(t, Options{Dir: dir})
	if got := s.Stats().Backlog; got != 5 {
		t.Errorf("Backlog after reopen = %d, want 5", got)
	}
	s.AckUpTo("alice", 100)
	barrier(t, s)
	if got := s.Stats().Backlog; got != 3 {
		t.Errorf("Backlog after acking all of alice = %d, want 3 (bob 1, barrier 2)", got)
	}
}

// TestAcksMatchModel applies random appends, v1 acks and ACK2s in small batches and
// compares the inbox after each batch with a model: the set of seqs not yet acknowledged.
// Acks out of order leave holes, so ACK2 runs both with and without them.
func TestAcksMatchModel(t *testing.T) {
	s := openTestStore(t, Options{})
	rng := rand.New(rand.NewPCG(7, 11))
	present := map[uint64]uint64{} // seq → tag
	var lastSeq, ackedThrough uint64
	withHoles, withoutHoles := 0, 0

	for round := range 400 {
		var ops []Op
		model := maps.Clone(present)
		modelLast, modelAcked := lastSeq, ackedThrough
		for range 1 + rng.IntN(6) {
			switch rng.IntN(6) {
			case 0, 1, 2:
				tag := rng.Uint64N(1 << 20)
				ops = append(ops, Op{Kind: OpAppend, User: "alice", Tag: tag, EntryKind: 0x02, Sender: "bob", TimeMS: 1, Body: []byte("m")})
				modelLast++
				model[modelLast] = tag
			case 3, 4:
				seq := modelAcked + 1 + rng.Uint64N(4)
				tag, ok := model[seq]
				ops = append(ops, Op{Kind: OpAck, User: "alice", Seq: seq, Tag: tag})
				if ok {
					delete(model, seq)
					if seq == modelAcked+1 {
						modelAcked = seq
					}
				}
			case 5:
				upTo := min(modelAcked+rng.Uint64N(5), modelLast)
				if uint64(len(model)) == modelLast-modelAcked {
					withoutHoles++
				} else {
					withHoles++
				}
				ops = append(ops, Op{Kind: OpAckUpTo, User: "alice", Seq: upTo})
				for seq := range model {
					if seq <= upTo {
						delete(model, seq)
					}
				}
				modelAcked = max(modelAcked, upTo)
			}
		}
		if _, err := s.ApplyOps(ops); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		present, lastSeq, ackedThrough = model, modelLast, modelAcked

		want := slices.Sorted(maps.Keys(present))
		if got := inboxSeqs(t, s, "alice"); !slices.Equal(got, want) {
			t.Fatalf("round %d: inbox seqs %v, want %v", round, got, want)
		}
		if n := inboxLen(t, s, "alice"); n != len(want) {
			t.Fatalf("round %d: InboxLen = %d, want %d", round, n, len(want))
		}
	}
	if withHoles == 0 || withoutHoles == 0 {
		t.Errorf("ACK2 ran %d times with holes and %d without; want both", withHoles, withoutHoles)
	}
}
