package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func TestLoadDispatchConfig(t *testing.T) {
	base := map[string]string{
		"LLM_PROXY_REDIS_URL":        "redis://127.0.0.1:6379/0",
		"LLM_PROXY_DISPATCH_TARGETS": "file",
		"LLM_PROXY_DISPATCH_FILE":    "/tmp/x.jsonl",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr []string // each must appear; none means success
	}{
		{name: "minimal", env: base},
		{name: "nothing set", env: map[string]string{},
			wantErr: []string{"LLM_PROXY_REDIS_URL is required", "LLM_PROXY_DISPATCH_TARGETS is required"}},
		{name: "bad redis url", env: with("LLM_PROXY_REDIS_URL", "http://x"), wantErr: []string{"LLM_PROXY_REDIS_URL must be a redis://"}},
		{name: "unknown target", env: with("LLM_PROXY_DISPATCH_TARGETS", "file,kafka"), wantErr: []string{`LLM_PROXY_DISPATCH_TARGETS names unknown target "kafka"`}},
		{name: "target twice", env: with("LLM_PROXY_DISPATCH_TARGETS", "file, FILE"), wantErr: []string{`names "file" twice`}},
		{name: "file without path", env: with("LLM_PROXY_DISPATCH_FILE", ""), wantErr: []string{"LLM_PROXY_DISPATCH_FILE is required"}},
		{name: "webhook without url or secret", env: with("LLM_PROXY_DISPATCH_TARGETS", "webhook"),
			wantErr: []string{"LLM_PROXY_WEBHOOK_URL is required", "LLM_PROXY_WEBHOOK_SECRET is required"}},
		{name: "webhook short secret", env: with("LLM_PROXY_DISPATCH_TARGETS", "webhook", "LLM_PROXY_WEBHOOK_URL", "https://h.example/x", "LLM_PROXY_WEBHOOK_SECRET", "short"),
			wantErr: []string{"LLM_PROXY_WEBHOOK_SECRET must be at least 16 bytes"}},
		{name: "webhook bad url", env: with("LLM_PROXY_DISPATCH_TARGETS", "webhook", "LLM_PROXY_WEBHOOK_URL", "h.example/x", "LLM_PROXY_WEBHOOK_SECRET", "0123456789abcdef"),
			wantErr: []string{"LLM_PROXY_WEBHOOK_URL must be an http:// or https:// URL"}},
		{name: "lunary and helicone need keys", env: with("LLM_PROXY_DISPATCH_TARGETS", "lunary,helicone"),
			wantErr: []string{"LLM_PROXY_LUNARY_API_KEY is required", "LLM_PROXY_HELICONE_API_KEY is required"}},
		{name: "numbers and durations", env: with("LLM_PROXY_DISPATCH_MAX_ATTEMPTS", "0", "LLM_PROXY_DISPATCH_BATCH", "lots",
			"LLM_PROXY_DISPATCH_CLAIM_IDLE", "-1s", "LLM_PROXY_DISPATCH_TIMEOUT", "soon"),
			wantErr: []string{"LLM_PROXY_DISPATCH_MAX_ATTEMPTS must be an integer", "LLM_PROXY_DISPATCH_BATCH must be an integer",
				"LLM_PROXY_DISPATCH_CLAIM_IDLE must be a positive duration", "LLM_PROXY_DISPATCH_TIMEOUT must be a positive duration"}},
		{name: "dead stream is the stream", env: with("LLM_PROXY_DISPATCH_DEAD_STREAM", "llmproxy:events"), wantErr: []string{"LLM_PROXY_DISPATCH_DEAD_STREAM must differ"}},
		{name: "log level", env: with("LLM_PROXY_LOG_LEVEL", "loud"), wantErr: []string{"LLM_PROXY_LOG_LEVEL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.LoadDispatch(envFunc(tc.env))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}

	c, err := config.LoadDispatch(envFunc(with("LLM_PROXY_DISPATCH_TARGETS", "lunary, helicone ,webhook,file",
		"LLM_PROXY_LUNARY_API_KEY", "lk", "LLM_PROXY_HELICONE_API_KEY", "hk",
		"LLM_PROXY_WEBHOOK_URL", "https://h.example/x", "LLM_PROXY_WEBHOOK_SECRET", " spaces count 123 ")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream != "llmproxy:events" || c.Group != "dispatch" || c.DeadStream != "llmproxy:events:dead" ||
		c.MaxAttempts != 10 || c.ClaimIdle != 60*time.Second || c.Batch != 100 ||
		c.LunaryURL != "" || c.HeliconeURL != "" /* the backends' own defaults */ ||
		strings.Join(c.Targets, ",") != "lunary,helicone,webhook,file" || string(c.WebhookKey) != " spaces count 123 " {
		t.Errorf("defaults: %+v", c)
	}
}

func TestDispatchHelpListsSettings(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"dispatch", "-h"}, envFunc(nil), &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range config.DispatchVars {
		if !strings.Contains(out.String(), v.Name) {
			t.Errorf("help lacks %s", v.Name)
		}
	}
	err := Run(context.Background(), []string{"dispatch"}, envFunc(nil), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "LLM_PROXY_REDIS_URL") {
		t.Errorf("dispatch without settings: %v", err)
	}
}

// TestDispatchCommandDeliversToFile runs the real subcommand wiring against
// real Redis with the file target.
func TestDispatchCommandDeliversToFile(t *testing.T) {
	redisURL := testenv.Redis(t)
	rdb := testenv.RedisClient(t)
	stream := fmt.Sprintf("test:cli-dispatch:%d", time.Now().UnixNano())
	t.Cleanup(func() {
		// One key per call: on a Redis Cluster the two may live on different nodes.
		rdb.Del(context.Background(), stream)
		rdb.Del(context.Background(), stream+":dead")
	})
	for i := range 3 {
		id := fmt.Sprintf("evt-%d", i)
		if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream,
			Values: []any{"id", id, "event", fmt.Sprintf(`{"id":%q,"model":"gpt-4o"}`, id)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "out.jsonl")
	env := map[string]string{
		"LLM_PROXY_REDIS_URL":        redisURL,
		"LLM_PROXY_EVENTS_STREAM":    stream,
		"LLM_PROXY_DISPATCH_TARGETS": "file",
		"LLM_PROXY_DISPATCH_FILE":    path,
	}
	logs := &testenv.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"dispatch"}, envFunc(env), logs, logs) }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Count(b, []byte("\n")) == 3 {
			for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var rec struct{ ID string }
				if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.ID != fmt.Sprintf("evt-%d", i) {
					t.Errorf("line %d: %s", i, line)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file has %q after 15s\nlogs:\n%s", b, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("dispatch: %v\n%s", err, logs)
	}
	p, err := rdb.XPending(context.Background(), stream, "dispatch").Result()
	if err != nil || p.Count != 0 {
		t.Errorf("pending %+v, %v", p, err)
	}
	for _, want := range []string{`"message":"dispatcher started"`, `"message":"dispatcher stopped"`, `"delivered":3`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}
