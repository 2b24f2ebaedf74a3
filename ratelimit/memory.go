package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// memory is the in-process backend: the same algorithms as the Redis
// scripts, on the Limiter's clock, under one mutex. It backs [NewMemory] and
// is the local half of [NewRedis]'s fallback. It never degrades and runs
// nothing in the background.
type memory struct {
	l *Limiter

	mu     sync.Mutex
	scopes map[string]*scopeState // by group and scope; guarded by mu
}

// scopeState is one scope's counters. Times are Unix microseconds, as in Redis.
type scopeState struct {
	req []int64 // sliding log: when each request in the window was admitted, oldest first

	tok     []*tokEntry // sliding log of reservations, oldest first
	tokByID map[string]*tokEntry
	tokSum  int64 // of tok's amounts

	conc map[string]int64 // in-flight request id → end of its lease

	life    int64 // requests admitted, ever
	lifeSet bool  // life is known (seeded)

	month string // "2006-01" that spent is for; "" until seeded
	spent int64  // micro-USD
}

type tokEntry struct {
	id string
	at int64 // when reserved
	n  int64 // tokens: reserved, then settled
}

func newMemory(l *Limiter) *memory {
	return &memory{l: l, scopes: make(map[string]*scopeState)}
}

func (m *memory) now() int64 { return m.l.o.Now().UnixMicro() }

func (m *memory) degraded() bool { return false }

func (m *memory) close() {}

// state returns lim's counters, creating them; m.mu must be held.
func (m *memory) state(lim Limit) *scopeState {
	k := lim.group() + "\x00" + lim.Scope
	st := m.scopes[k]
	if st == nil {
		st = &scopeState{tokByID: make(map[string]*tokEntry), conc: make(map[string]int64)}
		m.scopes[k] = st
	}
	return st
}

// expire drops what has left the windows at now (µs), with w the window (µs).
// An entry exactly w old has left, as with ZREMRANGEBYSCORE -inf now-w.
func (st *scopeState) expire(now, w int64) {
	i := 0
	for i < len(st.req) && st.req[i] <= now-w {
		i++
	}
	st.req = st.req[i:]
	i = 0
	for i < len(st.tok) && st.tok[i].at <= now-w {
		st.tokSum -= st.tok[i].n
		delete(st.tokByID, st.tok[i].id)
		i++
	}
	st.tok = st.tok[i:]
	for id, end := range st.conc {
		if end <= now {
			delete(st.conc, id)
		}
	}
}

// A skipSet holds the (limit, kind) counters a call goes on without because
// their Seed failed (see [Options.Seed]).
type skipSet map[seedKey]bool

type seedKey struct {
	limit int
	kind  Kind
}

// states returns the counters of each limit, creating them, with what
// left the window w (µs) before now expired; m.mu must be held.
func (m *memory) states(limits []Limit, now, w int64) []*scopeState {
	sts := make([]*scopeState, len(limits))
	for i, lim := range limits {
		sts[i] = m.state(lim)
		sts[i].expire(now, w)
	}
	return sts
}

// seeded runs f under m.mu once every counter c needs is known, seeding the
// missing ones (outside the lock) first.
func (m *memory) seeded(ctx context.Context, c *call, budget, lifetime bool, f func(now int64, month string, skip skipSet) error) error {
	skip := skipSet{}
	for range 4 {
		m.mu.Lock()
		now := m.now()
		month := monthOf(time.UnixMicro(now))
		var needs []seedNeed
		for i, lim := range c.limits {
			st := m.state(lim)
			if lifetime && lim.MaxRequests > 0 && !st.lifeSet && !skip[seedKey{i, KindLifetime}] {
				needs = append(needs, seedNeed{limit: i, kind: KindLifetime})
			}
			if budget && lim.MonthlyBudget > 0 && st.month != month && !skip[seedKey{i, KindBudget}] {
				needs = append(needs, seedNeed{limit: i, kind: KindBudget, month: month})
			}
		}
		if len(needs) == 0 {
			err := f(now, month, skip)
			m.mu.Unlock()
			return err
		}
		m.mu.Unlock()

		vals, err := m.l.seed(ctx, c, needs)
		if err != nil {
			return err
		}
		m.mu.Lock()
		for j, nd := range needs {
			if vals[j].skip {
				skip[seedKey{nd.limit, nd.kind}] = true
				continue
			}
			st := m.state(c.limits[nd.limit])
			switch nd.kind {
			case KindLifetime:
				if !st.lifeSet {
					st.life, st.lifeSet = vals[j].n, true
				}
			case KindBudget:
				if st.month != nd.month {
					st.month, st.spent = nd.month, vals[j].n
				}
			}
		}
		m.mu.Unlock()
	}
	return fmt.Errorf("ratelimit: counters of %s kept changing while being seeded", c.limits[0].Scope)
}

func (m *memory) admit(ctx context.Context, c *call) (*Admission, error) {
	var a *Admission
	err := m.seeded(ctx, c, true, true, func(now int64, month string, skip skipSet) error {
		w := m.l.window.Microseconds()
		sts := m.states(c.limits, now, w)
		for _, k := range kinds {
			for i, lim := range c.limits {
				n, st := limitOf(lim, k), sts[i]
				if n == 0 || skip[seedKey{i, k}] {
					continue
				}
				switch {
				case k == KindLifetime && st.life >= n,
					k == KindBudget && st.spent >= n:
					return &LimitError{Kind: k, Scope: lim.Scope, Limit: n}
				case k == KindConcurrency && int64(len(st.conc)) >= n:
					return &LimitError{Kind: k, Scope: lim.Scope, Limit: n, RetryAfter: ConcurrencyRetryAfter}
				case k == KindRequests && int64(len(st.req)) >= n:
					// Room for one more once all but n-1 entries have left.
					retry := time.Duration(st.req[int64(len(st.req))-n]+w-now) * time.Microsecond
					return &LimitError{Kind: k, Scope: lim.Scope, Limit: n, RetryAfter: retry}
				}
			}
		}
		a = newAdmission(m.l, c.id, m)
		for i, lim := range c.limits {
			st := sts[i]
			if lim.RequestsPerMinute > 0 {
				st.req = append(st.req, now)
				a.requests = restrictive(a.requests, Status{
					Limit:     lim.RequestsPerMinute,
					Remaining: max(lim.RequestsPerMinute-int64(len(st.req)), 0),
					Reset:     time.Duration(st.req[0]+w-now) * time.Microsecond,
				})
			}
			if lim.MaxConcurrent > 0 {
				st.conc[c.id] = now + m.l.o.Lease.Microseconds()
				a.conc = append(a.conc, lim)
			}
			if lim.MaxRequests > 0 && !skip[seedKey{i, KindLifetime}] {
				st.life++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (m *memory) release(_ context.Context, conc []Limit, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, lim := range conc {
		delete(m.state(lim).conc, id)
	}
}

// renew extends the slots of request id to a full lease from now; a slot
// whose lease has ended is not taken again.
func (m *memory) renew(_ context.Context, conc []Limit, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	lost := 0
	for _, lim := range conc {
		st := m.state(lim)
		if end, ok := st.conc[id]; ok && end > now {
			st.conc[id] = now + m.l.o.Lease.Microseconds()
			continue
		}
		delete(st.conc, id)
		lost++
	}
	if lost > 0 {
		return fmt.Errorf("ratelimit: renew: %w for %d of %d slots", ErrLeaseEnded, lost, len(conc))
	}
	return nil
}

func (m *memory) reserve(ctx context.Context, c *call, tokens, cost int64) (*Reservation, error) {
	var r *Reservation
	err := m.seeded(ctx, c, true, false, func(now int64, month string, skip skipSet) error {
		w := m.l.window.Microseconds()
		sts := m.states(c.limits, now, w)
		for i, lim := range c.limits {
			if n := lim.MonthlyBudget; n > 0 && !skip[seedKey{i, KindBudget}] && sts[i].spent+cost > n {
				return &LimitError{Kind: KindBudget, Scope: lim.Scope, Limit: n}
			}
		}
		for i, lim := range c.limits {
			st, n := sts[i], lim.TokensPerMinute
			if n == 0 || st.tokSum+tokens <= n {
				continue
			}
			// Room once enough of the oldest reservations have left.
			le := &LimitError{Kind: KindTokens, Scope: lim.Scope, Limit: n, RetryAfter: m.l.window}
			freed := int64(0)
			for _, e := range st.tok {
				freed += e.n
				if st.tokSum-freed+tokens <= n {
					le.RetryAfter = time.Duration(e.at+w-now) * time.Microsecond
					break
				}
			}
			return le
		}
		r = &Reservation{id: c.id, b: m, tokens: tokens, cost: cost, month: month}
		for i, lim := range c.limits {
			st := sts[i]
			if lim.TokensPerMinute > 0 {
				e := &tokEntry{id: c.id, at: now, n: tokens}
				st.tok = append(st.tok, e)
				st.tokByID[e.id] = e
				st.tokSum += tokens
				r.status = restrictive(r.status, Status{
					Limit:     lim.TokensPerMinute,
					Remaining: max(lim.TokensPerMinute-st.tokSum, 0),
					Reset:     time.Duration(st.tok[0].at+w-now) * time.Microsecond,
				})
			}
			if lim.MonthlyBudget > 0 {
				if skip[seedKey{i, KindBudget}] {
					lim.MonthlyBudget = 0 // not charged, so not to be settled
				} else {
					st.spent += cost
				}
			}
			r.limits = append(r.limits, lim)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (m *memory) settle(_ context.Context, r *Reservation, tokens, cost int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, lim := range r.limits {
		st := m.state(lim)
		st.expire(now, m.l.window.Microseconds())
		if lim.TokensPerMinute > 0 {
			if e := st.tokByID[r.id]; e != nil {
				st.tokSum += tokens - e.n
				e.n = tokens
			} else if over := tokens - r.tokens; over > 0 {
				// The reservation has left the window: charge the overage now.
				e := &tokEntry{id: r.id, at: now, n: over}
				st.tok = append(st.tok, e)
				st.tokByID[e.id] = e
				st.tokSum += over
			}
		}
		if lim.MonthlyBudget > 0 && st.month == r.month {
			st.spent += cost - r.cost
		}
	}
	return nil
}
