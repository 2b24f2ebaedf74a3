package ratelimit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// probeTimeout is the limiters' Timeout in these tests: the 50ms default
// can be exceeded by a healthy Redis on a loaded two-core CI machine, which
// would fail the steps that expect Redis to be used.
const probeTimeout = 200 * time.Millisecond

// stallBound is how long any call may take while Redis is down or hung: the
// timeout plus slack for the race detector and a busy shared machine (calls
// take the timeout, ~200ms; rare outliers of several hundred ms more were seen
// only under heavy machine load). Without the timeout a hung Redis would
// stall a call for go-redis's 3s read timeout.
const stallBound = 5 * probeTimeout

// recoveryBound is how long the limiter may take to notice Redis is back
// (it probes every second).
const recoveryBound = 5 * time.Second

// timed runs f and fails t if it took longer than stallBound.
func timed(t *testing.T, what string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	d := time.Since(start)
	if d > stallBound {
		t.Errorf("%s took %v with redis down, want under %v", what, d, stallBound)
	}
	if d > 10*time.Millisecond {
		t.Logf("%s took %v", what, d)
	}
}

func waitRecovered(t *testing.T, l *ratelimit.Limiter) {
	t.Helper()
	deadline := time.Now().Add(recoveryBound)
	for l.Degraded() {
		if time.Now().After(deadline) {
			t.Fatalf("still degraded %v after redis came back", recoveryBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A limiter under test, with its own log and metrics.
type probe struct {
	name string
	l    *ratelimit.Limiter
	logs *testenv.LogBuffer
	reg  *prometheus.Registry
	o    ratelimit.Options
}

func newProbe(t *testing.T, url, name string, modes map[ratelimit.Kind]ratelimit.FailureMode) *probe {
	p := &probe{name: name, logs: &testenv.LogBuffer{}, reg: prometheus.NewRegistry()}
	p.o = ratelimit.Options{Prefix: testPrefix(), Timeout: probeTimeout, FailureModes: modes, Registerer: p.reg, Logger: zerologTo(p.logs)}
	p.l = ratelimit.NewRedis(newClient(t, url), p.o)
	t.Cleanup(func() { p.l.Close() })
	return p
}

func (p *probe) gauge(t *testing.T) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "llm_proxy_ratelimit_degraded" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no llm_proxy_ratelimit_degraded gauge")
	return -1
}

func (p *probe) backendErrors() float64 {
	mfs, _ := p.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "llm_proxy_ratelimit_backend_errors_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func allModes(m ratelimit.FailureMode) map[ratelimit.Kind]ratelimit.FailureMode {
	return map[ratelimit.Kind]ratelimit.FailureMode{
		ratelimit.KindRequests: m, ratelimit.KindTokens: m, ratelimit.KindConcurrency: m,
		ratelimit.KindBudget: m, ratelimit.KindLifetime: m,
	}
}

// Redis is killed mid-run: every failure mode does what it declares, no call
// stalls, the degraded state shows in the metric and in one warning; then
// Redis comes back on the same port and the same limiters use it again.
func TestRedisKilledAndRestarted(t *testing.T) {
	t.Parallel()
	srv := testenv.NewOwnedRedis(t)
	closed := newProbe(t, srv.URL(), "closed", allModes(ratelimit.FailClosed))
	open := newProbe(t, srv.URL(), "open", allModes(ratelimit.FailOpen))
	local := newProbe(t, srv.URL(), "local", allModes(ratelimit.FailLocal))
	defaults := newProbe(t, srv.URL(), "default", nil)
	probes := []*probe{closed, open, local, defaults}

	lim := ratelimit.Limit{Scope: "project:f", RequestsPerMinute: 2, TokensPerMinute: 100, MaxConcurrent: 5, MaxRequests: 1000}
	withBudget := lim
	withBudget.MonthlyBudget = 1_000_000
	ctx := t.Context()

	// Healthy: one request each through Redis.
	for _, p := range probes {
		if _, err := p.l.Admit(ctx, []ratelimit.Limit{withBudget}); err != nil {
			t.Fatalf("%s: admit with redis up: %v", p.name, err)
		}
		if p.gauge(t) != 0 {
			t.Fatalf("%s: degraded gauge set while healthy", p.name)
		}
	}

	srv.Stop()

	t.Run("closed", func(t *testing.T) {
		for range 3 {
			timed(t, "admit", func() {
				_, err := closed.l.Admit(ctx, []ratelimit.Limit{withBudget})
				if !errors.Is(err, ratelimit.ErrUnavailable) {
					t.Errorf("admit: %v, want ErrUnavailable", err)
				}
			})
			timed(t, "reserve", func() {
				_, err := closed.l.Reserve(ctx, []ratelimit.Limit{withBudget}, 10, 10)
				if !errors.Is(err, ratelimit.ErrUnavailable) {
					t.Errorf("reserve: %v, want ErrUnavailable", err)
				}
			})
		}
	})
	t.Run("open", func(t *testing.T) {
		// Far past every limit: all allowed, none counted.
		for range 10 {
			timed(t, "admit", func() {
				a, err := open.l.Admit(ctx, []ratelimit.Limit{withBudget})
				if err != nil {
					t.Fatalf("admit: %v, want allowed", err)
				}
				if st := a.Requests(); st != (ratelimit.Status{}) {
					t.Errorf("status %+v, want none: nothing was counted", st)
				}
				a.Done(ctx)
			})
			timed(t, "reserve", func() {
				r, err := open.l.Reserve(ctx, []ratelimit.Limit{withBudget}, 60, 10)
				if err != nil {
					t.Fatalf("reserve: %v, want allowed", err)
				}
				if err := r.Settle(ctx, 60, 10); err != nil {
					t.Error(err)
				}
			})
		}
	})
	t.Run("local", func(t *testing.T) {
		// The in-process limiter enforces the same limits for this replica.
		for i := range 3 {
			timed(t, "admit", func() {
				a, err := local.l.Admit(ctx, []ratelimit.Limit{withBudget})
				if i < 2 {
					if err != nil {
						t.Fatalf("admit %d: %v", i+1, err)
					}
					if st := a.Requests(); st.Limit != 2 || st.Remaining != int64(1-i) {
						t.Errorf("status %+v, want the local count", st)
					}
					return
				}
				var le *ratelimit.LimitError
				if !errors.As(err, &le) || le.Kind != ratelimit.KindRequests {
					t.Errorf("admit 3: %v, want a local requests refusal", err)
				}
			})
		}
		timed(t, "reserve", func() {
			if _, err := local.l.Reserve(ctx, []ratelimit.Limit{withBudget}, 60, 10); err != nil {
				t.Fatalf("reserve: %v", err)
			}
			_, err := local.l.Reserve(ctx, []ratelimit.Limit{withBudget}, 60, 10)
			var le *ratelimit.LimitError
			if !errors.As(err, &le) || le.Kind != ratelimit.KindTokens {
				t.Errorf("reserve: %v, want a local tokens refusal", err)
			}
		})
	})
	t.Run("default", func(t *testing.T) {
		// The budget fails closed; everything else local.
		timed(t, "admit", func() {
			_, err := defaults.l.Admit(ctx, []ratelimit.Limit{withBudget})
			if !errors.Is(err, ratelimit.ErrUnavailable) || !strings.Contains(err.Error(), "budget") {
				t.Errorf("admit with a budget: %v, want ErrUnavailable for the budget", err)
			}
		})
		for i := range 3 {
			timed(t, "admit", func() {
				_, err := defaults.l.Admit(ctx, []ratelimit.Limit{lim})
				var le *ratelimit.LimitError
				if i < 2 && err != nil || i == 2 && !errors.As(err, &le) {
					t.Errorf("admit %d without a budget: %v, want the local limiter's answer", i+1, err)
				}
			})
		}
	})

	for _, p := range probes {
		if !p.l.Degraded() || p.gauge(t) != 1 {
			t.Errorf("%s: Degraded() = %v, gauge %v; want degraded", p.name, p.l.Degraded(), p.gauge(t))
		}
		if p.backendErrors() < 1 {
			t.Errorf("%s: no backend error counted", p.name)
		}
		if n := strings.Count(p.logs.String(), "redis limiter degraded"); n != 1 {
			t.Errorf("%s: %d degraded warnings, want one for the transition:\n%s", p.name, n, p.logs.String())
		}
	}

	// Still down a little later: still no stall, and the probe keeps counting errors.
	time.Sleep(1200 * time.Millisecond)
	timed(t, "admit", func() { _, _ = local.l.Admit(ctx, []ratelimit.Limit{lim}) })

	srv.Start()
	for _, p := range probes {
		waitRecovered(t, p.l)
		if p.gauge(t) != 0 {
			t.Errorf("%s: degraded gauge still set after recovery", p.name)
		}
		if !strings.Contains(p.logs.String(), "redis limiter recovered") {
			t.Errorf("%s: no recovery log:\n%s", p.name, p.logs.String())
		}
	}

	// Back on Redis (a fresh, empty one): counts are shared again with
	// another replica on the same prefix.
	for _, p := range probes {
		other := ratelimit.NewRedis(newClient(t, srv.URL()), ratelimit.Options{Prefix: p.o.Prefix, Timeout: suiteTimeout})
		t.Cleanup(func() { other.Close() })
		one := ratelimit.Limit{Scope: "project:after", RequestsPerMinute: 1, MonthlyBudget: 1000}
		if _, err := p.l.Admit(ctx, []ratelimit.Limit{one}); err != nil {
			t.Fatalf("%s: admit after recovery: %v", p.name, err)
		}
		_, err := other.Admit(ctx, []ratelimit.Limit{one})
		var le *ratelimit.LimitError
		if !errors.As(err, &le) || le.Kind != ratelimit.KindRequests {
			t.Errorf("%s: other replica's admit: %v, want refused by the shared count", p.name, err)
		}
		if p.l.Degraded() {
			t.Errorf("%s: degraded again", p.name)
		}
	}
}

// A hung Redis (connections accepted, nothing answered) is the case a
// missing timeout turns into a stall. Calls return within the bound; a
// concurrency slot released meanwhile is released on Redis once it answers
// again.
func TestRedisHung(t *testing.T) {
	t.Parallel()
	fr := testenv.NewLatencyProxy(t, testenv.RedisServer(t))
	p := newProbe(t, fr.URL(), "default", nil)
	ctx := t.Context()
	slot := ratelimit.Limit{Scope: "project:slot", MaxConcurrent: 1}
	held, err := p.l.Admit(ctx, []ratelimit.Limit{slot})
	if err != nil {
		t.Fatal(err)
	}

	fr.Freeze()
	other := ratelimit.Limit{Scope: "project:other", RequestsPerMinute: 5}
	timed(t, "admit on a hung redis", func() {
		if _, err := p.l.Admit(ctx, []ratelimit.Limit{other}); err != nil {
			t.Errorf("admit: %v, want the local limiter's yes", err)
		}
	})
	if !p.l.Degraded() {
		t.Fatal("not degraded after a timeout")
	}
	timed(t, "done on a hung redis", func() { held.Done(ctx) })
	timed(t, "admit while degraded", func() {
		if _, err := p.l.Admit(ctx, []ratelimit.Limit{other}); err != nil {
			t.Errorf("admit: %v", err)
		}
	})
	time.Sleep(1500 * time.Millisecond) // a probe or two time out too
	if !p.l.Degraded() {
		t.Fatal("recovered while redis still hangs")
	}

	fr.Thaw()
	waitRecovered(t, p.l)
	// The slot held before the hang was released on Redis by the replay.
	a, err := p.l.Admit(ctx, []ratelimit.Limit{slot})
	if err != nil {
		t.Fatalf("admit after recovery: %v; the release made while redis hung was lost", err)
	}
	a.Done(ctx)
}

// A caller that gives up is not a Redis failure.
func TestRedisCallerCancelIsNotDegraded(t *testing.T) {
	t.Parallel()
	p := newProbe(t, testenv.Redis(t), "default", nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := p.l.Admit(ctx, []ratelimit.Limit{{Scope: "project:c", RequestsPerMinute: 1}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("admit with a cancelled context: %v, want context.Canceled", err)
	}
	if p.l.Degraded() {
		t.Error("a cancelled caller degraded the limiter")
	}
}
