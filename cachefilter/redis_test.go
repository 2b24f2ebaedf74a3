package cachefilter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/cachefilter/cachetest"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// newClient connects to url the way the cache wants: the context's deadline
// bounds every read and write.
func newClient(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	return testenv.NewRedisClient(t, url)
}

func testPrefix() string { return fmt.Sprintf("llmproxy:cache:test:%x:", rand.Uint64()) }

// suiteTimeout is generous: the suite runs many parallel tests on one Redis
// under the race detector, and a timeout there would be a false failure.
const suiteTimeout = 5 * time.Second

func TestRedis(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.Redis(t))
	cachetest.Run(t, func(t *testing.T, maxEntryBytes int) cachetest.Harness {
		return cachetest.Harness{
			Cache:   cachefilter.NewRedis(c, cachefilter.Options{Prefix: testPrefix(), Timeout: suiteTimeout, MaxEntryBytes: maxEntryBytes}),
			Advance: time.Sleep,
			Now:     time.Now,
		}
	})
}

// With a lock TTL, the suite holds as well, and the lock makes replicas (two
// caches on one Redis, each with its own in-process coalescing) coalesce.
func TestRedisLocked(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.Redis(t))
	cachetest.Run(t, func(t *testing.T, maxEntryBytes int) cachetest.Harness {
		return cachetest.Harness{
			Cache: cachefilter.NewRedis(c, cachefilter.Options{
				Prefix: testPrefix(), Timeout: suiteTimeout, MaxEntryBytes: maxEntryBytes, LockTTL: 10 * time.Second,
			}),
			Advance: time.Sleep,
			Now:     time.Now,
		}
	})
}

// Two replicas (two caches with their own coalescing, one Redis and prefix)
// with the cross-replica lock: 20 concurrent identical misses, 10 per
// replica, go upstream once.
func TestRedisCoalesceAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := testenv.Redis(t)
	prefix := testPrefix()
	replicas := []*cachefilter.Cache{
		cachefilter.NewRedis(newClient(t, url), cachefilter.Options{Prefix: prefix, Timeout: suiteTimeout, LockTTL: 10 * time.Second}),
		cachefilter.NewRedis(newClient(t, url), cachefilter.Options{Prefix: prefix, Timeout: suiteTimeout, LockTTL: 10 * time.Second}),
	}
	ctx := context.Background()
	var leaders, hits atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 20 {
		c := replicas[i%2]
		wg.Go(func() {
			<-start
			leader, e, release := c.Acquire(ctx, "p", "k", 10*time.Second)
			defer release()
			if !leader {
				if e == nil || string(e.Body) != "filled" {
					t.Errorf("follower got %+v", e)
				}
				hits.Add(1)
				return
			}
			leaders.Add(1)
			time.Sleep(200 * time.Millisecond)
			if err := c.Set(ctx, "p", "k", &cachefilter.Entry{Status: 200, Body: []byte("filled"), TTL: time.Minute}); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if leaders.Load() != 1 || hits.Load() != 19 {
		t.Fatalf("%d leaders, %d hits; want 1 and 19", leaders.Load(), hits.Load())
	}
}

// A Redis that is down, or accepts connections and never answers: Get fails
// (the client has no timeouts of its own, so only the cache's can end it),
// the caller serves the request as a miss, and the metrics say so. Set and
// purges fail too, and Acquire fails open.
func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	go func() { // accept and hold connections, never answer
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close()

	for _, tc := range []struct{ name, addr string }{{"down", downAddr}, {"hung", hung.Addr().String()}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := redis.NewClient(&redis.Options{Addr: tc.addr, ContextTimeoutEnabled: true, MaxRetries: -1,
				ReadTimeout: -1, WriteTimeout: -1}) // block until the context's deadline, however far
			t.Cleanup(func() { c.Close() })
			reg := prometheus.NewRegistry()
			const timeout = 100 * time.Millisecond
			cache := cachefilter.NewRedis(c, cachefilter.Options{Timeout: timeout, Registerer: reg, LockTTL: time.Second})
			ctx := context.Background()

			type result struct {
				e   *cachefilter.Entry
				ok  bool
				err error
			}
			got := make(chan result, 1)
			go func() {
				e, ok, err := cache.Get(ctx, "p", "k")
				got <- result{e, ok, err}
			}()
			var r result
			select {
			case r = <-got:
			case <-time.After(30 * time.Second): // only a hang gets here
				t.Fatalf("Get still blocked after 30s with a %v timeout", timeout)
			}
			if r.e != nil || r.ok || r.err == nil {
				t.Fatalf("Get = %v, %v, %v; want a miss with an error", r.e, r.ok, r.err)
			}
			if err := cache.Set(ctx, "p", "k", &cachefilter.Entry{Status: 200, TTL: time.Minute}); err == nil {
				t.Error("Set succeeded")
			}
			if _, err := cache.PurgeAll(ctx); err == nil {
				t.Error("PurgeAll succeeded")
			}
			leader, _, release := cache.Acquire(ctx, "p", "k", time.Second)
			release()
			if !leader {
				t.Error("Acquire did not fail open")
			}
			if got := counterValue(t, reg, "llm_proxy_cache_requests_total", "error"); got != 1 {
				t.Errorf("requests{result=error} = %v, want 1", got)
			}
			if got := counterValue(t, reg, "llm_proxy_cache_backend_errors_total", ""); got < 3 {
				t.Errorf("backend errors = %v, want at least 3", got)
			}
		})
	}
}

// The path index lies beside its project's entries (one hash tag), holds
// "<path>\x00<key>" scored by expiry, lives no longer than its entries, and
// goes with a project purge and with everything; no key is left behind.
func TestRedisPathIndex(t *testing.T) {
	t.Parallel()
	c := newClient(t, testenv.Redis(t))
	prefix := testPrefix()
	cache := cachefilter.NewRedis(c, cachefilter.Options{Prefix: prefix, Timeout: suiteTimeout})
	ctx := context.Background()
	set := func(key, path string, ttl time.Duration) {
		t.Helper()
		if err := cache.Set(ctx, "p:1", key, &cachefilter.Entry{Status: 200, Body: []byte("x"), TTL: ttl, Path: path}); err != nil {
			t.Fatal(err)
		}
	}
	index := prefix + "{p%3A1}!paths"
	set("short", "/v1/short", 200*time.Millisecond)
	set("k", "/v1/models", time.Minute)
	if n, err := c.Exists(ctx, prefix+"{p%3A1}:k").Result(); err != nil || n != 1 {
		t.Fatalf("entry key: exists=%d err=%v", n, err)
	}
	members, err := c.ZRangeWithScores(ctx, index, 0, -1).Result()
	if err != nil || len(members) != 2 || members[1].Member != "/v1/models\x00k" {
		t.Fatalf("index = %v, %v", members, err)
	}
	if ttl := c.PTTL(ctx, index).Val(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Fatalf("index TTL %v, want that of its longest-lived entry (1m)", ttl)
	}
	// The next store prunes the member of the entry that expired.
	time.Sleep(400 * time.Millisecond)
	set("k2", "/v1/files", time.Minute)
	if got := c.ZRange(ctx, index, 0, -1).Val(); len(got) != 2 || got[0] != "/v1/models\x00k" || got[1] != "/v1/files\x00k2" {
		t.Fatalf("index after pruning = %q", got)
	}
	if n, err := cache.PurgeProject(ctx, "p:1"); err != nil || n != 2 {
		t.Fatalf("PurgeProject = %d, %v", n, err)
	}
	if n := c.Exists(ctx, index).Val(); n != 0 {
		t.Fatal("the index outlived its project's purge")
	}
	set("k", "/v1/models", time.Minute)
	if n, err := cache.PurgeAll(ctx); err != nil || n != 1 {
		t.Fatalf("PurgeAll = %d, %v", n, err)
	}
	testenv.ForEachNode(t, c, func(ctx context.Context, n redis.UniversalClient) error {
		keys, err := n.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = fmt.Errorf("keys left after PurgeAll: %q", keys)
		}
		return err
	})
}
