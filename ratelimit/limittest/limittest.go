// Package limittest is the conformance suite of [ratelimit.Limiter]: one set
// of tests that every backend (memory, Redis) must pass unchanged.
package limittest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/ratelimit"
)

// NewLimiter returns a new Limiter built with o, and closes it when t ends.
// Limiters built with the same o.Prefix must share their counts if the
// backend shares them at all; the suite gives every test its own prefix.
type NewLimiter func(t *testing.T, o ratelimit.Options) *ratelimit.Limiter

// Run runs the tests that hold on any clock, in parallel subtests. Every test
// also checks that the limiter never degraded.
func Run(t *testing.T, newLimiter NewLimiter) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s suite)
	}{
		{"RequestsExactUnderConcurrency", testRequestsExact},
		{"RequestsStatus", testRequestsStatus},
		{"MostRestrictiveStatus", testMostRestrictive},
		{"AdmitAllOrNothing", testAdmitAllOrNothing},
		{"RefusalOrder", testRefusalOrder},
		{"Concurrency", testConcurrency},
		{"ConcurrencyUnderLoad", testConcurrencyUnderLoad},
		{"ConcurrencyLeaseRenewed", testConcurrencyRenew},
		{"Lifetime", testLifetime},
		{"LifetimeSeed", testLifetimeSeed},
		{"BudgetSeed", testBudgetSeed},
		{"SeedErrors", testSeedErrors},
		{"Budget", testBudget},
		{"BudgetExactUnderConcurrency", testBudgetExact},
		{"TicketSettlesLater", testTicket},
		{"TokensReserveSettle", testTokensReserveSettle},
		{"TokensExactUnderConcurrency", testTokensExact},
		{"TooLargeRefusedAtOnce", testTooLarge},
		{"SettleOverage", testSettleOverage},
		{"SettleIdempotent", testSettleIdempotent},
		{"ReserveAllOrNothing", testReserveAllOrNothing},
		{"ScopesIndependent", testScopesIndependent},
		{"Unlimited", testUnlimited},
		{"NilSafe", testNilSafe},
		{"InvalidInput", testInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, suite{newLimiter: newLimiter})
		})
	}
}

// RunClock runs the tests that move time, for backends whose clock is
// [ratelimit.Options.Now] (the memory backend). They start just before the
// end of a month.
func RunClock(t *testing.T, newLimiter NewLimiter) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s suite, c *Clock)
	}{
		{"RequestsWindowSlides", testRequestsWindow},
		{"TokensWindowSlides", testTokensWindow},
		{"ConcurrencyLeaseExpires", testConcurrencyLease},
		{"ConcurrencyRenewEveryThirdOfLease", testConcurrencyRenewClock},
		{"SettleAfterWindow", testSettleAfterWindow},
		{"BudgetMonthTurns", testBudgetMonth},
		{"SettleAcrossMonths", testSettleAcrossMonths},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewClock(time.Date(2026, 3, 31, 23, 58, 0, 0, time.UTC))
			tc.test(t, suite{newLimiter: newLimiter, now: c.Now}, c)
		})
	}
}

// A Clock is a fake clock for [ratelimit.Options.Now].
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type suite struct {
	newLimiter NewLimiter
	now        func() time.Time
}

// limiter returns a limiter with a prefix of the test's own; edit may change
// its options first.
func (s suite) limiter(t *testing.T, edit ...func(*ratelimit.Options)) *ratelimit.Limiter {
	t.Helper()
	o := ratelimit.Options{
		Prefix: fmt.Sprintf("llmproxy:rl:test:%x:", rand.Uint64()),
		Now:    s.now,
	}
	for _, e := range edit {
		e(&o)
	}
	l := s.newLimiter(t, o)
	t.Cleanup(func() {
		if l.Degraded() {
			t.Errorf("the limiter degraded during the test")
		}
	})
	return l
}

// seeds records Seed calls and answers them from a table.
type seeds struct {
	mu    sync.Mutex
	calls []seedCall
	value map[ratelimit.Kind]int64
	err   map[ratelimit.Kind]error
}

type seedCall struct {
	kind  ratelimit.Kind
	scope string
	since time.Time
}

func (sd *seeds) seed(_ context.Context, kind ratelimit.Kind, scope string, since time.Time) (int64, error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	sd.calls = append(sd.calls, seedCall{kind, scope, since})
	return sd.value[kind], sd.err[kind]
}

func (sd *seeds) callsOf(kind ratelimit.Kind) []seedCall {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	var out []seedCall
	for _, c := range sd.calls {
		if c.kind == kind {
			out = append(out, c)
		}
	}
	return out
}

func withSeed(sd *seeds) func(*ratelimit.Options) {
	return func(o *ratelimit.Options) { o.Seed = sd.seed }
}

// limitError returns err as a *LimitError of kind, failing t otherwise.
func limitError(t *testing.T, err error, kind ratelimit.Kind) *ratelimit.LimitError {
	t.Helper()
	var le *ratelimit.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("got error %v, want a *LimitError of kind %s", err, kind)
	}
	if le.Kind != kind {
		t.Fatalf("refused for %s (%v), want %s", le.Kind, le, kind)
	}
	return le
}

func mustAdmit(t *testing.T, l *ratelimit.Limiter, limits ...ratelimit.Limit) *ratelimit.Admission {
	t.Helper()
	a, err := l.Admit(t.Context(), limits)
	if err != nil {
		t.Fatalf("admit: %v", err)
	}
	return a
}

func mustReserve(t *testing.T, l *ratelimit.Limiter, tokens, cost int64, limits ...ratelimit.Limit) *ratelimit.Reservation {
	t.Helper()
	r, err := l.Reserve(t.Context(), limits, tokens, cost)
	if err != nil {
		t.Fatalf("reserve %d tokens, %d micro-USD: %v", tokens, cost, err)
	}
	return r
}

// inWindow checks that d is a plausible time within a one-minute window.
func inWindow(t *testing.T, what string, d time.Duration) {
	t.Helper()
	if d <= 0 || d > time.Minute {
		t.Errorf("%s = %v, want in (0, 1m]", what, d)
	}
}

func testRequestsExact(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:exact", RequestsPerMinute: 50}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			a, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
			if err == nil {
				ok.Add(1)
				a.Done(t.Context())
				return
			}
			var le *ratelimit.LimitError
			if errors.As(err, &le) && le.Kind == ratelimit.KindRequests && le.Limit == 50 && le.Scope == lim.Scope &&
				le.RetryAfter > 0 && le.RetryAfter <= time.Minute {
				refused.Add(1)
				return
			}
			t.Errorf("admit: %v", err)
		})
	}
	wg.Wait()
	if ok.Load() != 50 || refused.Load() != 150 {
		t.Fatalf("%d admitted, %d refused; want exactly 50 and 150", ok.Load(), refused.Load())
	}
}

func testRequestsStatus(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:status", RequestsPerMinute: 3}
	var first ratelimit.Status
	for i := range 3 {
		st := mustAdmit(t, l, lim).Requests()
		if st.Limit != 3 || st.Remaining != int64(2-i) {
			t.Fatalf("request %d: status %+v, want limit 3, remaining %d", i+1, st, 2-i)
		}
		inWindow(t, "reset", st.Reset)
		if i == 0 {
			first = st
		} else if st.Reset > first.Reset {
			t.Errorf("reset grew from %v to %v: it is when the oldest entry leaves", first.Reset, st.Reset)
		}
	}
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	le := limitError(t, err, ratelimit.KindRequests)
	inWindow(t, "retry after", le.RetryAfter)
	if le.RetryAfter > first.Reset {
		t.Errorf("retry after %v, later than the first entry's reset %v", le.RetryAfter, first.Reset)
	}
	if le.Scope != lim.Scope || le.Limit != 3 {
		t.Errorf("refusal %+v names the wrong scope or limit", le)
	}
}

func testMostRestrictive(t *testing.T, s suite) {
	l := s.limiter(t)
	project := ratelimit.Limit{Scope: "project:mr", RequestsPerMinute: 100, TokensPerMinute: 10000}
	token := ratelimit.Limit{Scope: "token:mr", Group: "project:mr", RequestsPerMinute: 5, TokensPerMinute: 1000}
	project.Group = "project:mr"
	a := mustAdmit(t, l, project, token)
	if st := a.Requests(); st.Limit != 5 || st.Remaining != 4 {
		t.Errorf("requests status %+v, want the token's: limit 5, remaining 4", st)
	}
	r := mustReserve(t, l, 300, 0, project, token)
	if st := r.Tokens(); st.Limit != 1000 || st.Remaining != 700 {
		t.Errorf("tokens status %+v, want the token's: limit 1000, remaining 700", st)
	}
	// The project alone has the larger room.
	r = mustReserve(t, l, 100, 0, project)
	if st := r.Tokens(); st.Limit != 10000 || st.Remaining != 9600 {
		t.Errorf("project tokens status %+v, want limit 10000, remaining 9600", st)
	}
}

func testAdmitAllOrNothing(t *testing.T, s suite) {
	l := s.limiter(t)
	project := ratelimit.Limit{Scope: "project:aon", Group: "project:aon", RequestsPerMinute: 10, MaxConcurrent: 10, MaxRequests: 100}
	token := ratelimit.Limit{Scope: "token:aon", Group: "project:aon", RequestsPerMinute: 2}
	mustAdmit(t, l, project, token)
	mustAdmit(t, l, project, token)
	for range 3 {
		_, err := l.Admit(t.Context(), []ratelimit.Limit{project, token})
		if le := limitError(t, err, ratelimit.KindRequests); le.Scope != token.Scope {
			t.Fatalf("refused by %s, want the token", le.Scope)
		}
	}
	// The refusals charged nothing to the project: 2 requests + this one.
	if st := mustAdmit(t, l, project).Requests(); st.Remaining != 7 {
		t.Errorf("project remaining %d after 3 admitted requests, want 7: refused requests were counted", st.Remaining)
	}
}

func testRefusalOrder(t *testing.T, s suite) {
	l := s.limiter(t)
	// Exhaust requests and concurrency and lifetime at once: the lifetime
	// refusal, which retrying cannot cure, is the one reported.
	lim := ratelimit.Limit{Scope: "token:order", RequestsPerMinute: 1, MaxConcurrent: 1, MaxRequests: 1}
	mustAdmit(t, l, lim)
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	if le := limitError(t, err, ratelimit.KindLifetime); le.RetryAfter != 0 {
		t.Errorf("lifetime refusal has retry after %v, want 0", le.RetryAfter)
	}
	lim2 := ratelimit.Limit{Scope: "token:order2", RequestsPerMinute: 1, MaxConcurrent: 1}
	mustAdmit(t, l, lim2)
	_, err = l.Admit(t.Context(), []ratelimit.Limit{lim2})
	if le := limitError(t, err, ratelimit.KindConcurrency); le.RetryAfter != ratelimit.ConcurrencyRetryAfter {
		t.Errorf("concurrency refusal has retry after %v, want %v", le.RetryAfter, ratelimit.ConcurrencyRetryAfter)
	}
}

func testConcurrency(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:conc", MaxConcurrent: 2}
	a := mustAdmit(t, l, lim)
	b := mustAdmit(t, l, lim)
	if st := a.Requests(); st != (ratelimit.Status{}) {
		t.Errorf("requests status %+v without a requests limit, want zero", st)
	}
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	if le := limitError(t, err, ratelimit.KindConcurrency); le.Limit != 2 {
		t.Errorf("refusal limit %d, want 2", le.Limit)
	}
	// Done on an aborted request's (cancelled) context still releases, and
	// only once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	a.Done(ctx)
	a.Done(t.Context())
	c := mustAdmit(t, l, lim)
	if _, err := l.Admit(t.Context(), []ratelimit.Limit{lim}); err == nil {
		t.Fatal("a third request was admitted: a repeated Done released two slots")
	}
	b.Done(t.Context())
	c.Done(t.Context())
	mustAdmit(t, l, lim).Done(t.Context())
}

func testConcurrencyUnderLoad(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:load", MaxConcurrent: 5}
	var inFlight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 10 {
				a, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
				if err != nil {
					var le *ratelimit.LimitError
					if !errors.As(err, &le) {
						t.Errorf("admit: %v", err)
						return
					}
					continue
				}
				admitted.Add(1)
				n := inFlight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(time.Millisecond)
				inFlight.Add(-1)
				a.Done(t.Context())
			}
		})
	}
	wg.Wait()
	if peak.Load() > 5 {
		t.Errorf("%d requests in flight at once, limit 5", peak.Load())
	}
	if admitted.Load() == 0 {
		t.Error("nothing was admitted")
	}
	// Every slot was released.
	for range 5 {
		mustAdmit(t, l, lim)
	}
}

// A request that outlives the lease (a long stream) keeps its slot while it
// renews it, and the limit holds past the lease; one that stops renewing
// loses its slot when the lease ends. The lease is shortened to two seconds
// of real time, so every backend runs this on its own clock.
func testConcurrencyRenew(t *testing.T, s suite) {
	const lease = 2 * time.Second
	l := s.limiter(t, func(o *ratelimit.Options) { o.Lease = lease })
	lim := ratelimit.Limit{Scope: "project:renew", MaxConcurrent: 2}
	kept := mustAdmit(t, l, lim)
	lapsed := mustAdmit(t, l, lim)
	start := time.Now()
	for time.Since(start) < 2*lease+lease/2 {
		time.Sleep(lease / 8)
		if err := kept.Renew(t.Context()); err != nil {
			t.Fatalf("renew %v after admission: %v", time.Since(start), err)
		}
	}
	// Both original leases ended: the renewed slot is still held, the other free.
	third := mustAdmit(t, l, lim)
	if _, err := l.Admit(t.Context(), []ratelimit.Limit{lim}); err == nil {
		t.Fatal("a third request in flight with a limit of 2: the renewed admission lost its slot")
	} else {
		limitError(t, err, ratelimit.KindConcurrency)
	}
	if err := lapsed.Renew(t.Context()); !errors.Is(err, ratelimit.ErrLeaseEnded) {
		t.Errorf("renew after the lease ended: %v, want ErrLeaseEnded", err)
	}
	if _, err := l.Admit(t.Context(), []ratelimit.Limit{lim}); err == nil {
		t.Fatal("a renew after the lease ended took the slot back")
	}
	kept.Done(t.Context())
	if err := kept.Renew(t.Context()); err != nil {
		t.Errorf("renew after Done: %v, want nil", err)
	}
	mustAdmit(t, l, lim)
	third.Done(t.Context())
	mustAdmit(t, l, lim)
}

func testLifetime(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "token:life", MaxRequests: 3}
	for range 3 {
		mustAdmit(t, l, lim).Done(t.Context())
	}
	for range 2 {
		_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
		if le := limitError(t, err, ratelimit.KindLifetime); le.RetryAfter != 0 || le.Limit != 3 {
			t.Errorf("refusal %+v, want limit 3 and no retry", le)
		}
	}
	// A higher cap lets the token go on from its count.
	lim.MaxRequests = 4
	mustAdmit(t, l, lim)
	if _, err := l.Admit(t.Context(), []ratelimit.Limit{lim}); err == nil {
		t.Error("admitted past the raised cap: refused requests were counted or the count was lost")
	}
}

func testLifetimeSeed(t *testing.T, s suite) {
	sd := &seeds{value: map[ratelimit.Kind]int64{ratelimit.KindLifetime: 8}}
	l := s.limiter(t, withSeed(sd))
	lim := ratelimit.Limit{Scope: "token:seeded", Group: "project:seeded", MaxRequests: 10}
	mustAdmit(t, l, lim)
	mustAdmit(t, l, lim)
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindLifetime)
	calls := sd.callsOf(ratelimit.KindLifetime)
	if len(calls) != 1 {
		t.Fatalf("Seed called %d times for the lifetime count, want once", len(calls))
	}
	if c := calls[0]; c.scope != "token:seeded" || !c.since.IsZero() {
		t.Errorf("Seed(%s, %q, %v), want the token's scope and a zero since", c.kind, c.scope, c.since)
	}
	if n := len(sd.callsOf(ratelimit.KindBudget)); n != 0 {
		t.Errorf("Seed asked for a budget %d times, without a budget limit", n)
	}
}

func testBudgetSeed(t *testing.T, s suite) {
	sd := &seeds{value: map[ratelimit.Kind]int64{ratelimit.KindBudget: 900}}
	l := s.limiter(t, withSeed(sd))
	lim := ratelimit.Limit{Scope: "project:bseed", MonthlyBudget: 1000}
	before := time.Now().UTC()
	mustAdmit(t, l, lim)
	mustReserve(t, l, 0, 100, lim)
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindBudget)
	calls := sd.callsOf(ratelimit.KindBudget)
	if len(calls) != 1 {
		t.Fatalf("Seed called %d times for the budget, want once", len(calls))
	}
	c := calls[0]
	now := before
	if s.now != nil {
		now = s.now().UTC()
	}
	want := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	// Redis's clock may be in the next month if the test runs at its turn.
	if c.scope != lim.Scope || (!c.since.Equal(want) && !c.since.Equal(want.AddDate(0, 1, 0))) {
		t.Errorf("Seed(budget, %q, %v), want the project and the start of the month %v", c.scope, c.since, want)
	}
}

func testSeedErrors(t *testing.T, s suite) {
	boom := errors.New("store down")
	sd := &seeds{err: map[ratelimit.Kind]error{ratelimit.KindBudget: boom, ratelimit.KindLifetime: boom}}
	l := s.limiter(t, withSeed(sd))
	// The budget fails closed by default: no budget, no request.
	_, err := l.Admit(t.Context(), []ratelimit.Limit{{Scope: "project:serr", MonthlyBudget: 1000}})
	if !errors.Is(err, ratelimit.ErrUnavailable) || !errors.Is(err, boom) {
		t.Errorf("admit with an unseedable budget: %v, want ErrUnavailable wrapping the seed error", err)
	}
	_, err = l.Reserve(t.Context(), []ratelimit.Limit{{Scope: "project:serr", MonthlyBudget: 1000}}, 1, 1)
	if !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Errorf("reserve with an unseedable budget: %v, want ErrUnavailable", err)
	}
	// The lifetime cap fails local by default: the request goes on without
	// it, and the seed is tried again next time.
	lim := ratelimit.Limit{Scope: "token:serr", MaxRequests: 1}
	mustAdmit(t, l, lim)
	mustAdmit(t, l, lim)
	if n := len(sd.callsOf(ratelimit.KindLifetime)); n != 2 {
		t.Errorf("lifetime seeded %d times, want a try per request while it fails", n)
	}
	sd.mu.Lock()
	sd.err = nil
	sd.mu.Unlock()
	mustAdmit(t, l, lim)
	_, err = l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindLifetime)
}

func testBudget(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:budget", MonthlyBudget: 1000}
	r := mustReserve(t, l, 10, 600, lim)
	if st := r.Tokens(); st != (ratelimit.Status{}) {
		t.Errorf("tokens status %+v without a tokens limit, want zero", st)
	}
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 10, 500)
	if le := limitError(t, err, ratelimit.KindBudget); le.RetryAfter != 0 || le.Limit != 1000 {
		t.Errorf("refusal %+v, want limit 1000 and no retry", le)
	}
	mustAdmit(t, l, lim) // 600 of 1000 spent: not exhausted
	// The request really cost 1000: the overage is charged.
	if err := r.Settle(t.Context(), 10, 1000); err != nil {
		t.Fatal(err)
	}
	_, err = l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindBudget)
	_, err = l.Reserve(t.Context(), []ratelimit.Limit{lim}, 0, 0)
	if err != nil {
		t.Errorf("a free reservation on a spent budget: %v; Admit is what refuses spent budgets", err)
	}
}

// A reservation kept as a ticket (a background response, a batch) stays
// charged until the ticket is settled, from its stored form, by another
// Limiter sharing the counts.
func testTicket(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:ticket", MonthlyBudget: 1000, TokensPerMinute: 10000}
	r := mustReserve(t, l, 100, 600, lim)
	tk, ok := r.Ticket()
	if !ok || tk.Cost != 600 || tk.Tokens != 100 {
		t.Fatalf("ticket %+v, %v; want 100 tokens and 600 micro-USD", tk, ok)
	}
	if !r.Keep() || r.Keep() {
		t.Fatal("Keep: want true once, then false")
	}
	if err := r.Settle(t.Context(), 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Ticket(); ok {
		t.Error("a ticket from a kept reservation")
	}
	// Settle on the reservation did nothing: still 600 of 1000 spent.
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 0, 401)
	limitError(t, err, ratelimit.KindBudget)
	b, err := ratelimit.MarshalTicket(tk)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ratelimit.UnmarshalTicket(b)
	if err != nil {
		t.Fatal(err)
	}
	// It really cost 250: 350 come back.
	if err := l.SettleTicket(t.Context(), back, 40, 250); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, l, 0, 750, lim)
	_, err = l.Reserve(t.Context(), []ratelimit.Limit{lim}, 0, 1)
	limitError(t, err, ratelimit.KindBudget)
	if _, err := ratelimit.UnmarshalTicket([]byte(`{"cost":-1,"id":"x"}`)); err == nil {
		t.Error("a ticket with a negative cost was accepted")
	}
}

func testBudgetExact(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:bexact", MonthlyBudget: 1000}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 1, 100)
			if err == nil {
				ok.Add(1)
				return
			}
			var le *ratelimit.LimitError
			if !errors.As(err, &le) || le.Kind != ratelimit.KindBudget {
				t.Errorf("reserve: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Errorf("%d reservations of 100 fit a budget of 1000, want 10", ok.Load())
	}
}

func testTokensReserveSettle(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:tok", TokensPerMinute: 1000}
	r := mustReserve(t, l, 600, 0, lim)
	st := r.Tokens()
	if st.Limit != 1000 || st.Remaining != 400 {
		t.Errorf("status %+v, want limit 1000, remaining 400", st)
	}
	inWindow(t, "reset", st.Reset)
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 500, 0)
	le := limitError(t, err, ratelimit.KindTokens)
	inWindow(t, "retry after", le.RetryAfter)
	// It used 100 of the 600: 500 come back.
	if err := r.Settle(t.Context(), 100, 0); err != nil {
		t.Fatal(err)
	}
	r2 := mustReserve(t, l, 500, 0, lim)
	if st := r2.Tokens(); st.Remaining != 400 {
		t.Errorf("remaining %d after 100 used and 500 reserved, want 400", st.Remaining)
	}
	if _, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 401, 0); err == nil {
		t.Error("reserved past the limit")
	}
	// An aborted request that used nothing releases it all.
	if err := r2.Settle(t.Context(), 0, 0); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, l, 900, 0, lim)
}

func testTokensExact(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:texact", TokensPerMinute: 1000}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 10, 0)
			if err == nil {
				ok.Add(1)
				return
			}
			var le *ratelimit.LimitError
			if !errors.As(err, &le) || le.Kind != ratelimit.KindTokens || le.RetryAfter <= 0 {
				t.Errorf("reserve: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 100 {
		t.Errorf("%d reservations of 10 tokens fit 1000 tokens per minute, want 100", ok.Load())
	}
}

func testTooLarge(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:large", TokensPerMinute: 1000, MonthlyBudget: 5000}
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 1001, 0)
	if le := limitError(t, err, ratelimit.KindTokens); le.RetryAfter != 0 || le.Limit != 1000 {
		t.Errorf("refusal %+v, want limit 1000 and no retry: waiting cannot help", le)
	}
	_, err = l.Reserve(t.Context(), []ratelimit.Limit{lim}, 1, 5001)
	if le := limitError(t, err, ratelimit.KindBudget); le.RetryAfter != 0 {
		t.Errorf("refusal %+v, want no retry", le)
	}
	// Nothing was charged.
	if st := mustReserve(t, l, 1000, 5000, lim).Tokens(); st.Remaining != 0 {
		t.Errorf("remaining %d after reserving the whole limit, want 0", st.Remaining)
	}
}

func testSettleOverage(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:over", TokensPerMinute: 1000}
	r := mustReserve(t, l, 100, 0, lim)
	if err := r.Settle(t.Context(), 900, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 101, 0); err == nil {
		t.Fatal("the overage was not charged")
	}
	if st := mustReserve(t, l, 100, 0, lim).Tokens(); st.Remaining != 0 {
		t.Errorf("remaining %d, want 0", st.Remaining)
	}
}

func testSettleIdempotent(t *testing.T, s suite) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:idem", TokensPerMinute: 1000, MonthlyBudget: 1000}
	r := mustReserve(t, l, 500, 500, lim)
	for _, used := range []int64{200, 0, 900} {
		if err := r.Settle(t.Context(), used, used); err != nil {
			t.Fatal(err)
		}
	}
	// 200 used: 800 tokens and 800 micro-USD left.
	if st := mustReserve(t, l, 800, 800, lim).Tokens(); st.Remaining != 0 {
		t.Errorf("remaining %d, want 0", st.Remaining)
	}
	if _, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 1, 0); err == nil {
		t.Error("reserved past the limit: a repeated Settle counted")
	}
}

func testReserveAllOrNothing(t *testing.T, s suite) {
	l := s.limiter(t)
	project := ratelimit.Limit{Scope: "project:raon", Group: "project:raon", TokensPerMinute: 1000, MonthlyBudget: 1000}
	token := ratelimit.Limit{Scope: "token:raon", Group: "project:raon", TokensPerMinute: 100}
	mustReserve(t, l, 100, 100, project, token)
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{project, token}, 50, 100)
	limitError(t, err, ratelimit.KindTokens)
	// The project was charged only for the first: 900 tokens, 900 micro-USD left.
	mustReserve(t, l, 900, 900, project)
}

func testScopesIndependent(t *testing.T, s suite) {
	l := s.limiter(t)
	a := ratelimit.Limit{Scope: "token:ind-a", RequestsPerMinute: 1, TokensPerMinute: 10}
	b := ratelimit.Limit{Scope: "token:ind-b", RequestsPerMinute: 1, TokensPerMinute: 10}
	mustAdmit(t, l, a)
	mustReserve(t, l, 10, 0, a)
	mustAdmit(t, l, b)
	mustReserve(t, l, 10, 0, b)
	// The same scope in another group is another counter.
	mustAdmit(t, l, ratelimit.Limit{Scope: "token:ind-a", Group: "project:other", RequestsPerMinute: 1})
}

func testUnlimited(t *testing.T, s suite) {
	l := s.limiter(t)
	for _, limits := range [][]ratelimit.Limit{nil, {{Scope: "project:none"}, {Scope: "token:none", Group: "project:none"}}} {
		for range 3 {
			a := mustAdmit(t, l, limits...)
			if st := a.Requests(); st != (ratelimit.Status{}) {
				t.Errorf("requests status %+v without limits, want zero", st)
			}
			a.Done(t.Context())
			r := mustReserve(t, l, 1e9, 1e9, limits...)
			if st := r.Tokens(); st != (ratelimit.Status{}) {
				t.Errorf("tokens status %+v without limits, want zero", st)
			}
			if err := r.Settle(t.Context(), 1e9, 1e9); err != nil {
				t.Error(err)
			}
		}
	}
}

func testNilSafe(t *testing.T, _ suite) {
	var a *ratelimit.Admission
	a.Done(t.Context())
	if a.Requests() != (ratelimit.Status{}) {
		t.Error("nil admission has a status")
	}
	var r *ratelimit.Reservation
	if err := r.Settle(t.Context(), 1, 1); err != nil {
		t.Error(err)
	}
	if r.Tokens() != (ratelimit.Status{}) {
		t.Error("nil reservation has a status")
	}
}

func testInvalidInput(t *testing.T, s suite) {
	l := s.limiter(t)
	for _, tc := range []struct {
		name   string
		limits []ratelimit.Limit
	}{
		{"no scope", []ratelimit.Limit{{RequestsPerMinute: 1}}},
		{"negative", []ratelimit.Limit{{Scope: "project:neg", RequestsPerMinute: -1}}},
		{"scope twice", []ratelimit.Limit{{Scope: "project:dup"}, {Scope: "project:dup"}}},
		{"two groups", []ratelimit.Limit{{Scope: "project:g1"}, {Scope: "token:g2", RequestsPerMinute: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.Admit(t.Context(), tc.limits)
			checkInvalid(t, "admit", err)
			_, err = l.Reserve(t.Context(), tc.limits, 1, 1)
			checkInvalid(t, "reserve", err)
		})
	}
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{{Scope: "project:neg"}}, -1, 0)
	checkInvalid(t, "negative reserve", err)
}

func checkInvalid(t *testing.T, what string, err error) {
	t.Helper()
	var le *ratelimit.LimitError
	if err == nil || errors.As(err, &le) || errors.Is(err, ratelimit.ErrUnavailable) {
		t.Errorf("%s: %v, want a plain error", what, err)
	}
}

func testRequestsWindow(t *testing.T, s suite, c *Clock) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:win", RequestsPerMinute: 2}
	if st := mustAdmit(t, l, lim).Requests(); st.Reset != time.Minute {
		t.Errorf("reset %v with the only entry just added, want 1m", st.Reset)
	}
	c.Advance(20 * time.Second)
	if st := mustAdmit(t, l, lim).Requests(); st.Reset != 40*time.Second || st.Remaining != 0 {
		t.Errorf("status %+v, want remaining 0, reset 40s (the first entry leaves then)", st)
	}
	c.Advance(10 * time.Second)
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	if le := limitError(t, err, ratelimit.KindRequests); le.RetryAfter != 30*time.Second {
		t.Errorf("retry after %v, want 30s", le.RetryAfter)
	}
	// A fixed window would reset at the minute; the sliding one frees one
	// slot exactly when the first request is a minute old.
	c.Advance(30*time.Second - time.Microsecond)
	_, err = l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindRequests)
	c.Advance(time.Microsecond)
	if st := mustAdmit(t, l, lim).Requests(); st.Remaining != 0 || st.Reset != 20*time.Second {
		t.Errorf("status %+v, want remaining 0, reset 20s", st)
	}
	_, err = l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindRequests)
}

func testTokensWindow(t *testing.T, s suite, c *Clock) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:twin", TokensPerMinute: 100}
	mustReserve(t, l, 60, 0, lim)
	c.Advance(10 * time.Second)
	if st := mustReserve(t, l, 40, 0, lim).Tokens(); st.Remaining != 0 || st.Reset != 50*time.Second {
		t.Errorf("status %+v, want remaining 0, reset 50s", st)
	}
	c.Advance(10 * time.Second)
	// 50 more need the first reservation (60) gone: at 60s, 40s from now.
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 50, 0)
	if le := limitError(t, err, ratelimit.KindTokens); le.RetryAfter != 40*time.Second {
		t.Errorf("retry after %v, want 40s", le.RetryAfter)
	}
	// 70 need both gone: at 70s, 50s from now.
	_, err = l.Reserve(t.Context(), []ratelimit.Limit{lim}, 70, 0)
	if le := limitError(t, err, ratelimit.KindTokens); le.RetryAfter != 50*time.Second {
		t.Errorf("retry after %v, want 50s", le.RetryAfter)
	}
	c.Advance(40 * time.Second)
	mustReserve(t, l, 50, 0, lim)
	_, err = l.Reserve(t.Context(), []ratelimit.Limit{lim}, 11, 0)
	limitError(t, err, ratelimit.KindTokens)
}

func testConcurrencyLease(t *testing.T, s suite, c *Clock) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:lease", MaxConcurrent: 1}
	mustAdmit(t, l, lim) // never Done: its replica died
	c.Advance(9 * time.Minute)
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindConcurrency)
	c.Advance(time.Minute)
	mustAdmit(t, l, lim)
}

// Renew extends the lease to a full one from now, but only once a third of
// the lease has passed since the last extension: calling it more often (on
// every chunk of a stream) costs nothing.
func testConcurrencyRenewClock(t *testing.T, s suite, c *Clock) {
	l := s.limiter(t) // the default lease: 10 minutes
	lim := ratelimit.Limit{Scope: "project:renewclock", MaxConcurrent: 1}
	a := mustAdmit(t, l, lim)
	c.Advance(3 * time.Minute)
	if err := a.Renew(t.Context()); err != nil { // not due: the lease still ends at 10m
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if err := a.Renew(t.Context()); err != nil { // due: the lease now ends at 14m
		t.Fatal(err)
	}
	c.Advance(9 * time.Minute)
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindConcurrency)
	c.Advance(time.Minute)
	b := mustAdmit(t, l, lim)
	if err := a.Renew(t.Context()); !errors.Is(err, ratelimit.ErrLeaseEnded) {
		t.Errorf("renew after the lease ended: %v, want ErrLeaseEnded", err)
	}
	// A shortened lease ends sooner.
	short := s.limiter(t, func(o *ratelimit.Options) { o.Lease = time.Minute })
	mustAdmit(t, short, lim)
	c.Advance(time.Minute)
	mustAdmit(t, short, lim)
	b.Done(t.Context())
}

func testSettleAfterWindow(t *testing.T, s suite, c *Clock) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:late", TokensPerMinute: 1000}
	r := mustReserve(t, l, 100, 0, lim)
	c.Advance(2 * time.Minute) // a long stream
	if err := r.Settle(t.Context(), 300, 0); err != nil {
		t.Fatal(err)
	}
	// The reservation left the window; the overage (200) is charged now.
	mustReserve(t, l, 800, 0, lim)
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 1, 0)
	limitError(t, err, ratelimit.KindTokens)
}

func testBudgetMonth(t *testing.T, s suite, c *Clock) {
	sd := &seeds{value: map[ratelimit.Kind]int64{ratelimit.KindBudget: 400}}
	l := s.limiter(t, withSeed(sd))
	lim := ratelimit.Limit{Scope: "project:month", MonthlyBudget: 1000}
	mustReserve(t, l, 0, 600, lim)
	_, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
	limitError(t, err, ratelimit.KindBudget)
	c.Advance(2 * time.Minute) // 2026-04-01 00:00
	mustAdmit(t, l, lim)
	calls := sd.callsOf(ratelimit.KindBudget)
	if len(calls) != 2 {
		t.Fatalf("budget seeded %d times, want once per month", len(calls))
	}
	for i, want := range []time.Time{
		time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
	} {
		if !calls[i].since.Equal(want) {
			t.Errorf("seed %d since %v, want %v", i, calls[i].since, want)
		}
	}
	// April started from its seed (400): 600 fit, 601 do not.
	if _, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 0, 601); err == nil {
		t.Error("reserved past April's budget")
	}
	mustReserve(t, l, 0, 600, lim)
}

func testSettleAcrossMonths(t *testing.T, s suite, c *Clock) {
	l := s.limiter(t)
	lim := ratelimit.Limit{Scope: "project:across", MonthlyBudget: 1000}
	r := mustReserve(t, l, 0, 900, lim)
	c.Advance(5 * time.Minute) // into April
	mustReserve(t, l, 0, 500, lim)
	// March's reservation settles in April: April's spend is untouched.
	if err := r.Settle(t.Context(), 0, 100); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, l, 0, 500, lim)
	_, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 0, 1)
	limitError(t, err, ratelimit.KindBudget)
}
