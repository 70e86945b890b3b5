package cluster

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	protocluster "github.com/asynkron/protoactor-go/cluster"
)

// changingRaft is a raft summary that a test advances while a member serves it.
type changingRaft struct {
	commit atomic.Uint64
	closed atomic.Bool // the member's store is closed: no raft state
}

func (r *changingRaft) summary() *RaftSummary {
	if r.closed.Load() {
		return nil
	}
	commit := r.commit.Load()
	return &RaftSummary{
		ID:           "core1",
		State:        "Follower",
		Leader:       "core2",
		Term:         4,
		LastLogIndex: commit + 1,
		CommitIndex:  commit,
		AppliedIndex: commit - min(commit, 2),
	}
}

// startRaftMember serves the record of member id of cluster "iris" on addr with the raft
// state of raft, polling seeds, as StartMember does for a core.
func startRaftMember(t testing.TB, id, addr string, seeds []string, raft *changingRaft) *seedProvider {
	t.Helper()
	p := newSeedProvider(Options{DiscoveryAddr: addr, Seeds: seeds, Raft: raft.summary, Logger: quietLogger(t), Refresh: 100 * time.Millisecond})
	p.self = memberRecord{Cluster: "iris", ID: id, Host: "127.0.0.1", Port: recordPort, Kinds: []string{ShardKind, GroupKind}}
	if err := p.serve(); err != nil {
		t.Fatalf("member %s: serve on %s: %v", id, addr, err)
	}
	t.Cleanup(func() { stopProvider(t, p) })
	return p
}

// getRecord requests the member record at addr and returns its body.
func getRecord(t *testing.T, addr string) []byte {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + memberPath)
	if err != nil {
		t.Fatalf("GET %s: %v", memberPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %s, body %q", memberPath, resp.Status, body)
	}
	return body
}

func TestServedRecordCarriesRaft(t *testing.T) {
	verifyNoLeaks(t)
	addr := freeAddr(t)
	raft := &changingRaft{}
	raft.commit.Store(10)
	startRaftMember(t, "core-a", addr, nil, raft)

	var got memberRecord
	if err := json.Unmarshal(getRecord(t, addr), &got); err != nil {
		t.Fatalf("decode record: %v", err)
	}
	want := RaftSummary{ID: "core1", State: "Follower", Leader: "core2", Term: 4, LastLogIndex: 11, CommitIndex: 10, AppliedIndex: 8}
	if got.Raft == nil {
		t.Fatal("served record has no raft state")
	}
	if *got.Raft != want {
		t.Errorf("raft = %+v, want %+v", *got.Raft, want)
	}
	if got.ID != "core-a" || got.Cluster != "iris" {
		t.Errorf("record = %+v, want member core-a of cluster iris", got)
	}

	// The summary is read per request, not once at start.
	raft.commit.Store(25)
	if err := json.Unmarshal(getRecord(t, addr), &got); err != nil {
		t.Fatalf("decode record: %v", err)
	}
	if got.Raft == nil || got.Raft.CommitIndex != 25 || got.Raft.AppliedIndex != 23 {
		t.Errorf("raft after a commit = %+v, want commit index 25 and applied index 23", got.Raft)
	}

	// A member whose store is closed sends no raft key at all.
	raft.closed.Store(true)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(getRecord(t, addr), &fields); err != nil {
		t.Fatalf("decode record: %v", err)
	}
	if raw, ok := fields["raft"]; ok {
		t.Errorf("record of a member without raft state has raft %s, want no raft key", raw)
	}
}

// oldRecord is a member record as versions before the raft summary serve it.
const oldRecord = `{"cluster":"iris","id":"core-old","host":"127.0.0.1","port":7001,"kinds":["shard","group"]}`

func TestOldRecordWithoutRaftParses(t *testing.T) {
	verifyNoLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+memberPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, oldRecord)
	})
	server := &http.Server{Handler: mux}
	served := make(chan struct{})
	go func() {
		defer close(served)
		server.Serve(ln)
	}()
	t.Cleanup(func() {
		server.Close()
		<-served
	})
	addr := ln.Addr().String()

	client := newSeedClient(t, []string{addr}, nil, nil)
	record, err := client.fetch(addr)
	if err != nil {
		t.Fatalf("fetch an old record: %v", err)
	}
	if record.Raft != nil {
		t.Errorf("old record raft = %+v, want nil", record.Raft)
	}
	if record.ID != "core-old" || record.Port != 7001 || !slices.Equal(record.Kinds, []string{ShardKind, GroupKind}) {
		t.Errorf("old record = %+v, want core-old on port 7001 with kinds shard and group", record)
	}
	if got := memberIDs(client.poll("iris")); !slices.Equal(got, []string{"core-old"}) {
		t.Errorf("members = %v, want [core-old]", got)
	}
	records := client.records(time.Now())
	if len(records) != 1 || records[0].ID != "core-old" || records[0].Raft != nil {
		t.Errorf("records = %+v, want core-old without raft state", records)
	}
}

func TestNewRecordParsesAsOld(t *testing.T) {
	verifyNoLeaks(t)
	addr := freeAddr(t)
	raft := &changingRaft{}
	raft.commit.Store(3)
	startRaftMember(t, "core-new", addr, nil, raft)

	// The fields of memberRecord before the raft summary, decoded as fetch decodes, which
	// does not reject unknown fields.
	var old struct {
		Cluster string   `json:"cluster"`
		ID      string   `json:"id"`
		Host    string   `json:"host"`
		Port    int      `json:"port"`
		Kinds   []string `json:"kinds"`
	}
	body := getRecord(t, addr)
	if err := json.Unmarshal(body, &old); err != nil {
		t.Fatalf("decode %s with the old fields: %v", body, err)
	}
	if old.Cluster != "iris" || old.ID != "core-new" || old.Port != recordPort {
		t.Errorf("old view of the record = %+v, want core-new of cluster iris on port %d", old, recordPort)
	}
}

func TestRecordsSelfFirstAndOnce(t *testing.T) {
	verifyNoLeaks(t)
	selfAddr, otherAddr := freeAddr(t), freeAddr(t)
	other := &changingRaft{}
	other.commit.Store(40)
	startRaftMember(t, "core-b", otherAddr, nil, other)
	raft := &changingRaft{}
	raft.commit.Store(7)
	// The member is its own seed, and core-b is listed under two addresses.
	otherByName := net.JoinHostPort("localhost", portOf(t, otherAddr))
	self := startRaftMember(t, "core-a", selfAddr, []string{selfAddr, otherAddr, otherByName}, raft)
	self.poll("iris")
	if len(self.latest) != 3 {
		t.Fatalf("records read from %d seeds, want 3: %v", len(self.latest), self.latest)
	}

	raft.commit.Store(9) // after the poll, so the self record must be read at the call
	records := self.records(time.Now())
	var ids []string
	for _, r := range records {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"core-a", "core-b"}) {
		t.Fatalf("record IDs = %v, want [core-a core-b]", ids)
	}
	if r := records[0]; r.Seed != selfAddr || r.Raft == nil || r.Raft.CommitIndex != 9 || r.Stale {
		t.Errorf("own record = %+v, want seed %s, commit index 9 and not stale", r, selfAddr)
	}
	if r := records[1]; r.Raft == nil || r.Raft.CommitIndex != 40 || r.Stale {
		t.Errorf("core-b record = %+v, want commit index 40 and not stale", r)
	}

	// Records returns copies: changing one leaves the provider's records as they were.
	records[1].Kinds[0] = "changed"
	records[1].Raft.CommitIndex = 0
	again := self.records(time.Now())
	if again[1].Kinds[0] != ShardKind || again[1].Raft.CommitIndex != 40 {
		t.Errorf("records after changing a returned copy = %+v, want the original kinds and commit index", again[1])
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestRecordsStaleNotHidden(t *testing.T) {
	verifyNoLeaks(t)
	a, b := freeAddr(t), freeAddr(t)
	startRaftMember(t, "core-a", a, nil, &changingRaft{})
	memberB := startRaftMember(t, "core-b", b, nil, &changingRaft{})
	client := newSeedClient(t, []string{a, b}, nil, nil)
	published := &publishedMembers{}
	client.start("iris", published.publish)

	fresh := client.records(time.Now())
	if len(fresh) != 2 || fresh[0].Stale || fresh[1].Stale {
		t.Fatalf("records after the first poll = %+v, want core-a and core-b, both fresh", fresh)
	}

	// core-b refuses connections from now on: it leaves the member list at once, but its
	// record stays and turns stale.
	stopProvider(t, memberB)
	stopped := time.Now()
	waitFor(t, 5*time.Second, "core-b to leave the member list", func() bool { return !published.has("core-b") })
	waitFor(t, 5*time.Second, "core-b's record to turn stale", func() bool {
		for _, r := range client.records(time.Now()) {
			if r.ID == "core-b" {
				return r.Stale
			}
		}
		t.Fatal("core-b's record vanished, want it kept and marked stale")
		return false
	})
	t.Logf("core-b's record turned stale %s after core-b stopped", time.Since(stopped))
	for _, r := range client.records(time.Now()) {
		if r.ID == "core-a" && r.Stale {
			t.Errorf("core-a's record is stale while core-a responds: read at %s", r.ReadAt)
		}
	}

	// Staleness starts exactly staleAfter after the last read.
	var readAt time.Time
	for _, r := range client.records(time.Now()) {
		if r.ID == "core-b" {
			readAt = r.ReadAt
		}
	}
	for _, tc := range []struct {
		at    time.Time
		stale bool
	}{
		{readAt.Add(client.staleAfter - time.Millisecond), false},
		{readAt.Add(client.staleAfter + time.Millisecond), true},
	} {
		for _, r := range client.records(tc.at) {
			if r.ID == "core-b" && r.Stale != tc.stale {
				t.Errorf("core-b stale = %v %s after its last read, want %v", r.Stale, tc.at.Sub(readAt), tc.stale)
			}
		}
	}
}

// The poller writes the records from its own goroutine while readers call Records; run
// with -race.
func TestRecordsConcurrentWithPolling(t *testing.T) {
	verifyNoLeaks(t)
	addr := freeAddr(t)
	raft := &changingRaft{}
	startRaftMember(t, "core-a", addr, nil, raft)
	client := newSeedProvider(Options{Seeds: []string{addr}, Logger: quietLogger(t), Refresh: 5 * time.Millisecond})
	t.Cleanup(func() { stopProvider(t, client) })
	client.start("iris", func(protocluster.Members) {})
	m := &Member{Cluster: &protocluster.Cluster{Config: &protocluster.Config{ClusterProvider: client}}}

	stop := make(chan struct{})
	var committer sync.WaitGroup
	committer.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				raft.commit.Add(1)
			}
		}
	})

	var readers sync.WaitGroup
	advanced := make([]bool, 4)
	for i := range advanced {
		readers.Go(func() {
			var first, last uint64
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) && !advanced[i] {
				records := m.Records()
				if len(records) != 1 || records[0].ID != "core-a" || records[0].Raft == nil {
					t.Errorf("records = %+v, want core-a with raft state", records)
					return
				}
				commit := records[0].Raft.CommitIndex
				if commit < last {
					t.Errorf("commit index went back from %d to %d", last, commit)
					return
				}
				if last == 0 {
					first = commit
				}
				last = commit
				advanced[i] = last > first
			}
		})
	}
	readers.Wait()
	close(stop)
	committer.Wait()
	for i, ok := range advanced {
		if !ok {
			t.Errorf("reader %d saw no newer commit index within 1 s of polling", i)
		}
	}
}

func TestRecordsNilWithoutSeedProvider(t *testing.T) {
	m := &Member{Cluster: &protocluster.Cluster{Config: &protocluster.Config{ClusterProvider: newLocalProvider()}}}
	if got := m.Records(); got != nil {
		t.Errorf("Records with the local provider = %+v, want nil", got)
	}
}
