package actors

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var guardEpoch = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func TestLoginGuardBlocksAfterMaxFailures(t *testing.T) {
	g := NewLoginGuard(3, 3*time.Second) // one attempt regained per second
	now := guardEpoch

	for i := range 3 {
		if _, blocked := g.Blocked("alice", now); blocked {
			t.Fatalf("blocked before failure %d of 3", i+1)
		}
		g.Failed("alice", now)
	}

	retryAfter, blocked := g.Blocked("alice", now)
	if !blocked {
		t.Fatal("not blocked after 3 failures in a row")
	}
	if retryAfter != time.Second {
		t.Errorf("retry after %s, want 1s (window / max failures)", retryAfter)
	}

	if _, blocked := g.Blocked("alice", now.Add(999*time.Millisecond)); !blocked {
		t.Error("unblocked before the retry time")
	}
	if _, blocked := g.Blocked("alice", now.Add(time.Second)); blocked {
		t.Error("still blocked at the retry time")
	}

	// The attempt regained after a second fails too, so the account is
	// blocked again at once for another second.
	g.Failed("alice", now.Add(time.Second))
	retryAfter, blocked = g.Blocked("alice", now.Add(time.Second))
	if !blocked || retryAfter != time.Second {
		t.Errorf("after a failed retry: blocked = %v, retry after %s, want true and 1s", blocked, retryAfter)
	}
}

func TestLoginGuardSustainedRate(t *testing.T) {
	cases := []struct {
		name    string
		spacing time.Duration // time between failures
		blocked bool
	}{
		{"one per interval", time.Second, false},
		{"slower than the interval", 2 * time.Second, false},
		{"faster than the interval", 900 * time.Millisecond, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewLoginGuard(10, 10*time.Second)
			now := guardEpoch
			sawBlock := false
			for range 200 {
				if _, blocked := g.Blocked("bob", now); blocked {
					sawBlock = true
					break
				}
				g.Failed("bob", now)
				now = now.Add(tc.spacing)
			}
			if sawBlock != tc.blocked {
				t.Errorf("blocked within 200 failures = %v, want %v", sawBlock, tc.blocked)
			}
		})
	}
}

func TestLoginGuardFailuresWhileBlocked(t *testing.T) {
	g := NewLoginGuard(5, 5*time.Second)
	for range 50 {
		g.Failed("carol", guardEpoch)
	}
	retryAfter, blocked := g.Blocked("carol", guardEpoch)
	if !blocked {
		t.Fatal("not blocked after 50 failures")
	}
	if retryAfter != time.Second {
		t.Errorf("retry after %s, want 1s: failures past the max must not extend the block", retryAfter)
	}
}

func TestLoginGuardSucceededClears(t *testing.T) {
	g := NewLoginGuard(2, time.Minute)
	g.Failed("dave", guardEpoch)
	g.Failed("dave", guardEpoch)
	if _, blocked := g.Blocked("dave", guardEpoch); !blocked {
		t.Fatal("not blocked after 2 failures")
	}

	g.Succeeded("dave")
	if _, blocked := g.Blocked("dave", guardEpoch); blocked {
		t.Error("still blocked after a successful login")
	}
	if n := g.Tracked(); n != 0 {
		t.Errorf("Tracked() = %d after the only account succeeded, want 0", n)
	}
}

func TestLoginGuardAccountsIndependent(t *testing.T) {
	g := NewLoginGuard(1, time.Minute)
	g.Failed("erin", guardEpoch)
	if _, blocked := g.Blocked("erin", guardEpoch); !blocked {
		t.Fatal("erin not blocked after 1 failure with a max of 1")
	}
	if _, blocked := g.Blocked("frank", guardEpoch); blocked {
		t.Error("frank blocked by erin's failures")
	}
}

func TestLoginGuardDisabled(t *testing.T) {
	cases := []struct {
		name  string
		guard *LoginGuard
	}{
		{"nil", nil},
		{"max failures 0", NewLoginGuard(0, time.Minute)},
		{"window 0", NewLoginGuard(10, 0)},
		{"negative window", NewLoginGuard(10, -time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 {
				tc.guard.Failed("grace", guardEpoch)
			}
			if _, blocked := tc.guard.Blocked("grace", guardEpoch); blocked {
				t.Error("a disabled guard blocked an account")
			}
			tc.guard.Succeeded("grace")
			if n := tc.guard.Tracked(); n != 0 {
				t.Errorf("a disabled guard tracks %d accounts", n)
			}
		})
	}
}

func TestLoginGuardSweepsDrainedAccounts(t *testing.T) {
	g := NewLoginGuard(10, time.Minute)
	for i := range 1000 {
		g.Failed(fmt.Sprintf("user-%d", i), guardEpoch)
	}
	if n := g.Tracked(); n != 1000 {
		t.Fatalf("Tracked() = %d, want 1000", n)
	}

	// One failure drains in 6s, and sweeps run at most once per window.
	later := guardEpoch.Add(time.Minute)
	g.Failed("heidi", later)
	if n := g.Tracked(); n != 1 {
		t.Errorf("Tracked() = %d after the sweep, want only the new account", n)
	}
	if _, blocked := g.Blocked("user-1", later); blocked {
		t.Error("a swept account is blocked")
	}
}

func TestLoginGuardConcurrentFailures(t *testing.T) {
	const maxFailures = 100
	g := NewLoginGuard(maxFailures, 100*time.Second)
	now := guardEpoch

	var wg sync.WaitGroup
	for worker := range 4 {
		wg.Go(func() {
			for i := worker; i < maxFailures-1; i += 4 {
				g.Failed("ivan", now)
				g.Blocked("ivan", now)
				g.Failed(fmt.Sprintf("other-%d", i), now)
				g.Succeeded(fmt.Sprintf("other-%d", i))
			}
		})
	}
	wg.Wait()

	if _, blocked := g.Blocked("ivan", now); blocked {
		t.Fatalf("blocked after %d concurrent failures, want blocked only after %d", maxFailures-1, maxFailures)
	}
	g.Failed("ivan", now)
	if _, blocked := g.Blocked("ivan", now); !blocked {
		t.Errorf("not blocked after %d failures", maxFailures)
	}
	if n := g.Tracked(); n != 1 {
		t.Errorf("Tracked() = %d, want 1: every other account succeeded", n)
	}
}
