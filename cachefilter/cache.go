package cachefilter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Errors of [Cache] methods. Backend failures (Redis unreachable, timeouts)
// come back wrapped with their cause and are counted in
// llm_proxy_cache_backend_errors_total.
var (
	// ErrTooLarge: [Cache.Set] refused an entry over the size limit.
	ErrTooLarge = errors.New("cache entry over the size limit")
	// ErrInvalidEntry: [Cache.Set] refused a nil entry, a status outside
	// 100–999 or an entry with no freshness left.
	ErrInvalidEntry = errors.New("invalid cache entry")
	// ErrNoProject: the project id is empty. Every entry belongs to a project.
	ErrNoProject = errors.New("cache: empty project id")
	// ErrInvalidPrefix: [Cache.PurgePrefix] was given a prefix that does not
	// start with '/' or holds a control character.
	ErrInvalidPrefix = errors.New("cache: a path prefix starts with '/' and holds no control characters")
)

// Defaults of [Options].
const (
	// DefaultMaxEntryBytes is the default of [Options].MaxEntryBytes.
	DefaultMaxEntryBytes = 4 << 20
	// DefaultMaxBytes is the default of [Options].MaxBytes.
	DefaultMaxBytes = 64 << 20
	// DefaultTimeout is the default of [Options].Timeout.
	DefaultTimeout = 50 * time.Millisecond
	// DefaultPrefix is the default of [Options].Prefix.
	DefaultPrefix = "llmproxy:cache:"
)

// Options configures a [Cache]. The zero value is usable: each zero field
// means its documented default. Fields marked "Redis only" are ignored by
// [NewMemory], and MaxBytes by [NewRedis].
type Options struct {
	// MaxBytes bounds a memory cache: the sum of its entries' sizes (body,
	// headers, a fixed overhead); [DefaultMaxBytes] when <= 0. A Redis
	// cache's bound is Redis's own (maxmemory and its eviction policy).
	MaxBytes int64
	// MaxEntryBytes is the size limit of one entry (its body, headers and a
	// fixed overhead); [DefaultMaxEntryBytes] when <= 0. A memory cache
	// further caps it at a quarter of MaxBytes.
	MaxEntryBytes int
	// Now is the clock for TTLs and ages; time.Now when nil. A fake one
	// makes expiry testable.
	Now func() time.Time
	// Registerer receives the cache's metrics:
	// llm_proxy_cache_requests_total{result=hit|miss|error},
	// llm_proxy_cache_backend_errors_total and llm_proxy_cache_coalesced_total.
	// Caches may share a registry. Nil: nothing is recorded.
	Registerer prometheus.Registerer
	// Logger receives configuration warnings; the cache logs nothing per
	// request (its callers log what they handle). The zero Logger logs
	// nothing.
	Logger zerolog.Logger

	// Prefix starts every Redis key; [DefaultPrefix] when "". Redis only.
	Prefix string
	// Timeout bounds each Redis round trip; [DefaultTimeout] when <= 0.
	// Redis only.
	Timeout time.Duration
	// LockTTL, when > 0, turns on coalescing across replicas: the leader of
	// [Cache.Acquire] also takes a Redis lock that lives at most LockTTL
	// (set it to about the longest upstream call worth waiting for), and the
	// leaders of other replicas wait for its fill. Zero: coalescing stays
	// within each process. Redis only.
	LockTTL time.Duration
}

// Cache is the response cache: entries stored per project and key, in
// memory ([NewMemory]) or in Redis ([NewRedis]), with the same behaviour.
// Its methods are safe for concurrent use.
type Cache struct {
	b        backend
	now      func() time.Time
	maxEntry int
	lockTTL  time.Duration
	m        *metrics

	mu      sync.Mutex
	flights map[flightKey]*flight // guarded by mu
}

// backend stores entries. get returns nil, nil when there is none.
type backend interface {
	get(ctx context.Context, project, key string) (*Entry, error)
	set(ctx context.Context, project, key string, e *Entry, ttl time.Duration) error
	del(ctx context.Context, project, key string) (int, error)
	delProject(ctx context.Context, project string) (int, error)
	delAll(ctx context.Context) (int, error)
	// delPrefix removes the entries whose Path starts with prefix, of
	// project or, when project is "", of every project.
	delPrefix(ctx context.Context, project, prefix string) (int, error)
}

// locker is the optional cross-replica lock of a backend (Redis).
type locker interface {
	// lock takes the fill lock of project/key for ttl; ok is false when
	// another holder has it. unlock releases it if still ours.
	lock(ctx context.Context, project, key string, ttl time.Duration) (ok bool, unlock func(), err error)
}

// newCache builds the Cache of backend b from o, with o's defaults applied.
func newCache(b backend, o Options) *Cache {
	if o.MaxEntryBytes <= 0 {
		o.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Cache{
		b:        b,
		now:      o.Now,
		maxEntry: o.MaxEntryBytes,
		lockTTL:  o.LockTTL,
		m:        newMetrics(o.Registerer),
		flights:  make(map[flightKey]*flight),
	}
}

// Get returns the fresh entry stored under projectID and key, if any. A
// backend failure (Redis down or slower than its timeout) returns
// (nil, false, err) quickly: callers treat it as a miss. Every call counts in
// llm_proxy_cache_requests_total as a hit, a miss or an error. The entry is
// shared: do not modify it.
func (c *Cache) Get(ctx context.Context, projectID, key string) (*Entry, bool, error) {
	if projectID == "" {
		return nil, false, ErrNoProject
	}
	e, err := c.b.get(ctx, projectID, key)
	if err != nil {
		c.m.lookup(resultError)
		c.m.backendError()
		return nil, false, fmt.Errorf("cache get: %w", err)
	}
	if e == nil || e.Remaining(c.now()) <= 0 {
		c.m.lookup(resultMiss)
		return nil, false, nil
	}
	c.m.lookup(resultHit)
	return e, true, nil
}

// Set stores e under projectID and key for what is left of e.TTL after
// e.StoredAt (set to now when zero), replacing any entry there. Only the
// headers of [StoredHeaders] are kept; e.Path, if set, must start with '/'
// and hold no control characters. It refuses an entry over the size
// limit with [ErrTooLarge] and an invalid or already stale one with
// [ErrInvalidEntry]. e is copied; the caller may reuse it.
func (c *Cache) Set(ctx context.Context, projectID, key string, e *Entry) error {
	if projectID == "" {
		return ErrNoProject
	}
	if e == nil || e.Status < 100 || e.Status > 999 {
		return ErrInvalidEntry
	}
	if e.Path != "" && !validPrefix(e.Path) {
		return fmt.Errorf("%w: path %q", ErrInvalidEntry, e.Path)
	}
	now := c.now()
	s := e.sanitized(now)
	ttl := s.Remaining(now)
	if ttl <= 0 {
		return fmt.Errorf("%w: no freshness left", ErrInvalidEntry)
	}
	if n := s.size(); n > c.maxEntry {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, c.maxEntry)
	}
	s.Body = append([]byte(nil), e.Body...)
	if err := c.b.set(ctx, projectID, key, s, ttl); err != nil {
		c.m.backendError()
		return fmt.Errorf("cache set: %w", err)
	}
	return nil
}

// Purge removes the entry of projectID and key, and returns how many entries
// were really removed (0 or 1; an expired entry counts as absent).
func (c *Cache) Purge(ctx context.Context, projectID, key string) (int, error) {
	if projectID == "" {
		return 0, ErrNoProject
	}
	return c.count(c.b.del(ctx, projectID, key))
}

// PurgeProject removes every entry of projectID and returns how many were
// really removed. Other projects' entries are untouched.
func (c *Cache) PurgeProject(ctx context.Context, projectID string) (int, error) {
	if projectID == "" {
		return 0, ErrNoProject
	}
	return c.count(c.b.delProject(ctx, projectID))
}

// PurgePrefix removes the entries whose request path (see [Entry.Path])
// starts with prefix — a plain string prefix, so "/v1/models" also matches
// "/v1/models-x" and "/v1/models/" only what lies below — of projectID or,
// when projectID is "", of every project. It returns how many were really
// removed. Entries stored without a path are never matched.
func (c *Cache) PurgePrefix(ctx context.Context, projectID, prefix string) (int, error) {
	if !validPrefix(prefix) {
		return 0, ErrInvalidPrefix
	}
	return c.count(c.b.delPrefix(ctx, projectID, prefix))
}

// validPrefix: a path prefix starts with '/' and holds no control
// characters (the Redis index separates path and key with NUL).
func validPrefix(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < ' ' || p[i] == 0x7f {
			return false
		}
	}
	return true
}

// PurgeAll removes every entry of the cache (for Redis, every key under the
// cache's prefix) and returns how many were really removed.
func (c *Cache) PurgeAll(ctx context.Context) (int, error) {
	return c.count(c.b.delAll(ctx))
}

func (c *Cache) count(n int, err error) (int, error) {
	if err != nil {
		c.m.backendError()
		return n, fmt.Errorf("cache purge: %w", err)
	}
	return n, nil
}
