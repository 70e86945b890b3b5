package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/iris-im/iris/storage"
)

func TestReplicasConverge(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)

	results, index := mustApply(t, leader, appendOps("alice", "m", 5))
	for i, r := range results {
		if r.Seq != uint64(i+1) {
			t.Errorf("result %d has seq %d, want %d", i, r.Seq, i+1)
		}
	}
	_, index = mustApply(t, leader, appendOps("bob", "b", 3))
	waitApplied(t, nodes, index)

	want := inboxBodies(t, leader, "alice")
	if len(want) != 5 {
		t.Fatalf("leader's inbox of alice has %d entries, want 5", len(want))
	}
	for _, n := range nodes {
		if got := inboxBodies(t, n, "alice"); !slices.Equal(got, want) {
			t.Errorf("%s: alice's inbox = %q, want %q", n.id, got, want)
		}
		if got := inboxBodies(t, n, "bob"); len(got) != 3 {
			t.Errorf("%s: bob's inbox has %d entries, want 3", n.id, len(got))
		}
		if got := n.store.AppliedIndex(); got != n.replica.AppliedIndex() {
			t.Errorf("%s: store applied index %d differs from the replica's %d", n.id, got, n.replica.AppliedIndex())
		}
	}
}

func TestFollowerApplyReturnsLeader(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)

	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	_, _, err := follower.replica.Apply(appendOps("carol", "x", 1), time.Second)
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Apply on follower: error = %v, want ErrNotLeader", err)
	}
	var notLeader *NotLeaderError
	if !errors.As(err, &notLeader) {
		t.Fatalf("Apply on follower: error %v is not a *NotLeaderError", err)
	}
	if notLeader.LeaderID != leader.id || notLeader.LeaderAddr != leader.addr {
		t.Errorf("NotLeaderError names %s at %s, want %s at %s", notLeader.LeaderID, notLeader.LeaderAddr, leader.id, leader.addr)
	}
	if got := inboxBodies(t, leader, "carol"); len(got) != 0 {
		t.Errorf("leader's inbox of carol = %q after a rejected follower write, want empty", got)
	}
}

func TestStatsReportsVotersAndIndexes(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	_, index := mustApply(t, leader, appendOps("dora", "x", 1))

	stats := leader.replica.Stats()
	if stats.State != "Leader" {
		t.Errorf("State = %q, want Leader", stats.State)
	}
	if stats.Leader != leader.id || stats.LeaderAddr != leader.addr {
		t.Errorf("Leader = %s at %s, want %s at %s", stats.Leader, stats.LeaderAddr, leader.id, leader.addr)
	}
	if !slices.Equal(stats.Voters, []string{"n1", "n2", "n3"}) {
		t.Errorf("Voters = %v, want [n1 n2 n3]", stats.Voters)
	}
	if stats.Term == 0 {
		t.Error("Term = 0, want the term of the election")
	}
	if stats.AppliedIndex < index || stats.CommitIndex < index || stats.LastLogIndex < index {
		t.Errorf("indexes applied=%d commit=%d last=%d, want all >= %d", stats.AppliedIndex, stats.CommitIndex, stats.LastLogIndex, index)
	}
}

func TestWaitAppliedOnFollower(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	_, index := mustApply(t, leader, appendOps("erin", "x", 1))

	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.replica.WaitApplied(ctx, index)
		cancel()
		if err != nil {
			t.Fatalf("%s: WaitApplied(%d): %v", n.id, index, err)
		}
		if got := inboxBodies(t, n, "erin"); len(got) != 1 {
			t.Errorf("%s: erin's inbox has %d entries after WaitApplied, want 1", n.id, len(got))
		}
	}

	// An index far ahead is not reached; the context ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := nodes[0].replica.WaitApplied(ctx, index+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitApplied of a future index: error = %v, want context.DeadlineExceeded", err)
	}
}

func TestLeaderFailoverAndRejoin(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	old := waitLeader(t, nodes, 5*time.Second)
	_, index := mustApply(t, old, appendOps("frank", "before", 10))
	waitApplied(t, nodes, index)

	stoppedAt := time.Now()
	old.stop()
	survivors := slices.DeleteFunc(slices.Clone(nodes), func(n *testNode) bool { return n == old })
	leader := waitLeader(t, survivors, 2*time.Second)
	t.Logf("new leader %s elected %v after the old leader stopped", leader.id, time.Since(stoppedAt).Round(time.Millisecond))

	for _, n := range survivors {
		if got := inboxBodies(t, n, "frank"); len(got) != 10 {
			t.Errorf("%s: frank's inbox has %d entries after failover, want 10", n.id, len(got))
		}
	}
	_, index = mustApply(t, leader, appendOps("frank", "after", 5))
	waitApplied(t, survivors, index)

	// The old leader restarts on its directories and catches up with no bootstrap step.
	old.start()
	waitFor(t, 10*time.Second, "the restarted node to reach the leader's applied index", func() bool {
		return old.replica.AppliedIndex() == leader.replica.AppliedIndex()
	})
	want := inboxBodies(t, leader, "frank")
	if got := inboxBodies(t, old, "frank"); !slices.Equal(got, want) {
		t.Errorf("restarted node's inbox = %q, want %q", got, want)
	}
	if got := old.store.Stats().Appends; got != 5 {
		t.Errorf("restarted node applied %d appends, want only the 5 it missed", got)
	}
}

func TestRestartAllFromDisk(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	_, index := mustApply(t, leader, appendOps("gina", "m", 20))
	waitApplied(t, nodes, index)
	want := inboxBodies(t, leader, "gina")
	appliedBefore := leader.replica.AppliedIndex()

	for _, n := range nodes {
		n.stop()
	}
	for _, n := range nodes {
		n.start()
	}
	leader = waitLeader(t, nodes, 5*time.Second)

	for _, n := range nodes {
		if got := inboxBodies(t, n, "gina"); !slices.Equal(got, want) {
			t.Errorf("%s: inbox after restart = %q, want %q", n.id, got, want)
		}
		// Replaying the log must not apply any append a second time.
		if got := n.store.Stats().Appends; got != 0 {
			t.Errorf("%s: %d appends applied during log replay, want 0", n.id, got)
		}
		if got := n.replica.AppliedIndex(); got < appliedBefore {
			t.Errorf("%s: applied index %d after restart, want >= %d", n.id, got, appliedBefore)
		}
	}

	results, _ := mustApply(t, leader, appendOps("gina", "next", 1))
	if results[0].Seq != 21 {
		t.Errorf("first append after restart got seq %d, want 21", results[0].Seq)
	}
}

func TestSnapshotInstallsOnNewVoter(t *testing.T) {
	nodes := startCluster(t, 3, nil, func(c *Config) { c.TrailingLogs = 2 })
	leader := waitLeader(t, nodes, 5*time.Second)
	for i := range 10 {
		mustApply(t, leader, appendOps("hank", string(rune('a'+i)), 3))
	}
	if err := leader.replica.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	first, err := leader.replica.logStore.FirstIndex()
	if err != nil || first <= 2 {
		t.Fatalf("leader's first log index after the snapshot = %d (%v); want the log compacted", first, err)
	}

	fresh := newTestNode(t, "n4", nil)
	fresh.start()
	if err := leader.replica.AddVoter(fresh.id, fresh.addr); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	_, index := mustApply(t, leader, appendOps("hank", "after", 2))
	all := append(slices.Clone(nodes), fresh)
	waitApplied(t, all, index)

	want := inboxBodies(t, leader, "hank")
	if len(want) != 32 {
		t.Fatalf("leader's inbox has %d entries, want 32", len(want))
	}
	if got := inboxBodies(t, fresh, "hank"); !slices.Equal(got, want) {
		t.Errorf("new voter's inbox = %q, want %q", got, want)
	}
	// Entries before the snapshot reached the new voter only through the snapshot.
	if got := fresh.store.Stats().Appends; got != 2 {
		t.Errorf("new voter applied %d appends from log entries, want 2 (the rest from the snapshot)", got)
	}
	if got := fresh.replica.Stats().Voters; !slices.Equal(got, []string{"n1", "n2", "n3", "n4"}) {
		t.Errorf("voters seen by the new voter = %v, want [n1 n2 n3 n4]", got)
	}
}

func TestLostStoreRestoredFromLocalSnapshot(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	_, index := mustApply(t, leader, appendOps("iris", "m", 4))
	waitApplied(t, nodes, index)

	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	if err := follower.replica.Snapshot(); err != nil {
		t.Fatalf("follower Snapshot: %v", err)
	}
	follower.stop()
	if err := os.RemoveAll(follower.storeDir); err != nil {
		t.Fatal(err)
	}
	follower.start()

	if got := follower.replica.AppliedIndex(); got < index {
		t.Errorf("applied index right after start = %d, want >= %d from the local snapshot", got, index)
	}
	if got := inboxBodies(t, follower, "iris"); len(got) != 4 {
		t.Errorf("inbox after restoring the local snapshot has %d entries, want 4", len(got))
	}
}

func TestRemoveServerShrinksGroup(t *testing.T) {
	nodes := startCluster(t, 3, nil, nil)
	leader := waitLeader(t, nodes, 5*time.Second)
	var removed *testNode
	for _, n := range nodes {
		if n != leader {
			removed = n
			break
		}
	}
	if err := leader.replica.RemoveServer(removed.id); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	voters := leader.replica.Stats().Voters
	if slices.Contains(voters, removed.id) || len(voters) != 2 {
		t.Errorf("voters after removing %s = %v", removed.id, voters)
	}
	if err := removed.replica.RemoveServer(leader.id); !errors.Is(err, ErrNotLeader) {
		t.Errorf("RemoveServer on a non-leader: error = %v, want ErrNotLeader", err)
	}
}

func TestApplyAfterShutdownFails(t *testing.T) {
	nodes := startCluster(t, 1, nil, nil)
	r := nodes[0].replica
	if err := r.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, _, err := r.Apply(appendOps("jack", "x", 1), time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Apply after Shutdown: error = %v, want ErrShutdown", err)
	}
	if err := r.WaitApplied(context.Background(), 1<<40); !errors.Is(err, ErrShutdown) {
		t.Errorf("WaitApplied after Shutdown: error = %v, want ErrShutdown", err)
	}
	if err := r.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestStartValidatesConfig(t *testing.T) {
	store, err := storage.Open(storage.Options{Dir: t.TempDir(), Replicated: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	valid := Config{ID: "n1", BindAddr: "127.0.0.1:0", Dir: t.TempDir(), Store: store}
	tests := []struct {
		name   string
		modify func(*Config)
	}{
		{"missing ID", func(c *Config) { c.ID = "" }},
		{"missing BindAddr", func(c *Config) { c.BindAddr = "" }},
		{"missing Dir", func(c *Config) { c.Dir = "" }},
		{"missing Store", func(c *Config) { c.Store = nil }},
		{"bootstrap peer without address", func(c *Config) { c.Bootstrap = []Peer{{ID: "n1"}} }},
		{"unspecified listen address", func(c *Config) { c.BindAddr = "0.0.0.0:0" }},
		{"lease longer than heartbeat", func(c *Config) {
			c.HeartbeatTimeout = 100 * time.Millisecond
			c.LeaderLeaseTimeout = time.Second
			c.Bootstrap = []Peer{{ID: "n1", Addr: "127.0.0.1:1"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			cfg.Dir = t.TempDir()
			tt.modify(&cfg)
			r, err := Start(cfg)
			if err == nil {
				_ = r.Shutdown()
				t.Fatal("Start succeeded, want an error")
			}
		})
	}
}

// A leader of a busy group expires more dedup records per interval than one sweep deletes
// (4096), so it proposes sweeps until one reports that none is left.
func TestLeaderSweepsUntilNoneLeft(t *testing.T) {
	nodes := startCluster(t, 1, nil, func(c *Config) { c.SweepInterval = -1 })
	leader := waitLeader(t, nodes, 5*time.Second)

	var ops []storage.Op
	for i := range 2*4096 + 10 {
		op := appendOps(fmt.Sprintf("u%d", i%10), "m", 1)[0]
		op.Dedup = &storage.DedupKey{Sender: "bob", Scope: op.User, ID: uint64(i)}
		op.DedupUntilMS = op.TimeMS + 1000 // long expired by the sweep's clock
		ops = append(ops, op)
	}
	for chunk := range slices.Chunk(ops, 1000) {
		mustApply(t, leader, chunk)
	}

	leader.replica.sweep(5 * time.Second)
	results, _ := mustApply(t, leader, []storage.Op{{Kind: storage.OpSweepDedup, TimeMS: uint64(time.Now().UnixMilli())}})
	if results[0].More {
		t.Errorf("expired dedup records were left after the leader's sweep")
	}
}
