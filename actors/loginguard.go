package actors

import (
	"sync"
	"time"
)

// LoginGuard limits failed logins per account, so that guessing an
// account's token costs time.
//
// Each account has a leaky bucket in the form of the generic cell rate
// algorithm (GCRA). A failure adds window/maxFailures of debt, and debt
// drains in real time. An account is blocked once its debt would exceed the
// window, which happens after maxFailures failures in quick succession.
// After that, it regains one attempt every window/maxFailures (6s with 10
// failures per minute), so the sustained rate is maxFailures per window. A
// fixed window, the simpler design, would allow twice maxFailures around a
// window boundary.
//
// A successful login clears the account's debt. Accounts whose debt has
// drained, at most window after their last failure, are swept, so memory
// grows with the accounts that failed within the last window.
//
// NOTE: nothing caps the number of accounts tracked, so a client that fails
// logins for many distinct user names grows the map until they drain. The
// per-IP connection limit bounds how fast one address can do that.
//
// A nil *LoginGuard, or one with maxFailures or window of 0, blocks nothing.
// LoginGuard is safe for concurrent use.
type LoginGuard struct {
	maxFailures int
	window      time.Duration
	interval    time.Duration // window / maxFailures: debt added by one failure

	mu        sync.Mutex
	accounts  map[string]time.Time // when each account's debt drains to zero
	lastSweep time.Time
}

// NewLoginGuard returns a guard that allows maxFailures failed logins per
// account in quick succession and maxFailures per window on average. A
// maxFailures or window of 0 or less disables it.
func NewLoginGuard(maxFailures int, window time.Duration) *LoginGuard {
	g := &LoginGuard{accounts: make(map[string]time.Time)}
	if maxFailures <= 0 || window <= 0 {
		return g
	}
	g.maxFailures = maxFailures
	g.window = window
	g.interval = max(window/time.Duration(maxFailures), time.Nanosecond)
	return g
}

// Blocked reports whether a login attempt for user must be rejected at now
// without checking its credentials, and if so, how long until the next
// attempt is allowed.
func (g *LoginGuard) Blocked(user string, now time.Time) (retryAfter time.Duration, blocked bool) {
	if !g.enabled() {
		return 0, false
	}
	g.mu.Lock()
	drained, found := g.accounts[user]
	g.mu.Unlock()
	if !found {
		return 0, false
	}

	// One more failure would move the drain time to drained+interval, which
	// is allowed only while it stays within window of now.
	wait := drained.Add(g.interval).Sub(now) - g.window
	if wait <= 0 {
		return 0, false
	}
	return wait, true
}

// Failed records a failed login for user at now.
func (g *LoginGuard) Failed(user string, now time.Time) {
	if !g.enabled() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()

	if now.Sub(g.lastSweep) >= g.window {
		g.sweep(now)
	}

	drained, found := g.accounts[user]
	if !found || drained.Before(now) {
		drained = now
	}
	// Debt is capped at one window, so failures recorded while blocked (for
	// example by logins already in flight) do not extend the block further.
	drained = drained.Add(g.interval)
	if limit := now.Add(g.window); drained.After(limit) {
		drained = limit
	}
	g.accounts[user] = drained
}

// Succeeded clears the failures recorded for user.
func (g *LoginGuard) Succeeded(user string) {
	if !g.enabled() {
		return
	}
	g.mu.Lock()
	delete(g.accounts, user)
	g.mu.Unlock()
}

// Tracked returns the number of accounts with recorded failures, including
// drained ones that the next sweep will drop.
func (g *LoginGuard) Tracked() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.accounts)
}

func (g *LoginGuard) enabled() bool { return g != nil && g.maxFailures > 0 }

// sweep drops the accounts whose debt has drained. The caller holds g.mu.
func (g *LoginGuard) sweep(now time.Time) {
	g.lastSweep = now
	for user, drained := range g.accounts {
		if !drained.After(now) {
			delete(g.accounts, user)
		}
	}
}
