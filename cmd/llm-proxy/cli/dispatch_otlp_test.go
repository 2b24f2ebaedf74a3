package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// TestDispatchCommandExportsSpans runs `llm-proxy dispatch` with nothing but
// OTEL_EXPORTER_OTLP_ENDPOINT and the standard variables set: the otlp
// target turns on by itself and each event reaches a real OTLP/HTTP
// receiver as a span of the configured service, with the headers.
func TestDispatchCommandExportsSpans(t *testing.T) {
	var (
		mu    sync.Mutex
		names []string
		svc   []string
		auth  []string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, req) != nil {
			http.Error(w, "want OTLP/HTTP protobuf on /v1/traces", http.StatusBadRequest)
			return
		}
		mu.Lock()
		auth = append(auth, r.Header.Get("X-Api-Key"))
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					svc = append(svc, kv.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names = append(names, s.GetName())
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer collector.Close()

	redisURL := testenv.Redis(t)
	rdb := testenv.RedisClient(t)
	stream := fmt.Sprintf("test:cli-dispatch-otlp:%d", time.Now().UnixNano())
	t.Cleanup(func() {
		rdb.Del(context.Background(), stream)
		rdb.Del(context.Background(), stream+":dead")
	})
	for i := range 2 {
		id := fmt.Sprintf("evt-%d", i)
		if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream,
			Values: []any{"id", id, "event", fmt.Sprintf(`{"id":%q,"model":"gpt-4o","path":"/v1/chat/completions","status":200}`, id)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{
		"LLM_PROXY_REDIS_URL":         redisURL,
		"LLM_PROXY_EVENTS_STREAM":     stream,
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL,
		"OTEL_EXPORTER_OTLP_HEADERS":  "x-api-key=collector%20key",
		"OTEL_SERVICE_NAME":           "gateway-test",
	}
	logs := &testenv.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"dispatch"}, envFunc(env), logs, logs) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(names)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans after 15s\nlogs:\n%s", n, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("dispatch: %v\n%s", err, logs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(names) != 2 || names[0] != "chat gpt-4o" || names[1] != "chat gpt-4o" || svc[0] != "gateway-test" || auth[0] != "collector key" {
		t.Errorf("spans %q of service %q with x-api-key %q", names, svc, auth)
	}
}
