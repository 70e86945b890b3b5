package admin_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/iris-im/iris/actors"
	"github.com/iris-im/iris/gateway/admin"
)

func TestStatsMemberJSON(t *testing.T) {
	age := int64(250)
	staleAge := int64(4200)
	srv, err := admin.Start(admin.Config{
		Addr:   "127.0.0.1:0",
		Stats:  &actors.Stats{},
		Node:   "edge1",
		Role:   "edge",
		Logger: slog.New(slog.DiscardHandler),
		Members: func() []admin.Member {
			return []admin.Member{
				{
					ID: "m1", Address: "127.0.0.20:7001", Kinds: []string{"shard", "group"}, Reachable: true, RecordAgeMS: &age,
					Raft: &admin.RaftStatus{ID: "core1", State: "Leader", Term: 5, Leader: "core1", LastLogIndex: 42, CommitIndex: 41, AppliedIndex: 40, Lag: 1},
				},
				{
					ID: "m2", Address: "127.0.0.21:7001", Kinds: []string{"shard", "group"}, RecordAgeMS: &staleAge,
					Raft: &admin.RaftStatus{ID: "core2", State: "Follower", Term: 5, Leader: "core1", CommitIndex: 30, AppliedIndex: 30, Lag: 11},
				},
				{ID: "m3", Address: "127.0.0.22:7001", Kinds: []string{"shard"}, Reachable: true, Self: true},
			}
		},
	})
	if err != nil {
		t.Fatalf("start admin server: %v", err)
	}
	t.Cleanup(srv.Stop)
	resp, body := get(t, newClient(t), "http://"+srv.Addr().String()+"/stats")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stats: status %d, body %s", resp.StatusCode, body)
	}

	var doc struct {
		Members []map[string]json.RawMessage `json:"members"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("decode /stats: %v", err)
	}
	if len(doc.Members) != 3 {
		t.Fatalf("/stats has %d members, want 3: %s", len(doc.Members), body)
	}
	leader, stale, plain := doc.Members[0], doc.Members[1], doc.Members[2]

	var raft map[string]any
	if err := json.Unmarshal(leader["raft"], &raft); err != nil {
		t.Fatalf("decode raft of the first member %s: %v", leader["raft"], err)
	}
	for key, want := range map[string]any{
		"id": "core1", "state": "Leader", "leader": "core1", "term": 5.0,
		"last_log_index": 42.0, "commit_index": 41.0, "applied_index": 40.0, "lag": 1.0,
	} {
		if raft[key] != want {
			t.Errorf("members[0].raft.%s = %v, want %v", key, raft[key], want)
		}
	}
	if got := string(leader["reachable"]); got != "true" {
		t.Errorf("members[0].reachable = %s, want true", got)
	}
	if got := string(leader["record_age_ms"]); got != "250" {
		t.Errorf("members[0].record_age_ms = %s, want 250", got)
	}
	if _, ok := leader["self"]; ok {
		t.Errorf("members[0] has self %s, want no self key for another member", leader["self"])
	}

	// An unreachable member keeps its key, with false, and its last raft state.
	if got := string(stale["reachable"]); got != "false" {
		t.Errorf("members[1].reachable = %q, want false", got)
	}
	if _, ok := stale["raft"]; !ok {
		t.Error("members[1] has no raft, want the last raft state of the unreachable member")
	}

	// A member without a record has neither raft state nor a record age.
	for _, key := range []string{"raft", "record_age_ms"} {
		if raw, ok := plain[key]; ok {
			t.Errorf("members[2].%s = %s, want no such key", key, raw)
		}
	}
	if got := string(plain["self"]); got != "true" {
		t.Errorf("members[2].self = %s, want true", got)
	}

	var snap admin.Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatalf("decode /stats as a Snapshot: %v", err)
	}
	if m := snap.Members[1]; m.Reachable || m.RecordAgeMS == nil || *m.RecordAgeMS != 4200 || m.Raft == nil || m.Raft.Lag != 11 {
		t.Errorf("members[1] decoded = %+v, want unreachable, record age 4200 ms and lag 11", m)
	}

	// The members gauge counts the reachable members only.
	_, metrics := get(t, newClient(t), "http://"+srv.Addr().String()+"/metrics")
	if !strings.Contains(metrics, "\niris_cluster_members 2\n") {
		t.Errorf("/metrics lacks iris_cluster_members 2 for two reachable members of three")
	}
}
