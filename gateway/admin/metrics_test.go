package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/iris-im/iris/actors"
)

// startWithStats starts an admin server on loopback that reports st, a
// backlog of 7 and a raft follower 3 entries behind its commit index.
func startWithStats(t *testing.T, st *actors.Stats) *Server {
	t.Helper()
	s, err := Start(Config{
		Addr:      "127.0.0.1:0",
		Stats:     st,
		Node:      "n1",
		Role:      "core",
		Logger:    slog.New(slog.DiscardHandler),
		Backlog:   func() (int64, bool) { return 7, true },
		Processes: func() int { return 42 },
		Raft: func() *RaftStatus {
			return &RaftStatus{ID: "n1", State: "Follower", Term: 4, CommitIndex: 20, AppliedIndex: 17, Lag: 3, Voters: []string{"n1", "n2", "n3"}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body
}

func TestMetricsExportLatencyActorsAndRaft(t *testing.T) {
	st := &actors.Stats{}
	st.Delivered.Add(5)
	st.DeadLetters.Add(2)
	for _, d := range []time.Duration{200 * time.Microsecond, 3 * time.Millisecond, 30 * time.Millisecond} {
		st.DeliveryLatency.Observe(d)
	}
	st.StoreWriteLatency.Observe(2 * time.Millisecond)
	s := startWithStats(t, st)

	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(get(t, "http://"+s.Addr().String()+"/metrics"))))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}

	delivery := families["iris_delivery_latency_seconds"]
	if delivery == nil {
		t.Fatal("no iris_delivery_latency_seconds histogram")
	}
	h := delivery.Metric[0].Histogram
	if h.GetSampleCount() != 3 {
		t.Errorf("delivery latency count = %d, want 3", h.GetSampleCount())
	}
	for _, b := range h.Bucket {
		if b.GetUpperBound() == 0.005 && b.GetCumulativeCount() != 2 {
			t.Errorf("delivery latency bucket le=0.005 = %d, want 2", b.GetCumulativeCount())
		}
	}
	if n := families["iris_store_write_latency_seconds"].Metric[0].Histogram.GetSampleCount(); n != 1 {
		t.Errorf("store write latency count = %d, want 1", n)
	}

	gauges := map[string]float64{
		"iris_inbox_backlog":      7,
		"iris_raft_lag_entries":   3,
		"iris_raft_applied_index": 17,
		"iris_raft_leader":        0,
		"iris_raft_voters":        3,
		"iris_actor_processes":    42,
	}
	for name, want := range gauges {
		f := families[name]
		if f == nil {
			t.Errorf("no %s", name)
			continue
		}
		if got := f.Metric[0].Gauge.GetValue(); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := families["iris_dead_letters_total"].Metric[0].Counter.GetValue(); got != 2 {
		t.Errorf("iris_dead_letters_total = %v, want 2", got)
	}
	kinds := map[string]bool{}
	for _, m := range families["iris_mailbox_depth"].GetMetric() {
		kinds[m.Label[0].GetValue()] = true
	}
	for _, kind := range []string{"session", "router", "shard", "group"} {
		if !kinds[kind] {
			t.Errorf("iris_mailbox_depth has no kind %q", kind)
		}
	}
}

func TestStatsReportLatencyBacklogAndActors(t *testing.T) {
	st := &actors.Stats{}
	for range 100 {
		st.DeliveryLatency.Observe(400 * time.Microsecond)
	}
	s := startWithStats(t, st)

	var snap Snapshot
	if err := json.Unmarshal(get(t, "http://"+s.Addr().String()+"/stats"), &snap); err != nil {
		t.Fatal(err)
	}
	d := snap.Latency["delivery"]
	if d.Count != 100 || len(d.Counts) != len(d.BoundsMS)+1 {
		t.Errorf("delivery latency: count %d, %d counts for %d bounds; want 100 and one count more than bounds", d.Count, len(d.Counts), len(d.BoundsMS))
	}
	if d.P50MS <= 0.25 || d.P50MS > 0.5 {
		t.Errorf("delivery p50 = %v ms, want within the bucket (0.25, 0.5]", d.P50MS)
	}
	if snap.InboxBacklog == nil || *snap.InboxBacklog != 7 {
		t.Errorf("inbox_backlog = %v, want 7", snap.InboxBacklog)
	}
	if snap.ActorsTotal != 42 {
		t.Errorf("actors_total = %d, want 42", snap.ActorsTotal)
	}
	if _, ok := snap.Actors["session"]; !ok {
		t.Errorf("actors = %v, want a session entry", snap.Actors)
	}
	if snap.Raft == nil || snap.Raft.Lag != 3 {
		t.Errorf("raft = %+v, want lag 3", snap.Raft)
	}
}
