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

// redisBackend stores each entry as one Redis string with a native TTL:
//
//	<prefix><project>:<key>        the entry (see codec.go)
//	<prefix>!lock:<project>:<key>  the cross-replica fill lock (Options.LockTTL)
//
// <project> is the project id with every byte outside [A-Za-z0-9._-]
// percent-encoded, so it holds neither ':' nor a glob character: the SCAN
// pattern of one project can never match another's keys, nor a lock.
type redisBackend struct {
	c       redis.UniversalClient
	prefix  string
	timeout time.Duration
}

// unlockScript deletes a lock only if it still holds our token.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

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
	cache := newCache(&redisBackend{c: c, prefix: o.Prefix, timeout: o.Timeout}, o)
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

func (r *redisBackend) entryKey(project, key string) string {
	return r.prefix + projectPart(project) + ":" + key
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
	if err := r.c.Set(ctx, r.entryKey(project, key), encodeEntry(e), ttl).Err(); err != nil {
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
	return r.delMatching(ctx, globEscape(r.prefix+projectPart(project)+":")+"*")
}

func (r *redisBackend) delAll(ctx context.Context) (int, error) {
	return r.delMatching(ctx, globEscape(r.prefix)+"*")
}

// delMatching deletes the entries (not the locks) whose keys match pattern,
// on every master of a cluster, and counts what DEL really removed.
func (r *redisBackend) delMatching(ctx context.Context, pattern string) (int, error) {
	var (
		mu    sync.Mutex // ForEachMaster runs the masters concurrently
		total int
	)
	one := func(ctx context.Context, c redis.Cmdable) error {
		n, err := r.scanDel(ctx, c, pattern)
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

func (r *redisBackend) scanDel(ctx context.Context, c redis.Cmdable, pattern string) (int, error) {
	lockPrefix := r.prefix + "!"
	total := 0
	var cursor uint64
	for {
		sctx, cancel := context.WithTimeout(ctx, r.timeout)
		keys, next, err := c.Scan(sctx, cursor, pattern, scanCount).Result()
		cancel()
		if err != nil {
			return total, err
		}
		keys = dropPrefixed(keys, lockPrefix)
		if len(keys) > 0 {
			// One DEL per key, pipelined: keys of a cluster may lie in
			// different slots, and the replies count what really went.
			dctx, cancel := context.WithTimeout(ctx, r.timeout)
			p := c.Pipeline()
			cmds := make([]*redis.IntCmd, len(keys))
			for i, k := range keys {
				cmds[i] = p.Del(dctx, k)
			}
			_, err := p.Exec(dctx)
			cancel()
			for _, cmd := range cmds {
				total += int(cmd.Val())
			}
			if err != nil {
				return total, err
			}
		}
		if cursor = next; cursor == 0 {
			return total, nil
		}
	}
}

func dropPrefixed(keys []string, prefix string) []string {
	out := keys[:0]
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
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
