package cachefilter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/redisclient"
)

// redisBackend stores each entry as one Redis string with a native TTL, and
// indexes per project the entries that know their path:
//
//	<prefix>{<project>}:<key>      the entry (see codec.go)
//	<prefix>{<project>}!paths      the path index: a sorted set of "<path>\x00<key>",
//	                               scored by the entry's expiry (Unix ms)
//	<prefix>!lock:<project>:<key>  the cross-replica fill lock (Options.LockTTL)
//
// <project> is the project id with every byte outside [A-Za-z0-9._-]
// percent-encoded, so it holds neither ':', braces nor a glob character: the
// SCAN pattern of one project can never match another's keys, nor a lock.
// The braces make <project> the Cluster hash tag (or a tag inside the
// prefix is), so an entry and its project's index share a slot and one
// script updates both. Members of expired entries are pruned on the next
// store of the project, and the index expires with its longest-lived entry.
type redisBackend struct {
	c       redis.UniversalClient
	prefix  string
	timeout time.Duration
	now     func() time.Time
}

// unlockScript deletes a lock only if it still holds our token.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// setIndexedScript stores an entry and its index member at once, first
// pruning the members of expired entries.
// KEYS: entry, index. ARGV: value, TTL (ms), member, expiry (Unix ms), now (Unix ms).
var setIndexedScript = redis.NewScript(`
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", "(" .. ARGV[5])
redis.call("ZADD", KEYS[2], ARGV[4], ARGV[3])
local ttl = tonumber(ARGV[2])
if redis.call("PTTL", KEYS[2]) < ttl then redis.call("PEXPIRE", KEYS[2], ttl) end
return 1`)

// delIndexedScript removes entries and their index members at once, and
// counts the entries DEL really removed.
// KEYS: index, then the entry of each member. ARGV: the members.
var delIndexedScript = redis.NewScript(`
local n = 0
for i, m in ipairs(ARGV) do
  n = n + redis.call("DEL", KEYS[i + 1])
  redis.call("ZREM", KEYS[1], m)
end
return n`)

// indexSuffix follows "<prefix>{<project>}" in the name of a path index.
const indexSuffix = "!paths"

// scanCount is the COUNT hint of purge scans.
const scanCount = 500

// NewRedis returns a Cache kept in Redis, shared by every replica using the
// same server and o.Prefix. Entries expire by Redis's own TTL (SET PX); the
// memory bound is Redis's (maxmemory and its eviction policy), and
// o.MaxBytes is ignored. Each round trip is bounded by o.Timeout, so a Redis
// that is down or hung costs a lookup at most that much: build c with
// ContextTimeoutEnabled, else the client's own read timeout applies (NewRedis
// logs a warning to o.Logger then). c may be a single server, a failover
// client or a Cluster (purges scan every master).
func NewRedis(c redis.UniversalClient, o Options) *Cache {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	rb := &redisBackend{c: c, prefix: o.Prefix, timeout: o.Timeout}
	cache := newCache(rb, o)
	rb.now = cache.now
	if enabled, known := redisclient.ContextTimeoutEnabled(c); known && !enabled {
		o.Logger.Warn().Msg("redis client built without ContextTimeoutEnabled: a hung redis can stall cache lookups for the client's read timeout instead of " + o.Timeout.String())
	}
	return cache
}

// projectPart escapes a project id for a key (see redisBackend).
func projectPart(project string) string {
	var b strings.Builder
	for i := 0; i < len(project); i++ {
		switch ch := project[i]; {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9', ch == '.', ch == '_', ch == '-':
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// globEscape quotes the characters special in a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tagged is "<prefix>{<project>}", which starts a project's entries and
// index; part is projectPart(project).
func (r *redisBackend) tagged(part string) string {
	return r.prefix + "{" + part + "}"
}

func (r *redisBackend) entryKey(project, key string) string {
	return r.tagged(projectPart(project)) + ":" + key
}

func (r *redisBackend) indexKey(part string) string {
	return r.tagged(part) + indexSuffix
}

// keyKind tells what a key under the prefix is, for purging everything.
type keyKind int

const (
	kindEntry keyKind = iota
	kindIndex
	kindLock
)

func (r *redisBackend) kind(k string) keyKind {
	rest := strings.TrimPrefix(k, r.prefix)
	switch {
	case strings.HasPrefix(rest, "!"):
		return kindLock
	case strings.HasPrefix(rest, "{"):
		if part, tail, ok := strings.Cut(rest[1:], "}"); ok && tail == indexSuffix && r.indexKey(part) == k {
			return kindIndex
		}
	}
	return kindEntry
}

func (r *redisBackend) lockKey(project, key string) string {
	return r.prefix + "!lock:" + projectPart(project) + ":" + key
}

func (r *redisBackend) get(ctx context.Context, project, key string) (*Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	b, err := r.c.Get(ctx, r.entryKey(project, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	return decodeEntry(b)
}

func (r *redisBackend) set(ctx context.Context, project, key string, e *Entry, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ttl = max(ttl.Round(time.Millisecond), time.Millisecond)
	var err error
	if e.Path == "" {
		err = r.c.Set(ctx, r.entryKey(project, key), encodeEntry(e), ttl).Err()
	} else {
		now := r.now().UnixMilli()
		err = setIndexedScript.Run(ctx, r.c,
			[]string{r.entryKey(project, key), r.indexKey(projectPart(project))},
			encodeEntry(e), ttl.Milliseconds(), e.Path+"\x00"+key, now+ttl.Milliseconds(), now).Err()
	}
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

func (r *redisBackend) del(ctx context.Context, project, key string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	n, err := r.c.Del(ctx, r.entryKey(project, key)).Result()
	if err != nil {
		return 0, fmt.Errorf("redis: %w", err)
	}
	return int(n), nil
}

func (r *redisBackend) delProject(ctx context.Context, project string) (int, error) {
	part := projectPart(project)
	// The index goes before the entries: an entry stored meanwhile either
	// goes too, leaving a member that matches nothing, or stays with its
	// member. Never does an entry stay without one.
	dctx, cancel := context.WithTimeout(ctx, r.timeout)
	err := r.c.Del(dctx, r.indexKey(part)).Err()
	cancel()
	if err != nil {
		return 0, fmt.Errorf("redis: %w", err)
	}
	return r.delMatching(ctx, globEscape(r.tagged(part)+":")+"*")
}

func (r *redisBackend) delAll(ctx context.Context) (int, error) {
	return r.delMatching(ctx, globEscape(r.prefix)+"*")
}

// delPrefix walks the path index of project, or of every project found by
// SCAN, and removes the entries whose path starts with prefix.
func (r *redisBackend) delPrefix(ctx context.Context, project, prefix string) (int, error) {
	if project != "" {
		n, err := r.delIndexed(ctx, projectPart(project), prefix)
		if err != nil {
			return n, fmt.Errorf("redis: %w", err)
		}
		return n, nil
	}
	return r.eachNode(ctx, func(ctx context.Context, c redis.Cmdable) (int, error) {
		total := 0
		err := r.scan(ctx, c, globEscape(r.prefix)+"{*}"+indexSuffix, func(keys []string) error {
			for _, k := range keys {
				if r.kind(k) != kindIndex {
					continue // an entry whose key happens to end like an index
				}
				part := strings.TrimSuffix(strings.TrimPrefix(k, r.prefix+"{"), "}"+indexSuffix)
				n, err := r.delIndexed(ctx, part, prefix)
				total += n
				if err != nil {
					return err
				}
			}
			return nil
		})
		return total, err
	})
}

// delIndexed removes the entries of one project's index whose path starts
// with prefix: ZSCAN finds their members (a member starts with its path, and
// a prefix holds no NUL), and each batch of entries goes with its members in
// one script.
func (r *redisBackend) delIndexed(ctx context.Context, part, prefix string) (int, error) {
	index, entries := r.indexKey(part), r.tagged(part)+":"
	total := 0
	var cursor uint64
	for {
		sctx, cancel := context.WithTimeout(ctx, r.timeout)
		pairs, next, err := r.c.ZScan(sctx, index, cursor, globEscape(prefix)+"*", scanCount).Result()
		cancel()
		if err != nil {
			return total, err
		}
		keys := []string{index}
		var members []any
		for i := 0; i < len(pairs); i += 2 { // member, score, member, score…
			if path, key, ok := strings.Cut(pairs[i], "\x00"); ok && strings.HasPrefix(path, prefix) {
				keys = append(keys, entries+key)
				members = append(members, pairs[i])
			}
		}
		if len(members) > 0 {
			dctx, cancel := context.WithTimeout(ctx, r.timeout)
			n, err := delIndexedScript.Run(dctx, r.c, keys, members...).Int()
			cancel()
			total += n
			if err != nil {
				return total, err
			}
		}
		if cursor = next; cursor == 0 {
			return total, nil
		}
	}
}

// delMatching deletes the entries and indexes (not the locks) whose keys
// match pattern, on every master of a cluster, and counts the entries DEL
// really removed.
func (r *redisBackend) delMatching(ctx context.Context, pattern string) (int, error) {
	return r.eachNode(ctx, func(ctx context.Context, c redis.Cmdable) (int, error) {
		total := 0
		err := r.scan(ctx, c, pattern, func(keys []string) error {
			n, err := r.delKeys(ctx, c, keys)
			total += n
			return err
		})
		return total, err
	})
}

// eachNode runs fn on every master of a cluster (concurrently), or on the
// one server, and sums what it counted.
func (r *redisBackend) eachNode(ctx context.Context, fn func(ctx context.Context, c redis.Cmdable) (int, error)) (int, error) {
	var (
		mu    sync.Mutex // ForEachMaster runs the masters concurrently
		total int
	)
	one := func(ctx context.Context, c redis.Cmdable) error {
		n, err := fn(ctx, c)
		mu.Lock()
		total += n
		mu.Unlock()
		return err
	}
	var err error
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return one(ctx, c) })
	} else {
		err = one(ctx, r.c)
	}
	if err != nil {
		return total, fmt.Errorf("redis: %w", err)
	}
	return total, nil
}

// scan calls fn with each batch of c's keys that match pattern.
func (r *redisBackend) scan(ctx context.Context, c redis.Cmdable, pattern string, fn func(keys []string) error) error {
	var cursor uint64
	for {
		sctx, cancel := context.WithTimeout(ctx, r.timeout)
		keys, next, err := c.Scan(sctx, cursor, pattern, scanCount).Result()
		cancel()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// delKeys deletes keys, leaving out locks, and counts the entries that went.
func (r *redisBackend) delKeys(ctx context.Context, c redis.Cmdable, keys []string) (int, error) {
	// One DEL per key, pipelined: keys of a cluster may lie in different
	// slots, and the replies count what really went.
	dctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	p := c.Pipeline()
	var entries []*redis.IntCmd
	for _, k := range keys {
		switch r.kind(k) {
		case kindEntry:
			entries = append(entries, p.Del(dctx, k))
		case kindIndex:
			p.Del(dctx, k)
		}
	}
	if p.Len() == 0 {
		return 0, nil
	}
	_, err := p.Exec(dctx)
	total := 0
	for _, cmd := range entries {
		total += int(cmd.Val())
	}
	return total, err
}

func (r *redisBackend) lock(ctx context.Context, project, key string, ttl time.Duration) (bool, func(), error) {
	var tok [16]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	lk := r.lockKey(project, key)
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ok, err := r.c.SetNX(cctx, lk, token, max(ttl, time.Millisecond)).Result()
	if err != nil || !ok {
		return false, nil, err
	}
	unlock := func() {
		// The stream's ctx may be gone by now; the lock should still go.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		defer cancel()
		_ = unlockScript.Run(uctx, r.c, []string{lk}, token).Err() // it expires anyway
	}
	return true, unlock, nil
}
