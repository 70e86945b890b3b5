package actors

import (
	"sync"
	"time"
)

// RateLimiter hands out one token bucket per user, shared by all of that
// user's sessions on this node. A bucket outlives the user's last session
// until it has refilled, so reconnecting does not reset the limit.
//
// NOTE: a user connected to several edges gets one bucket per edge.
type RateLimiter struct {
	rate  float64 // tokens added per second
	burst int     // bucket capacity

	mu       sync.Mutex
	buckets  map[string]*Bucket
	acquires int // Acquire calls since the last sweep
}

// sweepEvery is how many Acquire calls pass between sweeps of idle buckets.
const sweepEvery = 1024

// NewRateLimiter returns a limiter that allows rate sends per second per
// user with bursts of up to burst. A rate of 0 disables limiting.
func NewRateLimiter(rate float64, burst int) *RateLimiter {
	if rate <= 0 {
		rate, burst = 0, 0
	}
	return &RateLimiter{rate: rate, burst: burst, buckets: make(map[string]*Bucket)}
}

// Burst returns the bucket capacity.
func (l *RateLimiter) Burst() int { return l.burst }

// Acquire returns the user's bucket and counts one more session using it.
func (l *RateLimiter) Acquire(user string) *Bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[user]
	if b == nil {
		b = &Bucket{rate: l.rate, burst: float64(l.burst), tokens: float64(l.burst), last: time.Now()}
		l.buckets[user] = b
	}
	b.refs++

	l.acquires++
	if l.acquires >= sweepEvery {
		l.acquires = 0
		l.sweep()
	}
	return b
}

// sweep drops the buckets of users without sessions that have refilled,
// since a new bucket would start the same. The caller holds l.mu.
func (l *RateLimiter) sweep() {
	var refill time.Duration
	if l.rate > 0 {
		refill = time.Duration(float64(l.burst) / l.rate * float64(time.Second))
	}
	now := time.Now()
	for user, b := range l.buckets {
		b.mu.Lock()
		idle := now.Sub(b.last)
		b.mu.Unlock()
		if b.refs <= 0 && idle >= refill {
			delete(l.buckets, user)
		}
	}
}

// Release counts one session less on the user's bucket.
func (l *RateLimiter) Release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[user]; b != nil {
		b.refs--
	}
}

// Bucket is one user's token bucket.
type Bucket struct {
	rate, burst float64
	refs        int // guarded by the limiter's mutex

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// Take removes n tokens if the bucket has them. Otherwise it removes none
// and returns how long until n tokens are available.
func (b *Bucket) Take(n int) (wait time.Duration, ok bool) {
	if b.rate <= 0 {
		return 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()

	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= float64(n) {
		b.tokens -= float64(n)
		return 0, true
	}
	missing := float64(n) - b.tokens
	return time.Duration(missing / b.rate * float64(time.Second)), false
}
