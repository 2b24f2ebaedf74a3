package eventsink

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// Fields of a Redis Stream entry written by [RedisStreamSink].
const (
	// StreamFieldID holds the event id, for consumers that deduplicate
	// without decoding.
	StreamFieldID = "id"
	// StreamFieldEvent holds the event, encoded by [MarshalEvent].
	StreamFieldEvent = "event"
)

// RedisStreamSink is the durable [Sink]: one Redis Stream entry per event,
// with the fields [StreamFieldID] and [StreamFieldEvent], added with XADD in
// one pipeline per batch. The stream is capped with an approximate MAXLEN
// (XADD … MAXLEN ~ n): Redis trims whole nodes, so it holds at least maxLen
// entries and somewhat more. Consumers (the dispatcher's consumer group)
// must keep up, or the oldest unread entries are trimmed away.
type RedisStreamSink struct {
	c      redis.UniversalClient
	stream string
	maxLen int64
}

var _ Sink = (*RedisStreamSink)(nil)

// NewRedisStreamSink returns a sink adding to the stream key stream through
// c. maxLen <= 0 never trims. The sink does not own c.
func NewRedisStreamSink(c redis.UniversalClient, stream string, maxLen int64) *RedisStreamSink {
	return &RedisStreamSink{c: c, stream: stream, maxLen: max(maxLen, 0)}
}

// Name returns "redis", the sink label of its metrics.
func (s *RedisStreamSink) Name() string { return "redis" }

// Write adds one entry per event, in order. When it fails, some entries may
// have been added: a retry adds them again (consumers deduplicate by id).
func (s *RedisStreamSink) Write(ctx context.Context, events []*llmproxyv1.UsageEvent) error {
	if len(events) == 0 {
		return nil
	}
	pipe := s.c.Pipeline()
	for _, ev := range events {
		b, err := MarshalEvent(ev)
		if err != nil {
			return err
		}
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: s.stream,
			MaxLen: s.maxLen,
			Approx: true,
			Values: []any{StreamFieldID, ev.GetId(), StreamFieldEvent, b},
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("add events to redis stream %s: %w", s.stream, err)
	}
	return nil
}

// Close does nothing: the client belongs to the caller.
func (s *RedisStreamSink) Close() error { return nil }
