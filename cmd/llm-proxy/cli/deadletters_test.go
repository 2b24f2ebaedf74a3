package cli

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// TestDeadLetters: the console's dead-letter count is the length of the
// stream dispatch dead-letters into, named as dispatch names it.
func TestDeadLetters(t *testing.T) {
	rdb := testenv.RedisClient(t)
	ctx := context.Background()
	stream := fmt.Sprintf("test:cli-dead:%d", time.Now().UnixNano())
	custom := stream + ":graveyard"
	t.Cleanup(func() { rdb.Del(ctx, stream+":dead"); rdb.Del(ctx, custom) })
	add := func(s string, n int) {
		for range n {
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []any{"id", "x"}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(stream+":dead", 2)
	add(custom, 3)
	cfg := config.Config{EventSinks: []string{"file", "redis"}, EventsStream: stream}
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		env  func(string) string
		want int64
	}{
		{"default name", noEnv, 2},
		{"LLM_PROXY_DISPATCH_DEAD_STREAM", func(k string) string {
			if k == "LLM_PROXY_DISPATCH_DEAD_STREAM" {
				return custom
			}
			return ""
		}, 3},
	} {
		count := deadLetters(cfg, rdb, tc.env)
		if count == nil {
			t.Fatalf("%s: no counter", tc.name)
		}
		if n, err := count(ctx); err != nil || n != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.name, n, err, tc.want)
		}
	}
	if deadLetters(config.Config{EventSinks: []string{"file"}, EventsStream: stream}, rdb, noEnv) != nil {
		t.Error("a counter without the redis sink")
	}
	if deadLetters(cfg, nil, noEnv) != nil {
		t.Error("a counter without Redis")
	}
}
