package actors

import (
	"testing"
	"time"
)

func TestBucketRejectsPastBurst(t *testing.T) {
	l := NewRateLimiter(10, 5)
	b := l.Acquire("alice")
	for i := range 5 {
		if _, ok := b.Take(1); !ok {
			t.Fatalf("take %d of a burst of 5 refused", i+1)
		}
	}
	wait, ok := b.Take(1)
	if ok {
		t.Fatal("take past the burst allowed")
	}
	if wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("wait = %v, want about one token at 10/s (<= 100ms)", wait)
	}
}

func TestBucketSurvivesReconnect(t *testing.T) {
	l := NewRateLimiter(1, 3)
	b := l.Acquire("alice")
	for range 3 {
		b.Take(1)
	}
	l.Release("alice")

	again := l.Acquire("alice")
	if _, ok := again.Take(1); ok {
		t.Fatal("a new session started with a full bucket right after the last one closed")
	}
}

func TestSweepDropsOnlyRefilledIdleBuckets(t *testing.T) {
	l := NewRateLimiter(1000, 1) // refills in 1 ms
	l.Acquire("gone")
	l.Release("gone")
	l.Acquire("online")
	time.Sleep(5 * time.Millisecond)

	l.mu.Lock()
	l.sweep()
	_, goneKept := l.buckets["gone"]
	_, onlineKept := l.buckets["online"]
	l.mu.Unlock()
	if goneKept {
		t.Error("sweep kept the refilled bucket of a user without sessions")
	}
	if !onlineKept {
		t.Error("sweep dropped the bucket of a user with a session")
	}
}

func TestZeroRateDisablesLimit(t *testing.T) {
	l := NewRateLimiter(0, 0)
	b := l.Acquire("alice")
	for range 1000 {
		if _, ok := b.Take(1); !ok {
			t.Fatal("a zero rate limited a send")
		}
	}
	l.Release("alice")
	l.mu.Lock()
	l.sweep()
	l.mu.Unlock()
}
