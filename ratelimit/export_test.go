package ratelimit

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// SetWindow replaces the one-minute window of l's per-minute limits, so tests
// on real Redis can watch entries leave it. Call it before l is used.
func SetWindow(l *Limiter, d time.Duration) { l.window = d }

// LuaMonth runs lib.lua's month_of on Redis for us (Unix microseconds).
func LuaMonth(ctx context.Context, c redis.UniversalClient, us int64) (string, error) {
	return redis.NewScript(luaLib+"return month_of(tonumber(ARGV[1]))").Run(ctx, c, nil, us).Text()
}
