package loadgen

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestHistogramBucketError(t *testing.T) {
	for v := int64(0); v < 1<<40; v = v*3/2 + 1 {
		high := bucketHigh(bucketOf(v))
		if high < v {
			t.Fatalf("bucket of %d ends at %d, below the value", v, high)
		}
		if v >= subBuckets && float64(high-v) > float64(v)/subBuckets {
			t.Fatalf("bucket of %d ends at %d, more than 1/%d above", v, high, subBuckets)
		}
	}
	if i := bucketOf(math.MaxInt64); i >= histogramBuckets {
		t.Fatalf("bucket of MaxInt64 is %d, past the %d buckets", i, histogramBuckets)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 5 * time.Millisecond},
		{0.9, 9 * time.Millisecond},
		{0.99, 9900 * time.Microsecond},
		{1, 10 * time.Millisecond},
	} {
		got := h.Quantile(tc.q)
		if got < tc.want || float64(got-tc.want) > float64(tc.want)/subBuckets {
			t.Errorf("quantile %.2f = %v, want %v to 0.8%% above", tc.q, got, tc.want)
		}
	}
	if h.Max() != 10*time.Millisecond {
		t.Errorf("max = %v, want 10ms exactly", h.Max())
	}
	if h.Count() != 10000 {
		t.Errorf("count = %d, want 10000", h.Count())
	}
	if mean := h.Mean(); mean < 5000*time.Microsecond || mean > 5001*time.Microsecond {
		t.Errorf("mean = %v, want 5.0005ms", mean)
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	b.Record(-time.Second) // recorded as 0
	a.Merge(b)
	if a.Count() != 3 || a.Max() != 3*time.Millisecond || a.Quantile(0) != 0 {
		t.Fatalf("merged count %d max %v min quantile %v; want 3, 3ms, 0", a.Count(), a.Max(), a.Quantile(0))
	}
	if empty := NewHistogram().Summary(); empty.Count != 0 || empty.Max != 0 {
		t.Fatalf("empty summary = %+v, want zeros", empty)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	want := payload{sender: 7, seq: 1 << 40, sentAt: 1234567 * time.Microsecond}
	body := appendPayload(nil, 200, want)
	if len(body) != 200 {
		t.Fatalf("body is %d bytes, want 200", len(body))
	}
	got, err := parsePayload(body)
	if err != nil || got != want {
		t.Fatalf("parse = %+v, %v; want %+v", got, err, want)
	}
	if _, err := parsePayload([]byte("hello, this is not a bench message")); !errors.Is(err, errForeignPayload) {
		t.Fatalf("foreign body error = %v, want errForeignPayload", err)
	}
}

func TestBitsetCountsFirstSetOnly(t *testing.T) {
	var b bitset
	if !b.set(1) || !b.set(200) || b.set(1) {
		t.Fatal("set reported a repeat as new, or a new value as a repeat")
	}
	if b.count != 2 || !b.has(200) || b.has(2) || b.has(100000) {
		t.Fatalf("count %d, has(200) %v, has(2) %v; want 2, true, false", b.count, b.has(200), b.has(2))
	}
}

func TestCollectCountsLoss(t *testing.T) {
	for _, tc := range []struct {
		name      string
		protocol  int
		setup     func(s *steadySender)
		wantLost  uint64
		wantNoAns uint64
	}{
		{"v2 accepted not delivered", 2, func(s *steadySender) {
			s.sent = 3
			s.accepted.set(1)
			s.accepted.set(2)
			s.accepted.set(3)
			s.delivered.set(1)
			s.delivered.set(3)
		}, 1, 0},
		{"v2 rejected is not lost", 2, func(s *steadySender) {
			s.sent = 2
			s.accepted.set(1)
			s.delivered.set(1)
			s.rejected.set(2)
		}, 0, 0},
		{"v2 unanswered is not lost", 2, func(s *steadySender) {
			s.sent = 1
		}, 0, 1},
		{"v1 undelivered", 1, func(s *steadySender) {
			s.sent = 5
			s.dropped = 1
			s.delivered.set(1)
			s.delivered.set(2)
		}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &steadySender{outstanding: map[uint64]time.Duration{}, wake: make(chan struct{}, 1)}
			tc.setup(s)
			r := &steadyRun{cfg: Config{Protocol: tc.protocol}, senders: []*steadySender{s}, window: [2]time.Duration{0, time.Second}}
			st := r.collect(nil, nil)
			if st.Lost != tc.wantLost || st.Unanswered != tc.wantNoAns {
				t.Fatalf("lost %d, unanswered %d; want %d, %d", st.Lost, st.Unanswered, tc.wantLost, tc.wantNoAns)
			}
			rep := &Report{Steady: st}
			// An unanswered v2 send is not lost, but the server broke the
			// protocol, so the run fails too.
			if err := rep.Failed(); (err != nil) != (tc.wantLost > 0 || tc.wantNoAns > 0) {
				t.Fatalf("Failed() = %v with %d lost and %d unanswered", err, st.Lost, st.Unanswered)
			}
		})
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	err := Config{Addrs: []string{"nohost"}, Transport: "udp", Protocol: 3, Size: 5, Inflight: -1}.Validate()
	if err == nil {
		t.Fatal("Validate accepted an invalid configuration")
	}
	for _, want := range []string{"nohost", "udp", "protocol 3", "size 5", "inflight -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (Config{Addrs: []string{"127.0.0.1:1"}}).Validate(); err != nil {
		t.Errorf("defaults rejected: %v", err)
	}
}
