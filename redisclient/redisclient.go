// Package redisclient builds and checks the Redis clients llm-proxy uses, so
// that every component bounds its Redis calls the same way: a client must
// honour its callers' context deadlines (ContextTimeoutEnabled), or a hung
// Redis stalls a call for the client's own read timeout instead of the
// component's (LLM_PROXY_REDIS_TIMEOUT).
package redisclient

import (
	"fmt"

	"github.com/redis/go-redis/v9"
)

// New returns a client for a redis:// or rediss:// URL that honours context
// deadlines.
func New(url string) (redis.UniversalClient, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}

// ContextTimeoutEnabled reports whether c honours context deadlines; known
// is false for a client type it cannot inspect.
func ContextTimeoutEnabled(c redis.UniversalClient) (enabled, known bool) {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled, true
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled, true
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled, true
	}
	return false, false
}
