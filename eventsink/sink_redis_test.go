package eventsink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// newRedisTestClient connects to the tests' Redis and returns a stream key
// of the test's own.
func newRedisTestClient(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	c := testenv.RedisClient(t)
	stream := fmt.Sprintf("llmproxy:test:events:%x", rand.Uint64())
	t.Cleanup(func() { c.Del(context.Background(), stream) })
	return c, stream
}

func TestRedisStreamSink(t *testing.T) {
	t.Parallel()
	c, stream := newRedisTestClient(t)
	ctx := context.Background()
	s := NewRedisStreamSink(c, stream, 0)
	want := []*llmproxyv1.UsageEvent{fullEvent(), newTestEvent(1), newTestEvent(2)}
	if err := s.Write(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d entries, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if len(m.Values) != 2 {
			t.Errorf("entry %d has fields %v, want id and event", i, m.Values)
		}
		if m.Values[StreamFieldID] != want[i].GetId() {
			t.Errorf("entry %d: id %v, want %s", i, m.Values[StreamFieldID], want[i].GetId())
		}
		js, _ := m.Values[StreamFieldEvent].(string)
		got, err := UnmarshalEvent([]byte(js))
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if !proto.Equal(got, want[i]) {
			t.Errorf("entry %d:\n got %v\nwant %v", i, got, want[i])
		}
	}
}

// MAXLEN ~ keeps the stream near its cap without trimming below it.
func TestRedisStreamSinkMaxLen(t *testing.T) {
	t.Parallel()
	c, stream := newRedisTestClient(t)
	ctx := context.Background()
	s := NewRedisStreamSink(c, stream, 100)
	for i := range 20 {
		if err := s.Write(ctx, newTestEvents(i*100, (i+1)*100)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := c.XLen(ctx, stream).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 || n >= 2000 {
		t.Fatalf("stream holds %d entries, want at least 100 and far fewer than the 2000 added", n)
	}
	last, err := c.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatal(last, err)
	}
	ev, err := UnmarshalEvent([]byte(last[0].Values[StreamFieldEvent].(string)))
	if err != nil || ev.GetRequestId() != "r1999" {
		t.Fatalf("newest entry %v (%v), want r1999", ev, err)
	}
}

func TestRedisStreamSinkFails(t *testing.T) {
	t.Parallel()
	c, stream := newRedisTestClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := NewRedisStreamSink(c, stream, 0).Write(ctx, newTestEvents(0, 2)); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	if err := c.Set(context.Background(), stream, "not a stream", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := NewRedisStreamSink(c, stream, 0).Write(context.Background(), newTestEvents(0, 2)); err == nil {
		t.Fatal("XADD to a string key succeeded")
	}
}

// The emitter through the Redis sink: every event emitted before shutdown
// is in the stream once Run returns.
func TestEmitterToRedis(t *testing.T) {
	t.Parallel()
	c, stream := newRedisTestClient(t)
	e := NewEmitter(EmitterOptions{Sinks: []Sink{NewRedisStreamSink(c, stream, 0)}, BatchSize: 50})
	stop := runEmitter(t, e)
	const n = 1000
	for i := range n {
		e.Emit(newTestEvent(i))
	}
	stop()
	if got, err := c.XLen(context.Background(), stream).Result(); err != nil || got != n {
		t.Fatalf("stream holds %d entries (%v), want %d", got, err, n)
	}
}
