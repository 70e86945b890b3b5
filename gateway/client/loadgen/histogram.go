package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// subBuckets is the number of linear buckets per power of two. With 128 of
// them a recorded value is off by less than 1/128 (0.8%) of itself.
const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits
	// histogramBuckets covers every non-negative int64: values below
	// subBuckets have a bucket each, and each of the 57 higher powers of two
	// has subBuckets buckets.
	histogramBuckets = (64 - subBucketBits) * subBuckets
)

// Histogram counts durations in log-linear buckets, in the manner of an HDR
// histogram: exact below 128 ns, and within 0.8% above. It takes a fixed
// 58 KiB, so a recording never allocates. The zero value is not usable; call
// NewHistogram. A Histogram is not safe for concurrent use, so each
// goroutine records into its own and Merge combines them.
type Histogram struct {
	counts []uint64
	total  uint64
	sum    float64 // nanoseconds, for the mean
	min    int64
	max    int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, histogramBuckets), min: math.MaxInt64}
}

// bucketOf returns the bucket index of v, which must not be negative.
func bucketOf(v int64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBucketBits - 1
	top := int(v >> shift) // in [subBuckets, 2*subBuckets)
	return (shift+1)*subBuckets + top - subBuckets
}

// bucketHigh returns the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	shift := i/subBuckets - 1
	top := int64(i%subBuckets + subBuckets)
	return (top+1)<<shift - 1
}

// Record adds one duration. A negative duration, which a clock step can
// produce, is recorded as 0.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)]++
	h.total++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded duration, exactly, or 0 when empty.
func (h *Histogram) Max() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.max)
}

// Mean returns the average recorded duration, or 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the duration at or below which a fraction q (0 to 1) of
// the recordings fall. It returns the upper edge of the bucket that holds
// that recording, capped by the exact maximum, so it never understates.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)

	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}

// Merge adds every recording of other to h.
func (h *Histogram) Merge(other *Histogram) {
	if other.total == 0 {
		return
	}
	for i, c := range other.counts {
		h.counts[i] += c
	}
	h.total += other.total
	h.sum += other.sum
	h.min = min(h.min, other.min)
	h.max = max(h.max, other.max)
}

// Percentiles is a latency summary in milliseconds.
type Percentiles struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary returns the standard percentiles of h.
func (h *Histogram) Summary() Percentiles {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Percentiles{
		Count: h.total,
		Mean:  ms(h.Mean()),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}
