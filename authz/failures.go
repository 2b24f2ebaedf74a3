package authz

import (
	"fmt"
	"sync"
	"time"
)

// FailureLimitError is [Authorizer.AuthenticateFrom]'s refusal of a client
// address that failed to authenticate too often lately: its token was not
// looked at. RetryAfter (> 0) is when the address may try again; a client
// should see a 429 with a Retry-After header, not a 401. It wraps
// [ErrTooManyFailures].
type FailureLimitError struct {
	RetryAfter time.Duration
}

func (e *FailureLimitError) Error() string {
	return fmt.Sprintf("%v: retry after %v", ErrTooManyFailures, e.RetryAfter)
}

func (e *FailureLimitError) Unwrap() error { return ErrTooManyFailures }

// failureGate limits failed authentications per client address with a
// generic cell rate algorithm: each failure costs interval (window / limit),
// an address may run up to window of debt, and it is refused while the next
// failure would exceed that. So it may fail limit times in a burst, then
// once per interval; it is back to a full allowance window after its last
// failure. Sustained, that is limit failures per window (a burst of limit
// may come on top once); a refused address may try again after interval, not
// at some window's end, and each address costs one time.Time.
//
// Addresses live in two generations of maps, cur and prev, rotated once a
// window has passed: an address untouched through a whole generation has no
// debt left (tat is at most a window past its last failure), so the
// rotation forgets only addresses that would be allowed anyway, and memory
// follows the addresses that failed in the last one or two windows. At most
// max addresses are tracked; beyond that, new ones are not limited (the
// negative cache and audit aggregation still bound what they cost).
type failureGate struct {
	limit    int // ≤ 0: no limit
	window   time.Duration
	interval time.Duration
	max      int

	mu        sync.Mutex
	cur, prev map[string]time.Time // by address: when its debt is paid off (its theoretical arrival time); guarded by mu
	rotated   time.Time            // when prev became prev; guarded by mu
}

func newFailureGate(limit int, window time.Duration, maxAddrs int) *failureGate {
	g := &failureGate{limit: limit, window: window, max: maxAddrs}
	if limit > 0 {
		g.interval = max(window/time.Duration(limit), 1)
	}
	return g
}

// wait returns how long addr must wait before it may try to authenticate
// again; 0 means now.
func (g *failureGate) wait(addr string, now time.Time) time.Duration {
	if g.limit <= 0 || addr == "" {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rotate(now)
	tat, ok := g.cur[addr]
	if !ok {
		if tat, ok = g.prev[addr]; !ok {
			return 0
		}
	}
	// A failure now would make the debt tat+interval-now; it may reach window.
	return max(0, tat.Add(g.interval).Sub(now)-g.window)
}

// fail counts a failed authentication of addr.
func (g *failureGate) fail(addr string, now time.Time) {
	if g.limit <= 0 || addr == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rotate(now)
	tat, ok := g.cur[addr]
	if !ok {
		if tat, ok = g.prev[addr]; ok {
			delete(g.prev, addr)
		} else if len(g.cur)+len(g.prev) >= g.max {
			return
		}
	}
	if tat.Before(now) {
		tat = now
	}
	tat = tat.Add(g.interval)
	// Requests that passed wait together may fail together: cap the debt at
	// window, which keeps the rotation's premise (no debt outlives a window
	// after the last failure) and a refused address's wait within interval.
	if limit := now.Add(g.window); tat.After(limit) {
		tat = limit
	}
	g.cur[addr] = tat
}

// rotate starts a new generation once a window has passed since the last.
// g.mu must be held.
func (g *failureGate) rotate(now time.Time) {
	switch since := now.Sub(g.rotated); {
	case g.cur == nil:
	case since >= 2*g.window:
		g.prev = nil
	case since >= g.window:
		g.prev = g.cur
	default:
		return
	}
	g.cur = make(map[string]time.Time)
	g.rotated = now
}
