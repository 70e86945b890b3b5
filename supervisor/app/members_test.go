package app

import (
	"slices"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/iris-im/iris/cluster"
	"github.com/iris-im/iris/gateway/admin"
)

func TestJoinMembersRaftAndReachability(t *testing.T) {
	now := time.Now()
	kinds := []string{cluster.ShardKind, cluster.GroupKind}
	listed := []*protocluster.Member{
		{Id: "id-b", Host: "127.0.0.21", Port: 7001, Kinds: kinds},
		{Id: "id-a", Host: "127.0.0.20", Port: 7001, Kinds: kinds},
		{Id: "id-slow", Host: "127.0.0.22", Port: 7001, Kinds: kinds},
	}
	records := []cluster.MemberRecord{
		{ID: "id-a", Host: "127.0.0.20", Port: 7001, Kinds: kinds, ReadAt: now,
			Raft: &cluster.RaftSummary{ID: "core1", State: "Leader", Leader: "core1", Term: 3, CommitIndex: 50, AppliedIndex: 50}},
		{ID: "id-b", Host: "127.0.0.21", Port: 7001, Kinds: kinds, ReadAt: now.Add(-300 * time.Millisecond),
			Raft: &cluster.RaftSummary{ID: "core2", State: "Follower", Leader: "core1", Term: 3, CommitIndex: 48, AppliedIndex: 45}},
		// Still listed within the grace for a seed that times out, but its record is stale.
		{ID: "id-slow", Host: "127.0.0.22", Port: 7001, Kinds: kinds, ReadAt: now.Add(-3 * time.Second), Stale: true,
			Raft: &cluster.RaftSummary{ID: "core3", State: "Follower", Leader: "core1", Term: 3, CommitIndex: 40, AppliedIndex: 40}},
		// Left the list because its seed refused the connection.
		{ID: "id-gone", Host: "127.0.0.23", Port: 7001, Kinds: kinds, ReadAt: now.Add(-10 * time.Second), Stale: true,
			Raft: &cluster.RaftSummary{ID: "core4", State: "Follower", Term: 2, CommitIndex: 20, AppliedIndex: 19}},
		// Read a moment ago but not in the list yet, as between a poll and the list update.
		{ID: "id-new", Host: "127.0.0.24", Port: 7001, Kinds: kinds, ReadAt: now},
	}

	members := joinMembers(listed, records, "id-b", now)
	var addrs []string
	for _, m := range members {
		addrs = append(addrs, m.Address)
	}
	if want := []string{"127.0.0.20:7001", "127.0.0.21:7001", "127.0.0.22:7001", "127.0.0.23:7001", "127.0.0.24:7001"}; !slices.Equal(addrs, want) {
		t.Fatalf("member addresses = %v, want %v", addrs, want)
	}
	for _, tc := range []struct {
		id        string
		reachable bool
		self      bool
		raftID    string
		lag       uint64
		ageMS     int64
	}{
		{"id-a", true, false, "core1", 0, 0},
		{"id-b", true, true, "core2", 5, 300},
		{"id-slow", false, false, "core3", 10, 3000},
		{"id-gone", false, false, "core4", 31, 10000},
		{"id-new", false, false, "", 0, 0},
	} {
		i := slices.IndexFunc(members, func(m admin.Member) bool { return m.ID == tc.id })
		if i < 0 {
			t.Errorf("member %s missing", tc.id)
			continue
		}
		m := members[i]
		if m.Reachable != tc.reachable {
			t.Errorf("%s reachable = %v, want %v", tc.id, m.Reachable, tc.reachable)
		}
		if m.Self != tc.self {
			t.Errorf("%s self = %v, want %v", tc.id, m.Self, tc.self)
		}
		if m.RecordAgeMS == nil || *m.RecordAgeMS != tc.ageMS {
			t.Errorf("%s record age = %v ms, want %d", tc.id, m.RecordAgeMS, tc.ageMS)
		}
		if tc.raftID == "" {
			if m.Raft != nil {
				t.Errorf("%s raft = %+v, want none from a record without raft state", tc.id, m.Raft)
			}
			continue
		}
		if m.Raft == nil {
			t.Errorf("%s has no raft state", tc.id)
			continue
		}
		if m.Raft.ID != tc.raftID {
			t.Errorf("%s raft id = %q, want %q", tc.id, m.Raft.ID, tc.raftID)
		}
		// Lag is measured against the highest commit index among all records, 50.
		if m.Raft.Lag != tc.lag {
			t.Errorf("%s lag = %d, want %d", tc.id, m.Raft.Lag, tc.lag)
		}
	}
}

func TestJoinMembersWithoutRecords(t *testing.T) {
	listed := []*protocluster.Member{{Id: "id-a", Host: "10.0.0.1", Port: 7001, Kinds: []string{cluster.ShardKind}}}
	members := joinMembers(listed, nil, "", time.Now())
	if len(members) != 1 {
		t.Fatalf("members = %+v, want one", members)
	}
	m := members[0]
	if !m.Reachable || m.Raft != nil || m.RecordAgeMS != nil || m.Address != "10.0.0.1:7001" {
		t.Errorf("member without a record = %+v, want reachable at 10.0.0.1:7001 with no raft state or record age", m)
	}
}
