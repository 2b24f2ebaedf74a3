package ratelimit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// A call that times out on a slow Redis falls back, and Redis may still run
// its script, before or after it answers again. Either way, once it answers,
// what the script charged is undone: no slot leaks, no request is counted
// both locally and on Redis, the budget is charged at most once. Values are
// read straight from Redis, past the proxy.
func TestRedisTimedOutCallCompensated(t *testing.T) {
	t.Parallel()
	srv := testenv.NewOwnedRedis(t)
	direct := newClient(t, srv.URL())

	// The call's script reaches Redis after the caller gave up, but before
	// Redis answers again: it charges, and the recovery undoes it.
	lateBefore := func(t *testing.T, r *rig, charged func() bool, call func()) {
		r.px.SetDelay(testenv.ToRedis, 4*probeTimeout)
		call()
		if !r.l.Degraded() {
			t.Fatal("not degraded after a timeout")
		}
		waitFor(t, "the late script to charge", charged)
		r.px.SetDelay(testenv.ToRedis, 0)
		waitRecovered(t, r.l)
	}
	// The call's script reaches Redis only after Redis answered again and
	// the compensation ran: it must charge nothing.
	lateAfter := func(t *testing.T, r *rig, _ func() bool, call func()) {
		scope := r.prefix + "{project:late}:"
		r.px.Hold(testenv.ToRedis)
		call()
		r.px.FlowNew(testenv.ToRedis)
		waitRecovered(t, r.l)
		r.untilExecuted(t, srv.URL(), scope, func() { r.px.Release(testenv.ToRedis) })
	}

	for _, late := range []struct {
		name string
		run  func(t *testing.T, r *rig, charged func() bool, call func())
	}{
		{"LateBeforeRecovery", lateBefore},
		{"LateAfterRecovery", lateAfter},
	} {
		t.Run(late.name+"/Admit", func(t *testing.T) {
			t.Parallel()
			r := newRig(t, srv.URL(), direct, probeTimeout)
			lim := ratelimit.Limit{Scope: "project:late", RequestsPerMinute: 10, MaxConcurrent: 1, MaxRequests: 100}
			var local *ratelimit.Admission
			late.run(t, r, func() bool { return r.zcard(t, lim, "conc") == 1 }, func() {
				a, err := r.l.Admit(t.Context(), []ratelimit.Limit{lim})
				if err != nil {
					t.Fatalf("admit on a slow redis: %v, want the local limiter's yes", err)
				}
				if st := a.Requests(); st.Limit != 10 || st.Remaining != 9 {
					t.Errorf("status %+v, want the local count", st)
				}
				local = a
			})
			// Redis holds nothing of the timed-out call.
			if n := r.zcard(t, lim, "conc"); n != 0 {
				t.Errorf("%d concurrency slots taken on redis, want 0: the timed-out call's slot leaked", n)
			}
			if n := r.zcard(t, lim, "req"); n != 0 {
				t.Errorf("%d requests logged on redis, want 0: the request counts both locally and on redis", n)
			}
			if n, err := direct.Get(t.Context(), r.key(lim, "life")).Int64(); err != nil && !errors.Is(err, redis.Nil) || n != 0 {
				t.Errorf("lifetime count %d (%v) on redis, want 0", n, err)
			}
			// And through the limiter: the slot is free, one request counted.
			local.Done(t.Context())
			a, err := r.l.Admit(t.Context(), []ratelimit.Limit{lim})
			if err != nil {
				t.Fatalf("admit after recovery: %v", err)
			}
			if st := a.Requests(); st.Remaining != 9 {
				t.Errorf("remaining %d after recovery, want 9: redis counted the timed-out request", st.Remaining)
			}
			_, err = r.l.Admit(t.Context(), []ratelimit.Limit{lim})
			limitErrorOf(t, err, ratelimit.KindConcurrency)
			if r.l.Degraded() {
				t.Error("degraded again")
			}
		})
		t.Run(late.name+"/Reserve", func(t *testing.T) {
			t.Parallel()
			r := newRig(t, srv.URL(), direct, probeTimeout)
			lim := ratelimit.Limit{Scope: "project:late", TokensPerMinute: 1000, MonthlyBudget: 10_000}
			// One reservation through a healthy Redis stands.
			if _, err := r.l.Reserve(t.Context(), []ratelimit.Limit{lim}, 10, 1000); err != nil {
				t.Fatal(err)
			}
			late.run(t, r, func() bool { return r.spent(t, lim) == 1500 }, func() {
				// The budget fails closed by default: refused.
				_, err := r.l.Reserve(t.Context(), []ratelimit.Limit{lim}, 100, 500)
				if !errors.Is(err, ratelimit.ErrUnavailable) {
					t.Fatalf("reserve on a slow redis: %v, want ErrUnavailable", err)
				}
			})
			if got := r.spent(t, lim); got != 1000 {
				t.Errorf("budget spent %d on redis, want 1000: a refused reservation was charged", got)
			}
			if n := r.zcard(t, lim, "tok"); n != 1 {
				t.Errorf("%d token entries on redis, want 1", n)
			}
			if n, err := direct.Get(t.Context(), r.key(lim, "toksum")).Int64(); err != nil || n != 10 {
				t.Errorf("token sum %d (%v) on redis, want 10", n, err)
			}
			res, err := r.l.Reserve(t.Context(), []ratelimit.Limit{lim}, 990, 9000)
			if err != nil {
				t.Fatalf("reserve the rest after recovery: %v", err)
			}
			if st := res.Tokens(); st.Remaining != 0 {
				t.Errorf("remaining %d tokens, want 0", st.Remaining)
			}
		})
	}
}

// A rig is a limiter whose Redis is behind a latency proxy.
type rig struct {
	px     *testenv.LatencyProxy
	l      *ratelimit.Limiter
	prefix string
	direct redis.UniversalClient
}

func newRig(t *testing.T, url string, direct redis.UniversalClient, timeout time.Duration) *rig {
	r := &rig{px: testenv.NewLatencyProxy(t, url), prefix: testPrefix(), direct: direct}
	r.l = ratelimit.NewRedis(newClient(t, r.px.URL()), ratelimit.Options{Prefix: r.prefix, Timeout: timeout})
	t.Cleanup(func() { r.l.Close() })
	r.warm(t)
	return r
}

// warm leaves an idle connection in the pool and the scripts in Redis's
// cache, so that the call under test sends its script at once: not after a
// dial's handshake (which would time out first), nor as EVAL after a
// NOSCRIPT reply.
func (r *rig) warm(t *testing.T) {
	t.Helper()
	warm := []ratelimit.Limit{{Scope: "project:warm", RequestsPerMinute: 1000, TokensPerMinute: 1000}}
	if _, err := r.l.Admit(t.Context(), warm); err != nil {
		t.Fatal(err)
	}
	if _, err := r.l.Reserve(t.Context(), warm, 1, 0); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) key(lim ratelimit.Limit, counter string) string {
	return r.prefix + "{" + lim.Scope + "}:" + lim.Scope + ":" + counter
}

func (r *rig) zcard(t *testing.T, lim ratelimit.Limit, counter string) int64 {
	t.Helper()
	n, err := r.direct.ZCard(t.Context(), r.key(lim, counter)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (r *rig) spent(t *testing.T, lim ratelimit.Limit) int64 {
	t.Helper()
	n, err := r.direct.HGet(t.Context(), r.key(lim, "budget"), "spent").Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// untilExecuted runs f and returns once Redis has run a script on keys
// starting with keyPrefix (seen through MONITOR) and it is done.
func (r *rig) untilExecuted(t *testing.T, url, keyPrefix string, f func()) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", opts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprint(c, "MONITOR\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("MONITOR: %q, %v", line, err)
	}
	f()
	if err := c.SetReadDeadline(time.Now().Add(recoveryBound)); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("redis never ran the held call: %v", err)
		}
		if strings.Contains(line, `] "eval`) && strings.Contains(line, `"`+keyPrefix) {
			break
		}
	}
	// Scripts are atomic and Redis runs one command at a time: once this
	// answers, the held script has finished.
	if err := r.direct.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(recoveryBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", recoveryBound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func limitErrorOf(t *testing.T, err error, kind ratelimit.Kind) {
	t.Helper()
	var le *ratelimit.LimitError
	if !errors.As(err, &le) || le.Kind != kind {
		t.Fatalf("%v, want a %s refusal", err, kind)
	}
}

// A caller that gives up while its script is on the way (its own context,
// not a Redis failure) does not degrade the limiter, and what the script
// charges is undone at once.
func TestRedisAbandonedCallCompensated(t *testing.T) {
	t.Parallel()
	url := testenv.RedisServer(t) // behind a latency proxy: one server
	direct := newClient(t, url)
	// Redis is slow (delay) but within the limiter's timeout; the caller's
	// deadline is shorter.
	const delay = 300 * time.Millisecond
	r := newRig(t, url, direct, 4*delay)
	lim := ratelimit.Limit{Scope: "project:gaveup", RequestsPerMinute: 10, MaxConcurrent: 1, MaxRequests: 100}
	r.px.SetDelay(testenv.ToRedis, delay)
	ctx, cancel := context.WithTimeout(t.Context(), delay/6)
	defer cancel()
	r.untilExecuted(t, url, r.prefix+"{project:gaveup}:", func() {
		if _, err := r.l.Admit(ctx, []ratelimit.Limit{lim}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("admit: %v, want the caller's deadline", err)
		}
		if r.l.Degraded() {
			t.Fatal("a caller giving up degraded the limiter")
		}
	})
	// Redis ran the call (or its compensation first, which voids the call).
	waitFor(t, "the abandoned call's charges to be undone", func() bool {
		return direct.ZCard(t.Context(), r.key(lim, "conc")).Val() == 0 &&
			direct.ZCard(t.Context(), r.key(lim, "req")).Val() == 0 &&
			slices.Contains([]string{"", "0"}, direct.Get(t.Context(), r.key(lim, "life")).Val())
	})
	r.px.SetDelay(testenv.ToRedis, 0)
	waitRecovered(t, r.l) // in case a compensation timed out on the slow redis
	a, err := r.l.Admit(t.Context(), []ratelimit.Limit{lim})
	if err != nil {
		t.Fatalf("admit: %v; the abandoned call's slot leaked", err)
	}
	if st := a.Requests(); st.Remaining != 9 {
		t.Errorf("remaining %d, want 9", st.Remaining)
	}
}

// go-redis sends a script again on a new connection when the first one
// breaks before the reply (EOF): the same call, with the same id, runs twice.
// The second run charges nothing and answers as the first did.
func TestRedisResentCallChargedOnce(t *testing.T) {
	t.Parallel()
	url := testenv.RedisServer(t) // behind a latency proxy: one server
	direct := newClient(t, url)
	px := testenv.NewLatencyProxy(t, url)
	prefix := testPrefix()
	// A timeout long enough for the resend.
	l := ratelimit.NewRedis(newClient(t, px.URL()), ratelimit.Options{Prefix: prefix, Timeout: suiteTimeout})
	t.Cleanup(func() { l.Close() })
	r := &rig{px: px, l: l, prefix: prefix, direct: direct}

	// resent runs call on the pool's idle connection and, once Redis ran it,
	// breaks that connection before the reply gets through.
	resent := func(ran func() bool, call func()) {
		t.Helper()
		r.warm(t)
		px.Hold(testenv.ToClient)
		px.FlowNew(testenv.ToClient)
		stop, cut := make(chan struct{}), make(chan bool, 1)
		go func() {
			for !ran() {
				select {
				case <-stop:
					cut <- false
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			px.Cut()
			cut <- true
		}()
		call()
		close(stop)
		if !<-cut {
			t.Error("the call was answered without its connection breaking: nothing was resent")
		}
		px.Release(testenv.ToClient)
	}

	lim := ratelimit.Limit{Scope: "project:resent", RequestsPerMinute: 10, MaxConcurrent: 1, MaxRequests: 100,
		TokensPerMinute: 1000, MonthlyBudget: 10_000}
	resent(func() bool { return direct.ZCard(t.Context(), r.key(lim, "conc")).Val() == 1 }, func() {
		a, err := l.Admit(t.Context(), []ratelimit.Limit{lim})
		if err != nil {
			t.Fatalf("admit: %v", err)
		}
		if st := a.Requests(); st.Limit != 10 || st.Remaining != 9 {
			t.Errorf("status %+v, want 9 remaining", st)
		}
	})
	if n, err := direct.Get(t.Context(), r.key(lim, "life")).Int64(); err != nil || n != 1 {
		t.Errorf("lifetime count %d (%v), want 1", n, err)
	}
	if n := r.zcard(t, lim, "req"); n != 1 {
		t.Errorf("%d requests logged, want 1", n)
	}
	resent(func() bool { return direct.ZCard(t.Context(), r.key(lim, "tok")).Val() == 1 }, func() {
		res, err := l.Reserve(t.Context(), []ratelimit.Limit{lim}, 100, 500)
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		if st := res.Tokens(); st.Remaining != 900 {
			t.Errorf("tokens status %+v, want 900 remaining", st)
		}
		// Settled as reserved: the budget was charged, once.
		if err := res.Settle(t.Context(), 100, 500); err != nil {
			t.Fatal(err)
		}
	})
	if got := r.spent(t, lim); got != 500 {
		t.Errorf("budget spent %d, want 500", got)
	}
	if n, err := direct.Get(t.Context(), r.key(lim, "toksum")).Int64(); err != nil || n != 100 {
		t.Errorf("token sum %d (%v), want 100", n, err)
	}
	if l.Degraded() {
		t.Error("degraded")
	}
}
