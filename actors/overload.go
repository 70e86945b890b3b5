package actors

import (
	"fmt"
	"log/slog"
	"math"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Shedding levels that Overload.Level returns. Each level sheds everything
// the levels below it shed.
const (
	// LevelNormal sheds nothing.
	LevelNormal = 0
	// LevelShedTyping drops typing notifications.
	LevelShedTyping = 1
	// LevelShedPresence also rejects presence queries.
	LevelShedPresence = 2
	// LevelShedReceipts also drops read receipts.
	LevelShedReceipts = 3
)

// schedLatencyMetric is the runtime/metrics histogram of how long runnable
// goroutines waited for a CPU (available since Go 1.17).
const schedLatencyMetric = "/sched/latencies:seconds"

// overloadFallSamples is how many consecutive samples must measure a lower
// level before the level falls by one. Rising is immediate. The delay keeps
// shedding from switching on and off at every sample under a load near a
// threshold.
const overloadFallSamples = 4

// Overload measures how busy the Go scheduler is and turns it into a
// shedding level from 0 to 3, so that sessions drop optional traffic before
// the node falls behind on messages. Level 1 sheds typing notifications,
// level 2 also presence queries, level 3 also read receipts. Message
// delivery is never shed: no level includes messages, their
// acknowledgements or inbox deliveries.
//
// A goroutine reads the runtime's scheduling latency histogram every
// interval and takes the 99th percentile of the latencies recorded since
// the previous read. The level is the number of thresholds that percentile
// reaches. The level rises as soon as a sample measures a higher one, and
// falls by one level after overloadFallSamples lower samples in a row.
// Scheduling latency reflects CPU saturation of the whole process, which is
// what shedding can relieve, and unlike mailbox lengths it needs no
// cooperation from each actor.
//
// In Go 1.26 each bucket of the runtime's histogram spans 14% to 25% of its
// lower bound. The percentile is interpolated linearly within its bucket,
// so it is an estimate that can be off by up to that much.
//
// A nil *Overload reports level 0. All methods are safe for concurrent use.
type Overload struct {
	// Logger receives a line at every change of the measured level. Nil
	// disables logging. Set it before Start.
	Logger *slog.Logger

	thresholds [3]time.Duration
	interval   time.Duration

	measured atomic.Int32 // level from the last sample
	forced   atomic.Int32 // level set by Force, or -1
	latency  atomic.Int64 // p99 of the last sample, in nanoseconds
	samples  atomic.Uint64

	mu   sync.Mutex // guards stop and done, so Start and Stop can race
	stop chan struct{}
	done chan struct{}
}

// NewOverload returns a monitor that samples every interval and reaches
// level i+1 when the 99th percentile scheduling latency is at least
// thresholds[i]. It panics unless interval is positive and the thresholds
// are positive and strictly increasing, which config validation ensures.
func NewOverload(thresholds [3]time.Duration, interval time.Duration) *Overload {
	if interval <= 0 {
		panic(fmt.Sprintf("actors: overload interval must be positive, got %s", interval))
	}
	if thresholds[0] <= 0 || thresholds[1] <= thresholds[0] || thresholds[2] <= thresholds[1] {
		panic(fmt.Sprintf("actors: overload thresholds must be positive and increasing, got %v", thresholds))
	}
	o := &Overload{thresholds: thresholds, interval: interval}
	o.forced.Store(-1)
	return o
}

// Start starts the sampling goroutine. It does nothing when the goroutine
// is already running. A stopped monitor can be started again.
func (o *Overload) Start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stop != nil {
		return
	}
	o.stop = make(chan struct{})
	o.done = make(chan struct{})
	go o.run(o.stop, o.done)
}

// Stop stops the sampling goroutine and waits for it to end. The level stays
// at its last value.
func (o *Overload) Stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stop == nil {
		return
	}
	close(o.stop)
	<-o.done
	o.stop, o.done = nil, nil
}

// Level returns the current shedding level, from LevelNormal to
// LevelShedReceipts: the forced level if one is set, otherwise the measured
// one. It reads one atomic value per source and takes no lock.
func (o *Overload) Level() int {
	if o == nil {
		return LevelNormal
	}
	if forced := o.forced.Load(); forced >= 0 {
		return int(forced)
	}
	return int(o.measured.Load())
}

// Latency returns the 99th percentile scheduling latency of the last
// sample, or 0 before the first one.
func (o *Overload) Latency() time.Duration {
	if o == nil {
		return 0
	}
	return time.Duration(o.latency.Load())
}

// Force makes Level return level until Force(-1) restores the measured
// level. It is meant for tests and for operators to exercise shedding, and
// panics when level is outside -1 to 3.
func (o *Overload) Force(level int) {
	if level < -1 || level > LevelShedReceipts {
		panic(fmt.Sprintf("actors: forced overload level must be -1 to %d, got %d", LevelShedReceipts, level))
	}
	o.forced.Store(int32(level))
}

// run samples the scheduling latency until stop is closed.
func (o *Overload) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)

	sample := []metrics.Sample{{Name: schedLatencyMetric}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		// NOTE: without the metric the level stays at 0 and nothing is shed.
		if o.Logger != nil {
			o.Logger.Error("overload monitor disabled: the runtime does not provide the metric",
				slog.String("metric", schedLatencyMetric))
		}
		return
	}
	// Read may reuse the Counts slice, so the previous counts are a copy.
	previous := append([]uint64(nil), sample[0].Value.Float64Histogram().Counts...)

	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	below := 0 // consecutive samples that measured a level below the current one
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}

		metrics.Read(sample)
		histogram := sample[0].Value.Float64Histogram()
		p99 := deltaQuantile(previous, histogram.Counts, histogram.Buckets, 0.99)
		previous = append(previous[:0], histogram.Counts...)

		current := int(o.measured.Load())
		next := nextLevel(current, levelFor(p99, o.thresholds), &below)
		o.latency.Store(int64(p99))
		o.measured.Store(int32(next))
		o.samples.Add(1)
		if next != current {
			o.logChange(current, next, p99)
		}
	}
}

// nextLevel returns the level after a sample that measured level measured.
// below counts the consecutive samples that measured less than current.
func nextLevel(current, measured int, below *int) int {
	if measured >= current {
		*below = 0
		return measured
	}
	*below++
	if *below < overloadFallSamples {
		return current
	}
	*below = 0
	return current - 1
}

// levelFor returns the number of thresholds that p99 reaches.
func levelFor(p99 time.Duration, thresholds [3]time.Duration) int {
	level := LevelNormal
	for _, threshold := range thresholds {
		if p99 >= threshold {
			level++
		}
	}
	return level
}

// deltaQuantile returns the q quantile of the values recorded between two
// reads of a cumulative histogram of seconds. Within the bucket that
// contains the quantile, it interpolates linearly between the bucket's
// bounds, or takes the finite bound when the other is infinite. It returns
// 0 when nothing was recorded.
func deltaQuantile(previous, current []uint64, buckets []float64, q float64) time.Duration {
	var total uint64
	for i, count := range current {
		total += count - countAt(previous, i)
	}
	if total == 0 {
		return 0
	}

	// rank is the 1-based position of the quantile among the recorded values.
	rank := max(uint64(math.Ceil(q*float64(total))), 1)
	var seen uint64
	for i, count := range current {
		inBucket := count - countAt(previous, i)
		if seen+inBucket < rank {
			seen += inBucket
			continue
		}

		low, high := buckets[i], buckets[i+1]
		var seconds float64
		switch {
		case math.IsInf(high, 1):
			seconds = low
		case math.IsInf(low, -1):
			seconds = high
		default:
			fraction := float64(rank-seen) / float64(inBucket)
			seconds = low + (high-low)*fraction
		}
		if seconds <= 0 || math.IsInf(seconds, 0) {
			return 0
		}
		return time.Duration(seconds * float64(time.Second))
	}
	return 0
}

// countAt returns counts[i], or 0 past the end of counts.
func countAt(counts []uint64, i int) uint64 {
	if i < len(counts) {
		return counts[i]
	}
	return 0
}

func (o *Overload) logChange(from, to int, p99 time.Duration) {
	if o.Logger == nil {
		return
	}
	attrs := []any{
		slog.Int("from", from), slog.Int("to", to),
		slog.Duration("p99_sched_latency", p99), slog.String("shedding", sheddingNames[to]),
	}
	if to > from {
		o.Logger.Warn("overload level rose", attrs...)
	} else {
		o.Logger.Info("overload level fell", attrs...)
	}
}

// sheddingNames describes what each level sheds, for log lines.
var sheddingNames = [...]string{
	LevelNormal:       "nothing",
	LevelShedTyping:   "typing",
	LevelShedPresence: "typing, presence queries",
	LevelShedReceipts: "typing, presence queries, read receipts",
}
