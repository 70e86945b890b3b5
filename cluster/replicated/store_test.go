package replicated

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/iris-im/iris/actors/irispb"
	"github.com/iris-im/iris/cluster/replica"
	"github.com/iris-im/iris/storage"
)

// checkSubmissionOrder checks that the callbacks of one core's appends to one user ran in
// submission order, each with a higher seq than the one before, and that every entry was
// in the core's local inbox when its callback ran.
func checkSubmissionOrder(t *testing.T, label string, outcomes []appendOutcome) {
	t.Helper()
	var lastSeq uint64
	for i, o := range outcomes {
		if o.err != nil {
			t.Errorf("%s: append %d failed: %v", label, o.index, o.err)
			continue
		}
		if o.index != i {
			t.Errorf("%s: callback %d is of append %d, want submission order", label, i, o.index)
		}
		if o.res.Duplicate {
			t.Errorf("%s: append %d reported Duplicate", label, o.index)
		}
		if o.res.Seq <= lastSeq {
			t.Errorf("%s: append %d got seq %d after seq %d, want an increasing seq", label, o.index, o.res.Seq, lastSeq)
		}
		lastSeq = o.res.Seq
		if !o.visible {
			t.Errorf("%s: append %d (seq %d) was not in the local inbox when done ran", label, o.index, o.res.Seq)
		}
	}
}

func TestAppendSeqsFollowSubmissionOrder(t *testing.T) {
	cores := startCores(t, nil)
	leader := waitLeader(t, cores)
	follower := followers(cores, leader)[0]
	const count = 60

	for _, tc := range []struct {
		role string
		core *testCore
	}{{"leader", leader}, {"follower", follower}} {
		t.Run(tc.role, func(t *testing.T) {
			user := "ann-" + tc.role
			rec := &appendRecorder{}
			for i := range count {
				rec.submit(tc.core, i, plainAppend(user, fmt.Sprintf("m%d", i)))
			}
			outcomes := rec.wait(t, count, 10*time.Second)
			checkSubmissionOrder(t, tc.role, outcomes)
			if outcomes[0].res.Seq != 1 || outcomes[count-1].res.Seq != count {
				t.Errorf("seqs run from %d to %d, want 1 to %d", outcomes[0].res.Seq, outcomes[count-1].res.Seq, count)
			}
		})
	}

	t.Run("both cores to one user", func(t *testing.T) {
		const user = "bea"
		fromLeader, fromFollower := &appendRecorder{}, &appendRecorder{}
		for i := range count {
			fromLeader.submit(leader, i, plainAppend(user, fmt.Sprintf("l%d", i)))
			fromFollower.submit(follower, i, plainAppend(user, fmt.Sprintf("f%d", i)))
		}
		viaLeader := fromLeader.wait(t, count, 10*time.Second)
		viaFollower := fromFollower.wait(t, count, 10*time.Second)
		checkSubmissionOrder(t, "via leader", viaLeader)
		checkSubmissionOrder(t, "via follower", viaFollower)

		seqs := make(map[uint64]string)
		for _, o := range append(viaLeader, viaFollower...) {
			if other, dup := seqs[o.res.Seq]; dup {
				t.Errorf("seq %d given to both %q and %q", o.res.Seq, other, o.req.Body)
			}
			seqs[o.res.Seq] = string(o.req.Body)
		}
		for seq := uint64(1); seq <= 2*count; seq++ {
			if _, ok := seqs[seq]; !ok {
				t.Errorf("no append got seq %d; want seqs 1 to %d", seq, 2*count)
			}
		}

		want := inboxBodies(t, leader, user)
		for _, c := range cores {
			waitFor(t, 5*time.Second, c.id+" to hold every entry of "+user, func() bool {
				return len(inboxBodies(t, c, user)) == 2*count
			})
			if got := inboxBodies(t, c, user); !slices.Equal(got, want) {
				t.Errorf("%s: inbox of %s = %q, want the leader's %q", c.id, user, got, want)
			}
		}
	})
}

// doStep is one key or group op of TestDoThroughFollowerMatchesLeader.
type doStep struct {
	name    string
	op      storage.Op
	wantErr error // the storage sentinel the op fails with, or nil
}

// doSteps returns a key and group conversation whose user and group names end in suffix.
func doSteps(suffix string) []doStep {
	user, peer, group := "kate"+suffix, "liam"+suffix, "team"+suffix
	bundle := &storage.KeyBundle{
		IdentityKey:           []byte("identity of " + user),
		SignedPrekey:          []byte("signed prekey of " + user),
		SignedPrekeySignature: []byte("signature of " + user),
		SignedPrekeyTimestamp: 1_700_000_123,
		HasTimestamp:          true,
	}
	create := storage.Op{Kind: storage.OpGroupCreate, User: user, GroupID: group, Name: "Team " + suffix, TimeMS: 1_700_000_000_000}
	return []doStep{
		{"upload bundle", storage.Op{Kind: storage.OpKeyUpload, User: user, Bundle: bundle,
			Prekeys: [][]byte{[]byte("pk1"), []byte("pk2"), []byte("pk3")}}, nil},
		{"fetch keys", storage.Op{Kind: storage.OpKeyFetch, User: user}, nil},
		{"upload prekey only", storage.Op{Kind: storage.OpKeyUpload, User: user, Prekeys: [][]byte{[]byte("pk4")}}, nil},
		{"fetch keys again", storage.Op{Kind: storage.OpKeyFetch, User: user}, nil},
		{"fetch keys of unknown user", storage.Op{Kind: storage.OpKeyFetch, User: "nobody" + suffix}, storage.ErrNotFound},
		{"create group", create, nil},
		{"create existing group", create, storage.ErrExists},
		{"add member", storage.Op{Kind: storage.OpGroupAdd, GroupID: group, User: peer, By: user}, nil},
		{"add member again", storage.Op{Kind: storage.OpGroupAdd, GroupID: group, User: peer, By: user}, nil},
		{"add by non-admin", storage.Op{Kind: storage.OpGroupAdd, GroupID: group, User: "mia" + suffix, By: peer}, storage.ErrNotAdmin},
		{"creator leaves", storage.Op{Kind: storage.OpGroupLeave, GroupID: group, User: user}, nil},
		{"last member leaves", storage.Op{Kind: storage.OpGroupLeave, GroupID: group, User: peer}, nil},
		{"leave deleted group", storage.Op{Kind: storage.OpGroupLeave, GroupID: group, User: peer}, storage.ErrNotFound},
	}
}

// checkSameResult compares a result of the replicated store with the result a standalone
// store gave for the same op. Nil and empty byte strings and lists count as equal, because
// the wire format does not keep the difference.
func checkSameResult(t *testing.T, label string, got, want storage.Result) {
	t.Helper()
	if got.Seq != want.Seq || got.Tag != want.Tag || got.Duplicate != want.Duplicate || got.Count != want.Count {
		t.Errorf("%s: seq=%d tag=%d duplicate=%t count=%d, want seq=%d tag=%d duplicate=%t count=%d", label,
			got.Seq, got.Tag, got.Duplicate, got.Count, want.Seq, want.Tag, want.Duplicate, want.Count)
	}
	if !bytes.Equal(got.Prekey, want.Prekey) || (got.Prekey == nil) != (want.Prekey == nil) {
		t.Errorf("%s: Prekey = %q, want %q", label, got.Prekey, want.Prekey)
	}
	if !sameBundle(got.Bundle, want.Bundle) {
		t.Errorf("%s: Bundle = %+v, want %+v", label, got.Bundle, want.Bundle)
	}
	if !sameGroup(got.Group, want.Group) {
		t.Errorf("%s: Group = %+v, want %+v", label, got.Group, want.Group)
	}
	switch {
	case (got.Err == nil) != (want.Err == nil):
		t.Errorf("%s: Err = %v, want %v", label, got.Err, want.Err)
	case got.Err != nil && got.Err.Error() != want.Err.Error():
		t.Errorf("%s: Err = %q, want %q", label, got.Err, want.Err)
	}
}

func sameBundle(a, b *storage.KeyBundle) bool {
	if a == nil || b == nil {
		return a == b
	}
	return bytes.Equal(a.IdentityKey, b.IdentityKey) && bytes.Equal(a.SignedPrekey, b.SignedPrekey) &&
		bytes.Equal(a.SignedPrekeySignature, b.SignedPrekeySignature) &&
		a.SignedPrekeyTimestamp == b.SignedPrekeyTimestamp && a.HasTimestamp == b.HasTimestamp
}

func sameGroup(a, b *storage.Group) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ID == b.ID && a.Name == b.Name && a.CreatedMS == b.CreatedMS &&
		slices.Equal(a.Admins, b.Admins) && slices.Equal(a.Members, b.Members)
}

func TestDoThroughFollowerMatchesLeader(t *testing.T) {
	cores := startCores(t, nil)
	leader := waitLeader(t, cores)
	follower := followers(cores, leader)[0]

	for _, tc := range []struct {
		role string
		core *testCore
	}{{"leader", leader}, {"follower", follower}} {
		t.Run(tc.role, func(t *testing.T) {
			// A standalone store given the same ops gives the expected results.
			oracle, err := storage.Open(storage.Options{Dir: t.TempDir(), Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("open standalone store: %v", err)
			}
			defer oracle.Close()

			for _, step := range doSteps("-" + tc.role) {
				want, wantErr := oracle.DoSync(step.op)
				if !errors.Is(wantErr, step.wantErr) || (step.wantErr == nil) != (wantErr == nil) {
					t.Fatalf("%s: standalone store returned %v, want %v; the test's steps are wrong", step.name, wantErr, step.wantErr)
				}

				got, gotErr := doSync(t, tc.core.store(), step.op)
				if step.wantErr == nil && gotErr != nil {
					t.Errorf("%s: %v", step.name, gotErr)
				}
				if step.wantErr != nil && !errors.Is(gotErr, step.wantErr) {
					t.Errorf("%s: error = %v, want one wrapping %v", step.name, gotErr, step.wantErr)
				}
				if !errors.Is(got.Err, step.wantErr) || (got.Err == nil) != (gotErr == nil) {
					t.Errorf("%s: Result.Err = %v and error = %v, want both %v", step.name, got.Err, gotErr, step.wantErr)
				}
				checkSameResult(t, step.name, got, want)
			}

			// Local reads right after done show the writes.
			user := "kate-" + tc.role
			if _, count, err := tc.core.local.KeyBundle(user); err != nil || count != 2 {
				t.Errorf("local KeyBundle(%s): %d prekeys, err %v; want 2 prekeys", user, count, err)
			}
			if _, err := tc.core.store().Group("team-" + tc.role); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("local Group after the last member left: error = %v, want ErrNotFound", err)
			}
		})
	}

	t.Run("append through Do", func(t *testing.T) {
		_, err := doSync(t, follower.store(), storage.Op{Kind: storage.OpAppend, User: "kate", Body: []byte("x")})
		if !errors.Is(err, storage.ErrInvalidRequest) {
			t.Errorf("Do(OpAppend): error = %v, want ErrInvalidRequest", err)
		}
	})

	t.Run("group creation time", func(t *testing.T) {
		before := uint64(time.Now().UnixMilli())
		res, err := doSync(t, follower.store(), storage.Op{Kind: storage.OpGroupCreate, User: "nina", GroupID: "stamped", Name: "Stamped"})
		if err != nil {
			t.Fatalf("create group with TimeMS 0: %v", err)
		}
		if res.Group == nil || res.Group.CreatedMS < before {
			t.Errorf("group created with TimeMS 0 has %+v, want CreatedMS >= %d from the clock", res.Group, before)
		}
	})
}

func TestBarrierOnFollowerWaitsForOtherCoresWrites(t *testing.T) {
	cores := startCores(t, nil)
	leader := waitLeader(t, cores)
	rest := followers(cores, leader)
	writer, lagging := rest[0], rest[1]

	// The lagging core misses the writes, then comes back and must catch up from the log.
	lagging.stopStore()
	const user, count = "omar", 150
	rec := &appendRecorder{}
	for i := range count {
		rec.submit(writer, i, plainAppend(user, fmt.Sprintf("m%d", i)))
	}
	for _, o := range rec.wait(t, count, 10*time.Second) {
		if o.err != nil {
			t.Fatalf("append %d through %s: %v", o.index, writer.id, o.err)
		}
	}
	lagging.startStore()

	committed := leader.replica.AppliedIndex()
	if n, err := lagging.local.InboxLen(user); err == nil && n == count {
		t.Logf("%s had caught up before the barrier; the barrier had nothing to wait for", lagging.id)
	}
	if err := lagging.store().Barrier(10 * time.Second); err != nil {
		t.Fatalf("Barrier on %s: %v", lagging.id, err)
	}
	if got := lagging.replica.AppliedIndex(); got < committed {
		t.Errorf("%s applied index %d after Barrier, want >= %d, the leader's before the call", lagging.id, got, committed)
	}
	bodies := inboxBodies(t, lagging, user)
	if len(bodies) != count {
		t.Fatalf("%s: inbox after Barrier has %d entries, want %d", lagging.id, len(bodies), count)
	}
	for i, body := range bodies {
		if want := fmt.Sprintf("m%d", i); body != want {
			t.Errorf("%s: entry %d = %q, want %q", lagging.id, i, body, want)
		}
	}
}

// idempotentAppend returns append i of the failover test: even ones to a user with an
// ordering gate, odd ones to a user with a dedup key.
func idempotentAppend(i int) storage.AppendRequest {
	body := fmt.Sprintf("m%d", i)
	if i%2 == 0 {
		req := plainAppend("olga", body)
		req.Sender = "olga-friend"
		// Base 1 makes the gate strict: an append that skips or repeats a position fails
		// or stores nothing.
		req.Order = &storage.OrderKey{Stream: 7, N: uint64(i/2 + 1), Base: 1}
		return req
	}
	req := plainAppend("dave", body)
	req.Dedup = &storage.DedupKey{Sender: "sender", Scope: "dave", ID: uint64(i)}
	return req
}

func TestFollowerAppendsSurviveLeaderShutdown(t *testing.T) {
	cores := startCores(t, nil)
	leader := waitLeader(t, cores)
	rest := followers(cores, leader)
	submitter := rest[0]

	// The leader first stops replying to forwarded writes, so that some wait for a reply
	// that never comes, and then its raft replica stops too.
	const total, unreachableAt, deadAt = 300, 60, 120
	rec := &appendRecorder{}
	for i := range total {
		switch i {
		case unreachableAt:
			leader.stopRemote()
		case deadAt:
			leader.killRaft()
		}
		rec.submit(submitter, i, idempotentAppend(i))
		time.Sleep(3 * time.Millisecond)
	}
	outcomes := rec.wait(t, total, 15*time.Second)
	newLeader := waitLeader(t, rest)
	t.Logf("new leader %s; %+v", newLeader.id, submitter.store().Stats())

	byUser := map[string][]appendOutcome{}
	for _, o := range outcomes {
		byUser[o.req.User] = append(byUser[o.req.User], o)
	}
	for user, list := range byUser {
		// The callbacks of one user run in submission order.
		for i := 1; i < len(list); i++ {
			if list[i].index < list[i-1].index {
				t.Errorf("%s: callback of append %d ran after that of append %d", user, list[i].index, list[i-1].index)
			}
		}
		for _, o := range list {
			if o.err != nil {
				t.Errorf("%s: append %d failed: %v", user, o.index, o.err)
				continue
			}
			if o.res.Duplicate || o.res.Seq == 0 {
				t.Errorf("%s: append %d got %+v, want the seq of its own entry", user, o.index, o.res)
			}
			if !o.visible {
				t.Errorf("%s: append %d (seq %d) was not in the local inbox when done ran", user, o.index, o.res.Seq)
			}
		}

		// Each append is in the inbox once, in submission order.
		submitted := slices.SortedFunc(slices.Values(list), func(a, b appendOutcome) int { return a.index - b.index })
		var want []string
		for _, o := range submitted {
			want = append(want, string(o.req.Body))
		}
		for _, c := range rest {
			waitFor(t, 5*time.Second, fmt.Sprintf("%s to hold %d entries of %s", c.id, len(want), user), func() bool {
				return len(inboxBodies(t, c, user)) >= len(want)
			})
			if got := inboxBodies(t, c, user); !slices.Equal(got, want) {
				t.Errorf("%s: inbox of %s = %q, want %q", c.id, user, got, want)
			}
		}
	}
	if got := submitter.store().Stats().Retries; got == 0 {
		t.Errorf("Stats().Retries = 0; want the appends in flight at the leader shutdown to be sent again")
	}
}

// silentWriter is a writer that takes forwarded writes and never replies, like the writer
// of a leader that dies with them in flight. It reports leaderID as its raft ID.
type silentWriter struct {
	leaderID string
	writes   atomic.Int64
}

func (w *silentWriter) Receive(ctx actor.Context) {
	env, ok := ctx.Message().(*irispb.Envelope)
	if !ok {
		return
	}
	switch env.Body.(type) {
	case *irispb.Envelope_StoreWrite:
		w.writes.Add(1)
	case *irispb.Envelope_ReplicaQuery:
		ctx.Respond(&irispb.Envelope{Version: 1, Body: &irispb.Envelope_ReplicaInfo{ReplicaInfo: &irispb.ReplicaInfo{RaftId: w.leaderID}}})
	}
}

func TestUnknownOutcomeRetriesOnlyIdempotentOps(t *testing.T) {
	cores := startCores(t, nil)
	leader := waitLeader(t, cores)
	follower := followers(cores, leader)[0]

	silent := &silentWriter{leaderID: leader.id}
	if _, err := follower.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return silent }), "silent-writer"); err != nil {
		t.Fatalf("spawn silent writer: %v", err)
	}
	const forwardTimeout, retryFor = 300 * time.Millisecond, 1500 * time.Millisecond
	s := New(Config{
		Local:          follower.local,
		Replica:        follower.replica,
		Batcher:        follower.batcher,
		System:         follower.system,
		Cores:          func() []string { return []string{follower.addr} },
		WriterName:     "silent-writer",
		ForwardTimeout: forwardTimeout,
		RetryFor:       retryFor,
		Logger:         testLogger(t),
	})
	defer s.Close()

	t.Run("key fetch fails at once", func(t *testing.T) {
		start := time.Now()
		_, err := doSync(t, s, storage.Op{Kind: storage.OpKeyFetch, User: "kate"})
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("key fetch with an unknown outcome: error = %v, want ErrUnavailable", err)
		}
		if got := silent.writes.Load(); got != 1 {
			t.Errorf("the key fetch was forwarded %d times, want once", got)
		}
		if got := s.Stats().Retries; got != 0 {
			t.Errorf("Stats().Retries = %d, want 0", got)
		}
		if elapsed := time.Since(start); elapsed > retryFor {
			t.Errorf("the key fetch failed after %s, want about ForwardTimeout (%s), not RetryFor", elapsed, forwardTimeout)
		}
	})

	t.Run("ordered append is retried", func(t *testing.T) {
		before := silent.writes.Load()
		req := plainAppend("olga", "x")
		req.Order = &storage.OrderKey{Stream: 1, N: 1, Base: 1}
		_, err := appendSync(t, s, req)
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("ordered append with no leader replying: error = %v, want ErrUnavailable after RetryFor", err)
		}
		if got := silent.writes.Load() - before; got < 2 {
			t.Errorf("the ordered append was forwarded %d times, want it sent again after the unknown outcome", got)
		}
		stats := s.Stats()
		if stats.Retries == 0 || stats.Failed != 1 {
			t.Errorf("Stats() = %+v, want Retries > 0 and Failed = 1", stats)
		}
	})
}

func TestIdempotentClassifiesOps(t *testing.T) {
	tests := []struct {
		name string
		op   storage.Op
		want bool
	}{
		{"plain append", storage.Op{Kind: storage.OpAppend}, false},
		{"append with dedup key", storage.Op{Kind: storage.OpAppend, Dedup: &storage.DedupKey{ID: 1}}, true},
		{"append with order key", storage.Op{Kind: storage.OpAppend, Order: &storage.OrderKey{N: 1}}, true},
		{"ack", storage.Op{Kind: storage.OpAck}, true},
		{"ack up to", storage.Op{Kind: storage.OpAckUpTo}, true},
		{"set last seen", storage.Op{Kind: storage.OpSetLastSeen}, true},
		{"dedup sweep", storage.Op{Kind: storage.OpSweepDedup}, true},
		{"key upload", storage.Op{Kind: storage.OpKeyUpload}, false},
		{"key fetch", storage.Op{Kind: storage.OpKeyFetch}, false},
		{"group create", storage.Op{Kind: storage.OpGroupCreate}, false},
		{"group add", storage.Op{Kind: storage.OpGroupAdd}, true},
		{"group leave", storage.Op{Kind: storage.OpGroupLeave}, false},
	}
	for _, tt := range tests {
		if got := idempotent(tt.op); got != tt.want {
			t.Errorf("idempotent(%s) = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestResolveDuplicate(t *testing.T) {
	local, err := storage.Open(storage.Options{Dir: t.TempDir(), Replicated: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer local.Close()

	// pat's inbox holds 700 entries with tags 1001, 1002, ..., so a search by tag must page
	// through it.
	const entries = 700
	ops := make([]storage.Op, entries)
	for i := range ops {
		ops[i] = storage.Op{Kind: storage.OpAppend, User: "pat", Tag: uint64(1001 + i), EntryKind: 0x02,
			Sender: "sender", TimeMS: 1_700_000_000_000, Body: fmt.Appendf(nil, "m%d", i)}
	}
	if _, err := local.ApplyReplicated(1, ops); err != nil {
		t.Fatalf("ApplyReplicated: %v", err)
	}
	s := &Store{cfg: Config{Local: local}}

	appendOp := func(tag uint64) storage.Op {
		return storage.Op{Kind: storage.OpAppend, User: "pat", Tag: tag}
	}
	rejected := errors.New("rejected")
	tests := []struct {
		name    string
		pending pendingOp
		result  storage.Result
		want    storage.Result
	}{
		{"first attempt's outcome known",
			pendingOp{op: appendOp(1005)},
			storage.Result{Seq: 5, Tag: 1005, Duplicate: true},
			storage.Result{Seq: 5, Tag: 1005, Duplicate: true}},
		{"dedup hit on own entry",
			pendingOp{op: appendOp(1005), unknown: true},
			storage.Result{Seq: 5, Tag: 1005, Duplicate: true},
			storage.Result{Seq: 5, Tag: 1005}},
		{"dedup hit on another entry",
			pendingOp{op: appendOp(9999), unknown: true},
			storage.Result{Seq: 5, Tag: 1005, Duplicate: true},
			storage.Result{Seq: 5, Tag: 1005, Duplicate: true}},
		{"order duplicate found on a later page",
			pendingOp{op: appendOp(1650), unknown: true},
			storage.Result{Duplicate: true},
			storage.Result{Seq: 650, Tag: 1650}},
		{"order duplicate of an entry not in the inbox",
			pendingOp{op: appendOp(9999), unknown: true},
			storage.Result{Duplicate: true},
			storage.Result{Duplicate: true}},
		{"not a duplicate",
			pendingOp{op: appendOp(1701), unknown: true},
			storage.Result{Seq: 701, Tag: 1701},
			storage.Result{Seq: 701, Tag: 1701}},
		{"group add duplicate",
			pendingOp{op: storage.Op{Kind: storage.OpGroupAdd, User: "pat", GroupID: "g"}, unknown: true},
			storage.Result{Duplicate: true},
			storage.Result{Duplicate: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.resolveDuplicate(tt.pending, tt.result); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resolveDuplicate = %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("rejected retry", func(t *testing.T) {
		r := storage.Result{Duplicate: true, Err: rejected}
		got := s.resolveDuplicate(pendingOp{op: appendOp(1005), unknown: true}, r)
		if got.Err != rejected || !got.Duplicate || got.Seq != 0 {
			t.Errorf("resolveDuplicate = %+v, want the rejected result unchanged", got)
		}
	})
}

// startLonelyCore starts a core whose raft group has two more voters that never start, so
// it never elects a leader and every write waits.
func startLonelyCore(t *testing.T) *Store {
	t.Helper()
	local, err := storage.Open(storage.Options{Dir: t.TempDir(), Replicated: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	self := freeAddr(t)
	rep, err := replica.Start(replica.Config{
		ID:                 "lonely",
		BindAddr:           self,
		Dir:                t.TempDir(),
		Store:              local,
		Bootstrap:          []replica.Peer{{ID: "lonely", Addr: self}, {ID: "gone1", Addr: freeAddr(t)}, {ID: "gone2", Addr: freeAddr(t)}},
		HeartbeatTimeout:   testHeartbeat,
		ElectionTimeout:    testElection,
		LeaderLeaseTimeout: testLease,
		SweepInterval:      -1,
		Logger:             testLogger(t).With("test_core", "lonely"),
	})
	if err != nil {
		_ = local.Close()
		t.Fatalf("start replica: %v", err)
	}
	batcher := replica.NewBatcher(rep, 0)
	system := actor.NewActorSystem()
	s := New(Config{
		Local:      local,
		Replica:    rep,
		Batcher:    batcher,
		System:     system,
		Cores:      func() []string { return nil },
		WriterName: testWriterName,
		RetryFor:   time.Minute,
		Logger:     testLogger(t),
	})
	t.Cleanup(func() {
		s.Close()
		if err := rep.Shutdown(); err != nil {
			t.Errorf("replica shutdown: %v", err)
		}
		batcher.Close()
		if err := local.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
		system.Shutdown()
	})
	return s
}

func TestCloseFailsQueuedWrites(t *testing.T) {
	s := startLonelyCore(t)

	var mu sync.Mutex
	errs := map[string]error{}
	record := func(name string) func(error) {
		return func(err error) {
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		}
	}
	for i := range 5 {
		name := fmt.Sprintf("append %d", i)
		s.Append(plainAppend("rosa", name), func(_ storage.AppendResult, err error) { record(name)(err) })
	}
	barrierErr := make(chan error, 1)
	go func() { barrierErr <- s.Barrier(time.Minute) }()
	waitFor(t, 5*time.Second, "the first batch to be sent again", func() bool { return s.Stats().Retries > 0 })

	// These wait in the queue behind the batch in flight.
	s.Do(storage.Op{Kind: storage.OpGroupCreate, User: "rosa", GroupID: "late", Name: "Late"},
		func(_ storage.Result, err error) { record("group create")(err) })
	s.Submit(storage.Op{Kind: storage.OpSetLastSeen, User: "rosa", LastSeenSec: 1}, record("set last seen"))

	start := time.Now()
	s.Close()
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Close took %s, want it to return without waiting for a leader", elapsed)
	}

	mu.Lock()
	if len(errs) != 7 {
		t.Errorf("%d of 7 writes had their callback run by the time Close returned", len(errs))
	}
	for name, err := range errs {
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s: error = %v, want ErrClosed", name, err)
		}
	}
	mu.Unlock()
	select {
	case err := <-barrierErr:
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Barrier: error = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Barrier did not return after Close")
	}

	called := false
	s.Append(plainAppend("rosa", "after close"), func(_ storage.AppendResult, err error) {
		called = true
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("Append after Close: error = %v, want ErrClosed", err)
		}
	})
	if !called {
		t.Error("Append after Close did not run its callback before returning")
	}
	s.Close() // a second Close returns at once
}

func TestBarrierFailsWhileCoreCannotApply(t *testing.T) {
	cores := startCores(t, nil)
	leader := waitLeader(t, cores)
	stuck := followers(cores, leader)[0]

	// With its local copy closed, the core's raft replica keeps following the leader but
	// applies no entry.
	if err := stuck.local.Close(); err != nil {
		t.Fatalf("close local copy of %s: %v", stuck.id, err)
	}
	if _, err := appendSync(t, leader.store(), plainAppend("pia", "m")); err != nil {
		t.Fatalf("append through the leader: %v", err)
	}
	if id, _ := stuck.replica.Leader(); id != leader.id {
		t.Fatalf("%s names leader %q, want %s", stuck.id, id, leader.id)
	}

	err := stuck.store().Barrier(3 * applyWaitTimeout)
	if err == nil {
		t.Fatalf("Barrier on a core that applies nothing returned nil; want an error, because local reads miss the writes")
	}
	t.Logf("Barrier: %v", err)

	// Writes through the lagging core are committed by the leader and reported without
	// waiting applyWaitTimeout each for a copy that does not apply them.
	start := time.Now()
	for i := range 3 {
		if _, err := appendSync(t, stuck.store(), plainAppend("pia", fmt.Sprintf("after-%d", i))); err != nil {
			t.Fatalf("append %d through the lagging core: %v", i, err)
		}
	}
	if took := time.Since(start); took > applyWaitTimeout {
		t.Errorf("3 appends through the lagging core took %s, want well under %s", took.Round(time.Millisecond), applyWaitTimeout)
	}
}

func TestDoRejectsUnknownOpKind(t *testing.T) {
	cores := startCores(t, nil)
	leader := waitLeader(t, cores)
	follower := followers(cores, leader)[0]

	for _, c := range []*testCore{leader, follower} {
		_, err := doSync(t, c.store(), storage.Op{Kind: 99, User: "quinn"})
		if !errors.Is(err, storage.ErrInvalidRequest) {
			t.Errorf("%s: Do with op kind 99: error = %v, want ErrInvalidRequest", c.id, err)
		}
	}
	// The write loop of each core keeps working.
	for _, c := range []*testCore{leader, follower} {
		if _, err := appendSync(t, c.store(), plainAppend("quinn", "after")); err != nil {
			t.Errorf("%s: append after the rejected op: %v", c.id, err)
		}
	}
}

// startSoloLeader starts a core that is the only voter of its raft group, so it leads.
func startSoloLeader(t *testing.T, retryFor time.Duration) (*Store, *replica.Replica) {
	t.Helper()
	local, err := storage.Open(storage.Options{Dir: t.TempDir(), Replicated: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}

	self := freeAddr(t)
	rep, err := replica.Start(replica.Config{
		ID:                 "solo",
		BindAddr:           self,
		Dir:                t.TempDir(),
		Store:              local,
		Bootstrap:          []replica.Peer{{ID: "solo", Addr: self}},
		HeartbeatTimeout:   testHeartbeat,
		ElectionTimeout:    testElection,
		LeaderLeaseTimeout: testLease,
		SweepInterval:      -1,
		Logger:             testLogger(t).With("test_core", "solo"),
	})
	if err != nil {
		_ = local.Close()
		t.Fatalf("start replica: %v", err)
	}

	batcher := replica.NewBatcher(rep, 0)
	system := actor.NewActorSystem()
	s := New(Config{
		Local:      local,
		Replica:    rep,
		Batcher:    batcher,
		System:     system,
		Cores:      func() []string { return nil },
		WriterName: testWriterName,
		RetryFor:   retryFor,
		Logger:     testLogger(t),
	})
	t.Cleanup(func() {
		s.Close()
		if err := rep.Shutdown(); err != nil {
			t.Errorf("replica shutdown: %v", err)
		}
		batcher.Close()
		if err := local.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
		system.Shutdown()
	})
	waitFor(t, 5*time.Second, "the solo core to lead", rep.IsLeader)
	return s, rep
}

func TestProposeLocalShutdownOutcomeUnknown(t *testing.T) {
	s, rep := startSoloLeader(t, time.Second)
	if err := rep.Shutdown(); err != nil {
		t.Fatalf("replica shutdown: %v", err)
	}

	// raft v1.7.2 returns ErrRaftShutdown also for an entry it had already sent to the
	// other voters, and even for a committed one that it had not applied yet, so a write
	// that meets a shutdown may have been applied.
	results, outcomes, _ := s.proposeLocal([]storage.Op{{Kind: storage.OpKeyFetch, User: "ruth"}})
	if outcomes[0] != outcomeUnknown {
		t.Errorf("outcome of an op proposed after the raft shutdown = %d with Err %v, want outcomeUnknown (%d)",
			outcomes[0], results[0].Err, outcomeUnknown)
	}
}

func TestWritesAfterRaftShutdownAreUnavailable(t *testing.T) {
	s, rep := startSoloLeader(t, 300*time.Millisecond)
	if _, err := appendSync(t, s, plainAppend("ruth", "before")); err != nil {
		t.Fatalf("append before the shutdown: %v", err)
	}
	if err := rep.Shutdown(); err != nil {
		t.Fatalf("replica shutdown: %v", err)
	}

	// A raft shutdown can interrupt an entry that a majority already has, so the outcome
	// of a write that meets it is unknown, never a final result of its own.
	_, err := doSync(t, s, storage.Op{Kind: storage.OpKeyFetch, User: "ruth"})
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("key fetch after the raft shutdown: error = %v, want ErrUnavailable", err)
	}
	req := plainAppend("ruth", "after")
	req.Dedup = &storage.DedupKey{Sender: "sender", Scope: "ruth", ID: 1}
	if _, err := appendSync(t, s, req); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("append with a dedup key after the raft shutdown: error = %v, want ErrUnavailable", err)
	}
}
