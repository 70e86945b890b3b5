package actors

import (
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var testThresholds = [3]time.Duration{10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond}

func TestOverloadLevelFor(t *testing.T) {
	cases := []struct {
		p99  time.Duration
		want int
	}{
		{0, LevelNormal},
		{9 * time.Millisecond, LevelNormal},
		{10 * time.Millisecond, LevelShedTyping},
		{24 * time.Millisecond, LevelShedTyping},
		{25 * time.Millisecond, LevelShedPresence},
		{50 * time.Millisecond, LevelShedReceipts},
		{time.Second, LevelShedReceipts},
	}
	for _, tc := range cases {
		if got := levelFor(tc.p99, testThresholds); got != tc.want {
			t.Errorf("levelFor(%s) = %d, want %d", tc.p99, got, tc.want)
		}
	}
}

func TestOverloadDeltaQuantile(t *testing.T) {
	ms := func(n float64) float64 { return n / 1000 }
	buckets := []float64{math.Inf(-1), 0, ms(1), ms(2), ms(4), math.Inf(1)}
	cases := []struct {
		name     string
		previous []uint64
		current  []uint64
		want     time.Duration
	}{
		{"nothing recorded", []uint64{0, 5, 5, 5, 5}, []uint64{0, 5, 5, 5, 5}, 0},
		{"all in one bucket", nil, []uint64{0, 0, 100, 0, 0}, 1990 * time.Microsecond},
		{"tail decides", nil, []uint64{0, 98, 0, 2, 0}, 3 * time.Millisecond},
		{"p99 below a 1% tail", nil, []uint64{0, 99, 0, 0, 1}, time.Millisecond},
		{"unbounded bucket gives its lower bound", nil, []uint64{0, 0, 0, 0, 7}, 4 * time.Millisecond},
		{"only the delta counts", []uint64{0, 1000, 0, 0, 0}, []uint64{0, 1000, 0, 10, 0}, 4 * time.Millisecond},
		{"negative bucket gives 0", nil, []uint64{3, 0, 0, 0, 0}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := deltaQuantile(tc.previous, tc.current, buckets, 0.99)
			if diff := got - tc.want; diff < -time.Microsecond || diff > time.Microsecond {
				t.Errorf("p99 = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestOverloadNextLevel(t *testing.T) {
	below := 0
	steps := []struct {
		measured int
		want     int
	}{
		{3, 3}, // rises at once
		{0, 3},
		{0, 3},
		{0, 3},
		{0, 2}, // falls one level after overloadFallSamples lower samples
		{0, 2},
		{2, 2}, // a sample at the current level restarts the count
		{1, 2},
		{1, 2},
		{1, 2},
		{1, 1},
		{2, 2},
	}
	level := 0
	for i, step := range steps {
		level = nextLevel(level, step.measured, &below)
		if level != step.want {
			t.Fatalf("sample %d measured %d: level = %d, want %d", i, step.measured, level, step.want)
		}
	}
}

func TestOverloadForce(t *testing.T) {
	o := NewOverload(testThresholds, time.Hour)
	if got := o.Level(); got != LevelNormal {
		t.Fatalf("initial level = %d, want 0", got)
	}

	o.measured.Store(1)
	for _, level := range []int{LevelShedReceipts, LevelNormal, LevelShedPresence} {
		o.Force(level)
		if got := o.Level(); got != level {
			t.Errorf("after Force(%d), Level() = %d", level, got)
		}
	}
	o.Force(-1)
	if got := o.Level(); got != 1 {
		t.Errorf("after Force(-1), Level() = %d, want the measured 1", got)
	}

	for _, bad := range []int{-2, 4} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Force(%d) did not panic", bad)
				}
			}()
			o.Force(bad)
		}()
	}
}

func TestOverloadNilReportsNormal(t *testing.T) {
	var o *Overload
	if got := o.Level(); got != LevelNormal {
		t.Errorf("nil Level() = %d, want 0", got)
	}
	if got := o.Latency(); got != 0 {
		t.Errorf("nil Latency() = %s, want 0", got)
	}
}

func TestNewOverloadRejectsBadSettings(t *testing.T) {
	cases := []struct {
		name       string
		thresholds [3]time.Duration
		interval   time.Duration
	}{
		{"zero interval", testThresholds, 0},
		{"zero threshold", [3]time.Duration{0, 2, 3}, time.Second},
		{"equal thresholds", [3]time.Duration{1, 1, 3}, time.Second},
		{"decreasing thresholds", [3]time.Duration{1, 3, 2}, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewOverload did not panic")
				}
			}()
			NewOverload(tc.thresholds, tc.interval)
		})
	}
}

func TestSchedLatencyMetricExists(t *testing.T) {
	sample := []metrics.Sample{{Name: schedLatencyMetric}}
	metrics.Read(sample)
	if kind := sample[0].Value.Kind(); kind != metrics.KindFloat64Histogram {
		t.Fatalf("%s has kind %d, want a float64 histogram", schedLatencyMetric, kind)
	}
}

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// busyScheduler keeps more runnable goroutines than CPUs until stop is
// closed, so the scheduler records waits.
func busyScheduler(stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		})
	}
	return &wg
}

func TestOverloadMeasuresSchedulerLatency(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	// Thresholds of a few nanoseconds: any recorded wait reaches them.
	o := NewOverload([3]time.Duration{1, 2, 3}, 5*time.Millisecond)
	o.Start()
	stop := make(chan struct{})
	busy := busyScheduler(stop)

	waitUntil(t, 10*time.Second, "level 3 under load", func() bool { return o.Level() == LevelShedReceipts })
	// The level holds for a few samples after the latency drops, so the
	// latency is checked on its own.
	waitUntil(t, 10*time.Second, "a p99 of at least 3ns", func() bool { return o.Latency() >= 3 })

	close(stop)
	busy.Wait()
	o.Stop()
}

func TestOverloadStaysNormalBelowThresholds(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	o := NewOverload([3]time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour}, 2*time.Millisecond)
	o.Start()
	stop := make(chan struct{})
	busy := busyScheduler(stop)

	waitUntil(t, 10*time.Second, "5 samples", func() bool { return o.samples.Load() >= 5 })
	if got := o.Level(); got != LevelNormal {
		t.Errorf("Level() = %d with thresholds of hours, want 0", got)
	}

	close(stop)
	busy.Wait()
	o.Stop()
}

func TestOverloadStartStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	o := NewOverload(testThresholds, time.Millisecond)
	o.Stop() // before Start: no effect

	o.Start()
	o.Start() // already running: no second goroutine
	waitUntil(t, 5*time.Second, "a sample", func() bool { return o.samples.Load() >= 1 })
	o.Stop()
	o.Stop()

	counted := o.samples.Load()
	o.Start()
	waitUntil(t, 5*time.Second, "a sample after restart", func() bool { return o.samples.Load() > counted })
	o.Stop()
}

func TestOverloadConcurrentReaders(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	o := NewOverload(testThresholds, time.Millisecond)
	o.Start()
	defer o.Stop()

	var wg sync.WaitGroup
	for reader := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				if reader == 0 && i%100 == 0 {
					o.Force(i / 100 % 4)
				}
				if level := o.Level(); level < LevelNormal || level > LevelShedReceipts {
					t.Errorf("Level() = %d, outside 0 to 3", level)
					return
				}
				_ = o.Latency()
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			o.Stop()
			o.Start()
		}
	})
	wg.Wait()
	o.Force(-1)
}
