// Package cachetest is the conformance suite of [cachefilter.Cache]: one set
// of tests that every backend (memory, Redis) must pass unchanged.
package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

// Harness is a cache under test and what the suite must know of its backend.
type Harness struct {
	Cache *cachefilter.Cache
	// Advance lets d pass on the cache's clock: a fake clock moves, a
	// backend on real time (Redis) sleeps.
	Advance func(d time.Duration)
	// Now reads the cache's clock.
	Now func() time.Time
	// MaxBytes is the byte bound at which the cache itself evicts; 0 when
	// the backend leaves that to the server (Redis's maxmemory).
	MaxBytes int64
}

// NewCache returns a new, empty cache whose entries may be at most
// maxEntryBytes. Caches from separate calls must not share entries: the
// suite purges them all.
type NewCache func(t *testing.T, maxEntryBytes int) Harness

// Run runs the suite, in parallel subtests.
func Run(t *testing.T, newCache NewCache) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, newCache NewCache)
	}{
		{"GetSet", testGetSet},
		{"TTLExpiry", testTTL},
		{"SizeLimit", testSizeLimit},
		{"InvalidInput", testInvalid},
		{"TenantIsolation", testTenants},
		{"PurgeCounts", testPurge},
		{"PurgeExpiredNotCounted", testPurgeExpired},
		{"PurgePrefix", testPurgePrefix},
		{"CoalescingOneLeader", testCoalesce},
		{"CoalescingLeaderFails", testCoalesceFail},
		{"CoalescingWaitBounded", testCoalesceWait},
		{"AcquireAfterFill", testAcquireAfterFill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, newCache)
		})
	}
	// Eviction is the cache's own only where it bounds memory itself; a
	// Redis server's memory bound is the server's configuration.
	if newCache(t, testMaxEntry).MaxBytes > 0 {
		t.Run("Eviction", func(t *testing.T) {
			t.Parallel()
			testEviction(t, newCache)
		})
	}
}

const testMaxEntry = 64 << 10

func entry(body string, ttl time.Duration) *cachefilter.Entry {
	return &cachefilter.Entry{
		Status: 200,
		Header: map[string]string{"content-type": "application/json", "openai-model": "gpt-test"},
		Body:   []byte(body),
		TTL:    ttl,
	}
}

func mustSet(t *testing.T, c *cachefilter.Cache, project, key string, e *cachefilter.Entry) {
	t.Helper()
	if err := c.Set(context.Background(), project, key, e); err != nil {
		t.Fatalf("Set(%q, %q): %v", project, key, err)
	}
}

// get returns the body stored under project/key, or "" on a miss.
func get(t *testing.T, c *cachefilter.Cache, project, key string) string {
	t.Helper()
	e, ok, err := c.Get(context.Background(), project, key)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", project, key, err)
	}
	if !ok {
		if e != nil {
			t.Fatalf("Get(%q, %q): miss with an entry", project, key)
		}
		return ""
	}
	return string(e.Body)
}

func purged(t *testing.T, what string, want int, n int, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if n != want {
		t.Fatalf("%s removed %d entries, want %d", what, n, want)
	}
}

func testGetSet(t *testing.T, newCache NewCache) {
	h := newCache(t, testMaxEntry)
	c, ctx := h.Cache, context.Background()
	if got := get(t, c, "p1", "k1"); got != "" {
		t.Fatalf("empty cache returned %q", got)
	}
	in := entry(`{"a":1}`, time.Hour)
	in.Header["set-cookie"] = "session=secret"
	in.Header["authorization"] = "Bearer sk-secret"
	in.Header["x-request-id"] = "req-1"
	in.Stream = true
	in.Path = "/v1/models"
	mustSet(t, c, "p1", "k1", in)
	in.Body[0] = 'X' // Set copied the entry
	e, ok, err := c.Get(ctx, "p1", "k1")
	if err != nil || !ok {
		t.Fatalf("Get after Set: ok=%v err=%v", ok, err)
	}
	if string(e.Body) != `{"a":1}` || e.Status != 200 || !e.Stream || e.TTL != time.Hour || e.Path != "/v1/models" {
		t.Fatalf("Get = %+v", e)
	}
	want := map[string]string{"content-type": "application/json", "openai-model": "gpt-test"}
	if fmt.Sprint(e.Header) != fmt.Sprint(want) {
		t.Fatalf("stored headers %v, want only %v", e.Header, want)
	}
	if e.StoredAt.IsZero() {
		t.Fatal("StoredAt not filled in")
	}
	mustSet(t, c, "p1", "k1", entry("second", time.Hour))
	if got := get(t, c, "p1", "k1"); got != "second" {
		t.Fatalf("after overwrite got %q", got)
	}
	if got := get(t, c, "p1", "k2"); got != "" {
		t.Fatalf("other key got %q", got)
	}
}

func testTTL(t *testing.T, newCache NewCache) {
	h := newCache(t, testMaxEntry)
	c := h.Cache
	mustSet(t, c, "p", "short", entry("short", 1200*time.Millisecond))
	mustSet(t, c, "p", "long", entry("long", time.Hour))
	h.Advance(500 * time.Millisecond)
	e, ok, err := c.Get(context.Background(), "p", "short")
	if err != nil || !ok {
		t.Fatalf("fresh entry: ok=%v err=%v", ok, err)
	}
	if r := e.Remaining(h.Now()); r <= 0 || r > 800*time.Millisecond {
		t.Fatalf("remaining %v after 500ms of 1.2s", r)
	}
	h.Advance(1200 * time.Millisecond)
	if got := get(t, c, "p", "short"); got != "" {
		t.Fatalf("expired entry still served: %q", got)
	}
	if got := get(t, c, "p", "long"); got != "long" {
		t.Fatalf("long-lived entry gone: %q", got)
	}
	// An entry stored long ago keeps only what is left of its TTL.
	old := entry("old", time.Hour)
	old.StoredAt = h.Now().Add(-2 * time.Hour)
	if err := c.Set(context.Background(), "p", "old", old); !errors.Is(err, cachefilter.ErrInvalidEntry) {
		t.Fatalf("Set of a stale entry: %v, want ErrInvalidEntry", err)
	}
}

func testSizeLimit(t *testing.T, newCache NewCache) {
	const limit = 4096
	h := newCache(t, limit)
	c := h.Cache
	err := c.Set(context.Background(), "p", "big", entry(strings.Repeat("x", limit), time.Hour))
	if !errors.Is(err, cachefilter.ErrTooLarge) {
		t.Fatalf("Set over the limit: %v, want ErrTooLarge", err)
	}
	if got := get(t, c, "p", "big"); got != "" {
		t.Fatal("refused entry was stored")
	}
	mustSet(t, c, "p", "small", entry(strings.Repeat("x", limit/2), time.Hour))
	if got := get(t, c, "p", "small"); len(got) != limit/2 {
		t.Fatalf("entry within the limit: got %d bytes", len(got))
	}
}

func testInvalid(t *testing.T, newCache NewCache) {
	c, ctx := newCache(t, testMaxEntry).Cache, context.Background()
	for _, tc := range []struct {
		name string
		e    *cachefilter.Entry
	}{
		{"nil", nil},
		{"no status", &cachefilter.Entry{TTL: time.Hour}},
		{"no TTL", &cachefilter.Entry{Status: 200}},
		{"negative TTL", &cachefilter.Entry{Status: 200, TTL: -time.Second}},
	} {
		if err := c.Set(ctx, "p", "k", tc.e); !errors.Is(err, cachefilter.ErrInvalidEntry) {
			t.Errorf("Set(%s) = %v, want ErrInvalidEntry", tc.name, err)
		}
	}
	if err := c.Set(ctx, "", "k", entry("x", time.Hour)); !errors.Is(err, cachefilter.ErrNoProject) {
		t.Errorf("Set without project = %v", err)
	}
	if _, _, err := c.Get(ctx, "", "k"); !errors.Is(err, cachefilter.ErrNoProject) {
		t.Errorf("Get without project = %v", err)
	}
	if _, err := c.PurgeProject(ctx, ""); !errors.Is(err, cachefilter.ErrNoProject) {
		t.Errorf("PurgeProject without project = %v", err)
	}
}

func testTenants(t *testing.T, newCache NewCache) {
	c, ctx := newCache(t, testMaxEntry).Cache, context.Background()
	mustSet(t, c, "projA", "k", entry("A", time.Hour))
	if got := get(t, c, "projB", "k"); got != "" {
		t.Fatalf("project B read project A's entry: %q", got)
	}
	mustSet(t, c, "projB", "k", entry("B", time.Hour))
	if a, b := get(t, c, "projA", "k"), get(t, c, "projB", "k"); a != "A" || b != "B" {
		t.Fatalf("A=%q B=%q", a, b)
	}
	// Project ids that look like prefixes or patterns of others.
	for _, p := range []string{"p", "p:x", "p*", "p?", "p[a]", `p\`, "p%3A"} {
		mustSet(t, c, p, "k", entry(p, time.Hour))
	}
	n, err := c.PurgeProject(ctx, "p")
	purged(t, `PurgeProject("p")`, 1, n, err)
	for _, p := range []string{"p:x", "p*", "p?", "p[a]", `p\`, "p%3A"} {
		if got := get(t, c, p, "k"); got != p {
			t.Errorf("purging project p touched project %q: got %q", p, got)
		}
	}
	n, err = c.PurgeProject(ctx, "p*")
	purged(t, `PurgeProject("p*")`, 1, n, err)
	n, err = c.PurgeProject(ctx, "projA")
	purged(t, "PurgeProject(projA)", 1, n, err)
	if got := get(t, c, "projB", "k"); got != "B" {
		t.Fatalf("purging A removed B's entry")
	}
}

func testPurge(t *testing.T, newCache NewCache) {
	c, ctx := newCache(t, testMaxEntry).Cache, context.Background()
	for i := range 3 {
		mustSet(t, c, "p1", fmt.Sprint("k", i), entry("x", time.Hour))
	}
	for i := range 2 {
		mustSet(t, c, "p2", fmt.Sprint("k", i), entry("y", time.Hour))
	}
	n, err := c.Purge(ctx, "p1", "k0")
	purged(t, "Purge(p1, k0)", 1, n, err)
	n, err = c.Purge(ctx, "p1", "k0")
	purged(t, "second Purge(p1, k0)", 0, n, err)
	n, err = c.Purge(ctx, "p2", "k2")
	purged(t, "Purge of an absent key", 0, n, err)
	n, err = c.PurgeProject(ctx, "p1")
	purged(t, "PurgeProject(p1)", 2, n, err)
	n, err = c.PurgeProject(ctx, "p1")
	purged(t, "second PurgeProject(p1)", 0, n, err)
	if got := get(t, c, "p2", "k1"); got != "y" {
		t.Fatal("PurgeProject(p1) removed p2's entry")
	}
	n, err = c.PurgeAll(ctx)
	purged(t, "PurgeAll", 2, n, err)
	n, err = c.PurgeAll(ctx)
	purged(t, "second PurgeAll", 0, n, err)
	if got := get(t, c, "p2", "k1"); got != "" {
		t.Fatal("entry survived PurgeAll")
	}
}

func testPurgeExpired(t *testing.T, newCache NewCache) {
	h := newCache(t, testMaxEntry)
	c, ctx := h.Cache, context.Background()
	mustSet(t, c, "p", "short", entry("x", 300*time.Millisecond))
	mustSet(t, c, "p", "long", entry("y", time.Hour))
	h.Advance(700 * time.Millisecond)
	n, err := c.Purge(ctx, "p", "short")
	purged(t, "Purge of an expired entry", 0, n, err)
	mustSet(t, c, "p", "short2", entry("x", 300*time.Millisecond))
	h.Advance(700 * time.Millisecond)
	n, err = c.PurgeProject(ctx, "p")
	purged(t, "PurgeProject with an expired entry", 1, n, err)
}

// pathEntry is an entry that knows its request path.
func pathEntry(path string, ttl time.Duration) *cachefilter.Entry {
	e := entry(path, ttl)
	e.Path = path
	return e
}

func testPurgePrefix(t *testing.T, newCache NewCache) {
	h := newCache(t, testMaxEntry)
	c, ctx := h.Cache, context.Background()
	for i, path := range []string{"/v1/models", "/v1/models/gpt-4", "/v1/models-x", "/v1/chat/completions", "/v1/files/a*b", "/v1/files/axb"} {
		mustSet(t, c, "p1", fmt.Sprint("k", i), pathEntry(path, time.Hour))
	}
	mustSet(t, c, "p1", "nopath", entry("no path", time.Hour))
	mustSet(t, c, "p2", "k0", pathEntry("/v1/models", time.Hour))
	mustSet(t, c, "p*", "k0", pathEntry("/v1/models", time.Hour))

	n, err := c.PurgePrefix(ctx, "p1", "/v1/models/")
	purged(t, `PurgePrefix(p1, "/v1/models/")`, 1, n, err)
	n, err = c.PurgePrefix(ctx, "p1", "/v1/models")
	purged(t, `PurgePrefix(p1, "/v1/models")`, 2, n, err) // and /v1/models-x: a string prefix
	n, err = c.PurgePrefix(ctx, "p1", "/v1/models")
	purged(t, "second PurgePrefix", 0, n, err)
	// Glob characters are literal.
	n, err = c.PurgePrefix(ctx, "p1", "/v1/files/a*")
	purged(t, `PurgePrefix(p1, "/v1/files/a*")`, 1, n, err)
	n, err = c.PurgePrefix(ctx, "p1", "/v1/chat/completions/longer")
	purged(t, "PurgePrefix longer than every path", 0, n, err)
	for _, k := range []string{"k0", "k1", "k2", "k4"} {
		if got := get(t, c, "p1", k); got != "" {
			t.Errorf("p1/%s survived its prefix purge: %q", k, got)
		}
	}
	for project, key := range map[string]string{"p2": "k0", "p*": "k0"} {
		if got := get(t, c, project, key); got != "/v1/models" {
			t.Errorf("purging p1's prefix touched project %q: got %q", project, got)
		}
	}

	// Every project: p1's remaining /v1/ entries, p2's and p*'s; never an
	// entry without a path.
	n, err = c.PurgePrefix(ctx, "", "/v1/")
	purged(t, `PurgePrefix("", "/v1/")`, 4, n, err)
	if got := get(t, c, "p1", "nopath"); got != "no path" {
		t.Fatalf("an entry without a path was purged by prefix: %q", got)
	}

	// Expired entries do not count; the index does not count as an entry.
	mustSet(t, c, "p3", "short", pathEntry("/v1/short", 300*time.Millisecond))
	mustSet(t, c, "p3", "long", pathEntry("/v1/long", time.Hour))
	h.Advance(700 * time.Millisecond)
	n, err = c.PurgePrefix(ctx, "p3", "/")
	purged(t, "PurgePrefix with an expired entry", 1, n, err)
	mustSet(t, c, "p3", "again", pathEntry("/v1/again", time.Hour))
	n, err = c.PurgeProject(ctx, "p3")
	purged(t, "PurgeProject of indexed entries", 1, n, err)
	n, err = c.PurgePrefix(ctx, "p3", "/")
	purged(t, "PurgePrefix after PurgeProject", 0, n, err)
	mustSet(t, c, "p3", "again", pathEntry("/v1/again", time.Hour))
	n, err = c.PurgeAll(ctx)
	purged(t, "PurgeAll of indexed entries", 2, n, err)

	for _, bad := range []string{"", "v1/models", "/v1/\x00", "/v1/\n"} {
		if _, err := c.PurgePrefix(ctx, "p1", bad); !errors.Is(err, cachefilter.ErrInvalidPrefix) {
			t.Errorf("PurgePrefix(%q) = %v, want ErrInvalidPrefix", bad, err)
		}
	}
	if err := c.Set(ctx, "p1", "k", pathEntry("no-slash", time.Hour)); !errors.Is(err, cachefilter.ErrInvalidEntry) {
		t.Errorf("Set with a path without '/' = %v, want ErrInvalidEntry", err)
	}
}

func testEviction(t *testing.T, newCache NewCache) {
	h := newCache(t, testMaxEntry)
	c := h.Cache
	size := int(h.MaxBytes / 32)
	body := strings.Repeat("z", size)
	const n = 128 // four times the bound
	for i := range n {
		if err := c.Set(context.Background(), "p", fmt.Sprint(i), entry(body, time.Hour)); err != nil {
			t.Fatalf("Set %d: %v", i, err)
		}
	}
	present := 0
	for i := range n {
		if get(t, c, "p", fmt.Sprint(i)) != "" {
			present++
		}
	}
	if present == 0 {
		t.Fatal("everything was evicted")
	}
	if int64(present*size) > h.MaxBytes {
		t.Fatalf("%d entries of %d bytes kept, over the bound of %d bytes", present, size, h.MaxBytes)
	}
}

// leaderRun makes callers concurrent Acquire calls on one key; the leader
// fills after fill (no Set when fill < 0) and the rest report what they got.
func leaderRun(t *testing.T, c *cachefilter.Cache, callers int, wait, fill time.Duration) (leaders int, hits []string) {
	t.Helper()
	ctx := context.Background()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		nLeader atomic.Int32
		start   = make(chan struct{})
	)
	for range callers {
		wg.Go(func() {
			<-start
			if _, ok, _ := c.Get(ctx, "p", "coalesce"); ok {
				t.Error("hit before any fill")
				return
			}
			leader, e, release := c.Acquire(ctx, "p", "coalesce", wait)
			defer release()
			if leader {
				if e != nil {
					t.Error("leader got an entry")
				}
				nLeader.Add(1)
				if fill >= 0 {
					time.Sleep(fill)
					if err := c.Set(ctx, "p", "coalesce", entry("filled", time.Hour)); err != nil {
						t.Error(err)
					}
				}
				return
			}
			if e == nil {
				t.Error("follower got neither leadership nor an entry")
				return
			}
			mu.Lock()
			hits = append(hits, string(e.Body))
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return int(nLeader.Load()), hits
}

func testCoalesce(t *testing.T, newCache NewCache) {
	c := newCache(t, testMaxEntry).Cache
	leaders, hits := leaderRun(t, c, 20, 10*time.Second, 100*time.Millisecond)
	if leaders != 1 || len(hits) != 19 {
		t.Fatalf("%d leaders and %d coalesced hits, want 1 and 19", leaders, len(hits))
	}
	for _, h := range hits {
		if h != "filled" {
			t.Fatalf("follower got %q", h)
		}
	}
}

func testCoalesceFail(t *testing.T, newCache NewCache) {
	c := newCache(t, testMaxEntry).Cache
	start := time.Now()
	leaders, hits := leaderRun(t, c, 20, 10*time.Second, -1)
	if leaders != 20 || len(hits) != 0 {
		t.Fatalf("leader stored nothing: %d leaders and %d hits, want 20 and 0", leaders, len(hits))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("followers waited %v for a leader that stored nothing", d)
	}
}

func testCoalesceWait(t *testing.T, newCache NewCache) {
	c := newCache(t, testMaxEntry).Cache
	ctx := context.Background()
	leader, _, release := c.Acquire(ctx, "p", "slow", time.Second)
	defer release()
	if !leader {
		t.Fatal("first caller is not the leader")
	}
	start := time.Now()
	leader2, e, release2 := c.Acquire(ctx, "p", "slow", 150*time.Millisecond)
	defer release2()
	if d := time.Since(start); !leader2 || e != nil || d < 150*time.Millisecond || d > 3*time.Second {
		t.Fatalf("follower after its wait: leader=%v entry=%v after %v", leader2, e, d)
	}
	// Another key is not held up.
	if leader3, _, release3 := c.Acquire(ctx, "p", "other", time.Hour); !leader3 {
		t.Fatal("another key was coalesced")
	} else {
		release3()
	}
	// Nor is the same key of another project.
	if leader4, _, release4 := c.Acquire(ctx, "q", "slow", time.Hour); !leader4 {
		t.Fatal("another project's key was coalesced")
	} else {
		release4()
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if leader5, _, release5 := c.Acquire(cctx, "p", "slow", time.Hour); !leader5 {
		t.Fatal("a cancelled caller kept waiting")
	} else {
		release5()
	}
}

func testAcquireAfterFill(t *testing.T, newCache NewCache) {
	c := newCache(t, testMaxEntry).Cache
	mustSet(t, c, "p", "k", entry("there", time.Hour))
	leader, e, release := c.Acquire(context.Background(), "p", "k", time.Second)
	defer release()
	if leader || e == nil || !bytes.Equal(e.Body, []byte("there")) {
		t.Fatalf("Acquire after a fill: leader=%v entry=%v", leader, e)
	}
}
