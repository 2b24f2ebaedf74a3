package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// eventSinks builds the configured usage-event sinks.
func eventSinks(cfg config.Config, rdb redis.UniversalClient, stdout io.Writer) ([]eventsink.Sink, error) {
	var sinks []eventsink.Sink
	for _, name := range cfg.EventSinks {
		switch name {
		case "file":
			f, err := eventsink.NewFileSink(cfg.EventsFile, cfg.EventsFileMaxBytes, 5)
			if err != nil {
				return nil, fmt.Errorf("LLM_PROXY_EVENTS_FILE: %w", err)
			}
			sinks = append(sinks, f)
		case "redis":
			sinks = append(sinks, eventsink.NewRedisStreamSink(rdb, cfg.EventsStream, cfg.EventsStreamMaxLen))
		case "stdout":
			sinks = append(sinks, eventsink.NewStdoutSink(stdout))
		}
	}
	return sinks, nil
}

// eventsOrNil keeps a nil *Emitter from becoming a non-nil interface.
func eventsOrNil(e *eventsink.Emitter) interface{ Emit(*llmproxyv1.UsageEvent) } {
	if e == nil {
		return nil
	}
	return e
}

// cacheOrNil keeps a nil *Cache from becoming a non-nil interface.
func cacheOrNil(c *cachefilter.Cache) interface {
	Get(ctx context.Context, projectID, key string) (*cachefilter.Entry, bool, error)
	Set(ctx context.Context, projectID, key string, e *cachefilter.Entry) error
	Acquire(ctx context.Context, projectID, key string, wait time.Duration) (bool, *cachefilter.Entry, func())
	InFlight(projectID, key string) bool
	Purge(ctx context.Context, projectID, key string) (int, error)
} {
	if c == nil {
		return nil
	}
	return c
}

// purgerOrNil keeps a nil *Cache from becoming a non-nil interface.
func purgerOrNil(c *cachefilter.Cache) interface {
	Purge(ctx context.Context, projectID, key string) (int, error)
	PurgeProject(ctx context.Context, projectID string) (int, error)
	PurgeAll(ctx context.Context) (int, error)
	PurgePrefix(ctx context.Context, projectID, prefix string) (int, error)
} {
	if c == nil {
		return nil
	}
	return c
}

// deadLetters counts, for the admin console, the events `llm-proxy
// dispatch` gave up on: the length of its dead-letter stream, named as
// dispatch names it (LLM_PROXY_DISPATCH_DEAD_STREAM, else "<stream>:dead").
// Nil when events do not go to a Redis Stream.
func deadLetters(cfg config.Config, rdb redis.UniversalClient, getenv func(string) string) func(context.Context) (int64, error) {
	if rdb == nil || !slices.Contains(cfg.EventSinks, "redis") {
		return nil
	}
	stream := getenv("LLM_PROXY_DISPATCH_DEAD_STREAM")
	if stream == "" {
		stream = cfg.EventsStream + ":dead"
	}
	return func(ctx context.Context) (int64, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return rdb.XLen(ctx, stream).Result()
	}
}
