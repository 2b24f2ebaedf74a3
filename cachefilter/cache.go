package cachefilter

import (
	"context"
	"errors"
	"fmt"
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
)

// Defaults of the options.
const (
	// DefaultMaxEntryBytes is the default size limit of one entry.
	DefaultMaxEntryBytes = 4 << 20
	// DefaultMaxBytes bounds a memory cache built with maxBytes <= 0.
	DefaultMaxBytes = 64 << 20
	// DefaultTimeout bounds each Redis round trip when NewRedis is given 0.
	DefaultTimeout = 50 * time.Millisecond
	// DefaultPrefix starts Redis keys when NewRedis is given "".
	DefaultPrefix = "llmproxy:cache:"
)

// Option configures a [Cache].
type Option func(*options)

type options struct {
	maxEntryBytes int
	reg           prometheus.Registerer
	log           zerolog.Logger
	lockTTL       time.Duration
}

// WithMaxEntryBytes sets the size limit of one entry (its body, headers and
// a fixed overhead); default [DefaultMaxEntryBytes].
func WithMaxEntryBytes(n int) Option { return func(o *options) { o.maxEntryBytes = n } }

// WithRegisterer registers the cache's metrics with reg:
// llm_proxy_cache_requests_total{result=hit|miss|error},
// llm_proxy_cache_backend_errors_total and llm_proxy_cache_coalesced_total.
// Caches may share a registry. Without it nothing is recorded.
func WithRegisterer(reg prometheus.Registerer) Option { return func(o *options) { o.reg = reg } }

// WithLogger sets the logger for configuration warnings; the cache logs
// nothing per request (its callers log what they handle).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithLockTTL turns on coalescing across replicas for a Redis cache: the
// leader of [Cache.Acquire] also takes a Redis lock that lives at most d
// (set it to about the longest upstream call worth waiting for), and the
// leaders of other replicas wait for its fill. Memory caches ignore it.
func WithLockTTL(d time.Duration) Option { return func(o *options) { o.lockTTL = d } }

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
}

// locker is the optional cross-replica lock of a backend (Redis).
type locker interface {
	// lock takes the fill lock of project/key for ttl; ok is false when
	// another holder has it. unlock releases it if still ours.
	lock(ctx context.Context, project, key string, ttl time.Duration) (ok bool, unlock func(), err error)
}

func newCache(b backend, now func() time.Time, opts []Option) (*Cache, options) {
	o := options{maxEntryBytes: DefaultMaxEntryBytes, log: zerolog.Nop()}
	for _, f := range opts {
		f(&o)
	}
	if o.maxEntryBytes <= 0 {
		o.maxEntryBytes = DefaultMaxEntryBytes
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{
		b:        b,
		now:      now,
		maxEntry: o.maxEntryBytes,
		lockTTL:  o.lockTTL,
		m:        newMetrics(o.reg),
		flights:  make(map[flightKey]*flight),
	}, o
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
// headers of [StoredHeaders] are kept. It refuses an entry over the size
// limit with [ErrTooLarge] and an invalid or already stale one with
// [ErrInvalidEntry]. e is copied; the caller may reuse it.
func (c *Cache) Set(ctx context.Context, projectID, key string, e *Entry) error {
	if projectID == "" {
		return ErrNoProject
	}
	if e == nil || e.Status < 100 || e.Status > 999 {
		return ErrInvalidEntry
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
