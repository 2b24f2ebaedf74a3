package ratelimit_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/ratelimit/limittest"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// newClient connects to url the way the limiter wants: the context's
// deadline bounds every read and write.
func newClient(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	return testenv.NewRedisClient(t, url)
}

// suiteTimeout replaces the 50ms default in the conformance suite, whose
// exactness tests pile hundreds of concurrent calls onto one Redis under the
// race detector: there a timeout would turn into a failure mode, which the
// failure tests below cover on purpose.
const suiteTimeout = 5 * time.Second

func redisBackend(t *testing.T) limittest.NewLimiter {
	c := newClient(t, testenv.Redis(t))
	return func(t *testing.T, o ratelimit.Options) *ratelimit.Limiter {
		if o.Timeout == 0 {
			o.Timeout = suiteTimeout
		}
		l := ratelimit.NewRedis(c, o)
		t.Cleanup(func() { l.Close() })
		return l
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	limittest.Run(t, redisBackend(t))
}

func testPrefix() string { return fmt.Sprintf("llmproxy:rl:test:%x:", rand.Uint64()) }

// Two replicas (two limiters, each with its own connection pool) share one
// Redis: 200 concurrent requests against 50 per minute → exactly 50.
func TestRedisTwoReplicasExact(t *testing.T) {
	t.Parallel()
	url := testenv.Redis(t)
	o := ratelimit.Options{Prefix: testPrefix(), Timeout: suiteTimeout}
	replicas := []*ratelimit.Limiter{ratelimit.NewRedis(newClient(t, url), o), ratelimit.NewRedis(newClient(t, url), o)}
	for _, l := range replicas {
		t.Cleanup(func() { l.Close() })
	}
	project := ratelimit.Limit{Scope: "project:two", Group: "project:two", RequestsPerMinute: 50}
	token := ratelimit.Limit{Scope: "token:two", Group: "project:two", RequestsPerMinute: 1000, MaxConcurrent: 500}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			a, err := replicas[i%2].Admit(t.Context(), []ratelimit.Limit{project, token})
			var le *ratelimit.LimitError
			switch {
			case err == nil:
				ok.Add(1)
				a.Done(t.Context())
			case errors.As(err, &le) && le.Kind == ratelimit.KindRequests && le.Scope == project.Scope:
				refused.Add(1)
			default:
				t.Errorf("admit: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 50 || refused.Load() != 150 {
		t.Fatalf("%d admitted, %d refused; want exactly 50 and 150", ok.Load(), refused.Load())
	}
	for _, l := range replicas {
		if l.Degraded() {
			t.Error("a replica degraded")
		}
	}
}

// The windows slide on Redis's clock: with a three-second window (test-only),
// entries really leave it after the retry-after the refusal gave.
func TestRedisWindowSlides(t *testing.T) {
	t.Parallel()
	const win = 3 * time.Second
	l := ratelimit.NewRedis(newClient(t, testenv.Redis(t)), ratelimit.Options{Prefix: testPrefix(), Timeout: suiteTimeout})
	t.Cleanup(func() { l.Close() })
	ratelimit.SetWindow(l, win)
	lim := ratelimit.Limit{Scope: "project:slide", RequestsPerMinute: 2, TokensPerMinute: 100}
	admit := func() (*ratelimit.Admission, error) { return l.Admit(t.Context(), []ratelimit.Limit{lim}) }
	reserve := func(n int64) (*ratelimit.Reservation, error) {
		return l.Reserve(t.Context(), []ratelimit.Limit{lim}, n, 0)
	}

	a, err := admit()
	if err != nil {
		t.Fatal(err)
	}
	if st := a.Requests(); st.Reset != win {
		t.Errorf("reset %v with the only entry just added, want the window (%v)", st.Reset, win)
	}
	if _, err := reserve(60); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := admit(); err != nil {
		t.Fatal(err)
	}
	if _, err := reserve(40); err != nil {
		t.Fatal(err)
	}
	_, err = admit()
	var le *ratelimit.LimitError
	if !errors.As(err, &le) || le.Kind != ratelimit.KindRequests || le.RetryAfter <= 0 || le.RetryAfter > win-500*time.Millisecond {
		t.Fatalf("admit: %v, want a requests refusal with retry after in (0, %v]", err, win-500*time.Millisecond)
	}
	_, err = reserve(1)
	var lt *ratelimit.LimitError
	if !errors.As(err, &lt) || lt.Kind != ratelimit.KindTokens || lt.RetryAfter <= 0 || lt.RetryAfter > win-500*time.Millisecond {
		t.Fatalf("reserve: %v, want a tokens refusal with retry after in (0, %v]", err, win-500*time.Millisecond)
	}
	time.Sleep(max(le.RetryAfter, lt.RetryAfter) + 20*time.Millisecond)
	// The first entries have left (the second may have too, on a slow machine).
	a, err = admit()
	if err != nil {
		t.Fatalf("admit after retry-after: %v", err)
	}
	if st := a.Requests(); st.Remaining > 1 || st.Reset <= 0 || st.Reset > win {
		t.Errorf("status %+v, want at most one left and a reset within the window", st)
	}
	r, err := reserve(60)
	if err != nil {
		t.Fatalf("reserve after retry-after: %v", err)
	}
	if st := r.Tokens(); st.Remaining > 40 || st.Reset <= 0 || st.Reset > win {
		t.Errorf("tokens status %+v, want at most 40 left and a reset within the window", st)
	}
}

// Keys are prefix, the group as hash tag, the scope and the counter — plus,
// for a call that counts a lifetime or charges a budget, the call's record
// under the group: all keys of one request share a Redis Cluster slot, and
// nothing else is in them.
func TestRedisKeys(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.Redis(t))
	prefix := testPrefix()
	l := ratelimit.NewRedis(c, ratelimit.Options{Prefix: prefix, Timeout: suiteTimeout})
	t.Cleanup(func() { l.Close() })
	all := ratelimit.Limit{RequestsPerMinute: 10, TokensPerMinute: 100, MaxConcurrent: 10, MonthlyBudget: 100, MaxRequests: 10}
	project, token := all, all
	project.Scope, project.Group = "project:p1", "project:p1"
	token.Scope, token.Group = "token:t1", "project:p1"
	if _, err := l.Admit(t.Context(), []ratelimit.Limit{project, token}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(t.Context(), []ratelimit.Limit{project, token}, 10, 10); err != nil {
		t.Fatal(err)
	}
	// One slot holds them all; on a Redis Cluster, KEYS asks the node of it.
	keys, err := testenv.NodeFor(t, c, prefix+"{project:p1}").Keys(t.Context(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, scope := range []string{"project:p1", "token:t1"} {
		for _, k := range []string{"req", "conc", "life", "budget", "tok", "toksum"} {
			want[prefix+"{project:p1}:"+scope+":"+k] = true
		}
	}
	records := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefix+"{project:p1}:call:") {
			// The admission's (lifetime counted) and the reservation's
			// (budget charged); a record lives minutes, not months.
			records++
			if ttl := c.PTTL(t.Context(), k).Val(); ttl > 5*time.Minute {
				t.Errorf("call record %s lives %v, want at most 5m", k, ttl)
			}
			continue
		}
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
		delete(want, k)
	}
	if records != 2 {
		t.Errorf("%d call records, want 2 (the admission's and the reservation's)", records)
	}
	for k := range want {
		t.Errorf("missing key %q", k)
	}
	slots := map[int64]bool{}
	for _, k := range keys {
		slots[keySlot(k)] = true
	}
	if len(slots) != 1 {
		t.Errorf("one request's keys span %d cluster slots", len(slots))
	}
	// Every key expires (a lifetime count after 30 idle days).
	for _, k := range keys {
		if ttl := c.PTTL(t.Context(), k).Val(); ttl <= 0 {
			t.Errorf("key %s has no expiry (%v)", k, ttl)
		}
	}
}

// keySlot is Redis Cluster's hash slot of a key (CRC16 of its hash tag).
func keySlot(key string) int64 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for _, b := range []byte(key) {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int64(crc) % 16384
}

// The scripts compute the budget's month from Redis's clock in Lua, which
// has no date functions: check them against Go's calendar.
func TestLuaMonth(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.Redis(t))
	var times []time.Time
	for y := 1970; y <= 2200; y += 7 {
		for m := time.January; m <= time.December; m++ {
			start := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
			times = append(times, start, start.Add(-time.Microsecond), start.Add(time.Microsecond))
		}
	}
	for _, y := range []int{2000, 2024, 2100} { // leap-year rules
		times = append(times, time.Date(y, 2, 29, 12, 0, 0, 0, time.UTC), time.Date(y, 3, 1, 0, 0, 0, 0, time.UTC).Add(-time.Microsecond))
	}
	for range 2000 {
		times = append(times, time.UnixMicro(rand.Int64N(7e15)))
	}
	for _, tm := range times {
		got, err := ratelimit.LuaMonth(t.Context(), c, tm.UnixMicro())
		if err != nil {
			t.Fatal(err)
		}
		if want := tm.UTC().Format("2006-01"); got != want {
			t.Errorf("month_of(%s) = %s, want %s", tm.UTC().Format(time.RFC3339Nano), got, want)
		}
	}
}

// A client built without ContextTimeoutEnabled gets a warning.
func TestRedisWarnsWithoutContextTimeout(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testenv.RedisServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	logs := &testenv.LogBuffer{}
	l := ratelimit.NewRedis(c, ratelimit.Options{Logger: zerologTo(logs)})
	l.Close()
	if !strings.Contains(logs.String(), "ContextTimeoutEnabled") {
		t.Errorf("no warning about ContextTimeoutEnabled in %q", logs.String())
	}
}

func zerologTo(w *testenv.LogBuffer) zerolog.Logger { return zerolog.New(w) }
