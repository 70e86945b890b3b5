package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the server's /metrics.
func (s *testServer) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + s.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// metricValue returns the value of the counter or gauge name whose labels
// include labels ("key=value" each), or -1 when there is none.
func metricValue(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for _, want := range labels {
			key, value, _ := strings.Cut(want, "=")
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == key && l.GetValue() == value)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestMetricsAfterLoad(t *testing.T) {
	const count = 200
	s := startServer(t, highSendRate...)
	ctx := testCtx(t, 60*time.Second)

	bob := s.login2(t, tcp, "bob")
	alice := s.login2(t, tcp, "alice")
	seqByCID := sendAll(t, ctx, alice, "bob", count)
	last := receiveAll(t, ctx, bob, "alice", seqByCID, count)

	m := s.scrape(t)
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"iris_events_total", []string{"event=received"}, count},
		{"iris_events_total", []string{"event=appended"}, count},
		{"iris_events_total", []string{"event=delivered"}, count},
		{"iris_delivery_latency_seconds", nil, count},
		{"iris_store_write_latency_seconds", nil, count},
		{"iris_sessions", []string{"transport=tcp"}, 2},
		{"iris_actors", []string{"kind=session"}, 2},
		{"iris_actors", []string{"kind=shard"}, 1},
		{"iris_inbox_backlog", nil, count},
	} {
		if got := metricValue(m, c.name, c.labels...); got < c.min {
			t.Errorf("%s%v = %v after %d messages, want at least %v", c.name, c.labels, got, count, c.min)
		}
	}

	// The latency histogram has its buckets, and the sum of the samples is
	// positive: the deliveries were timed, not only counted.
	h := m["iris_delivery_latency_seconds"].Metric[0].Histogram
	if len(h.Bucket) < 10 || h.GetSampleSum() <= 0 {
		t.Errorf("delivery latency histogram: %d buckets, sum %v s; want buckets and a positive sum", len(h.Bucket), h.GetSampleSum())
	}

	// The cumulative ACK2 empties the inbox, and the backlog follows.
	if err := bob.Ack2(last); err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool { return metricValue(s.scrape(t), "iris_inbox_backlog") == 0 }) {
		t.Errorf("iris_inbox_backlog = %v after bob acked every message, want 0", metricValue(s.scrape(t), "iris_inbox_backlog"))
	}
}
