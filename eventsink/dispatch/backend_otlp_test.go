package dispatch

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// collector is a real OTLP trace receiver: the collector's gRPC
// TraceService, or its HTTP endpoint (POST /v1/traces, protobuf). It keeps
// every export request and the "authorization" header it came with, and
// refuses exports while fail is set.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
	auth     []string
	fail     bool
}

func (c *collector) Export(ctx context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return nil, status.Error(codes.Unavailable, "collector is restarting")
	}
	c.requests = append(c.requests, req)
	c.auth = append(c.auth, md.Get("authorization")...)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) setFail(v bool) {
	c.mu.Lock()
	c.fail = v
	c.mu.Unlock()
}

// grpcCollector serves a collector over gRPC on a loopback port and returns
// it with its endpoint URL.
func grpcCollector(t *testing.T) (*collector, string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return c, "http://" + lis.Addr().String()
}

// httpCollector serves a collector over OTLP/HTTP and returns it with its
// traces URL.
func httpCollector(t *testing.T) (*collector, string) {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces, protobuf", http.StatusNotFound)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		b, _ := io.ReadAll(body)
		req := &collectortrace.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", r.Header.Get("Authorization")))
		if _, err := c.Export(ctx, req); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL + "/v1/traces"
}

// receivedSpan is one exported span with its resource and scope, read
// from the wire.
type receivedSpan struct {
	resource map[string]any
	scope    *commonpb.InstrumentationScope
	schema   string // the scope spans' schema URL
	span     *tracepb.Span
}

// spans flattens every span the collector received, in order.
func (c *collector) spans() []receivedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []receivedSpan
	for _, req := range c.requests {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, receivedSpan{resource: attrMap(rs.GetResource().GetAttributes()),
						scope: ss.GetScope(), schema: ss.GetSchemaUrl(), span: s})
				}
			}
		}
	}
	return out
}

// attrMap reads OTLP attributes as Go values: string, int64, float64,
// bool, []string.
func attrMap(kvs []*commonpb.KeyValue) map[string]any {
	out := map[string]any{}
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = v.IntValue
		case *commonpb.AnyValue_DoubleValue:
			out[kv.GetKey()] = v.DoubleValue
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = v.BoolValue
		case *commonpb.AnyValue_ArrayValue:
			var l []string
			for _, e := range v.ArrayValue.GetValues() {
				l = append(l, e.GetStringValue())
			}
			out[kv.GetKey()] = l
		default:
			out[kv.GetKey()] = kv.GetValue().String()
		}
	}
	return out
}

func newTestOTLP(t *testing.T, protocol, endpoint string) *OTLP {
	t.Helper()
	o, err := NewOTLP(context.Background(), OTLPOptions{
		Protocol: protocol, Endpoint: endpoint,
		Headers:     map[string]string{"authorization": "Bearer collector-key"},
		Timeout:     5 * time.Second,
		ServiceName: "llm-proxy-test", ServiceVersion: "v1.2.3",
		ResourceAttributes: map[string]string{"deployment.environment.name": "test", "service.name": "ignored"},
		UpstreamURL:        "https://openai.internal:8443",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

func unixNano(s string) uint64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return uint64(t.UnixNano())
}

// TestOTLPExportsGenAISpansOverGRPC exports a batch to a real gRPC
// collector and checks each span field by field: resource, scope, ids and
// parent, times, kind, name, every attribute, status, and the captured
// conversation's event.
func TestOTLPExportsGenAISpansOverGRPC(t *testing.T) {
	c, endpoint := grpcCollector(t)
	o := newTestOTLP(t, ProtocolGRPC, endpoint)

	denied := testEvent("denied")
	denied.Status, denied.Outcome, denied.ErrorCode, denied.Usage, denied.LimitDecision = 429, "denied", "rate_limit_exceeded", nil, "limited"
	aborted := testEvent("aborted")
	aborted.Status, aborted.Outcome, aborted.Aborted, aborted.Stream = 0, "aborted", true, true
	var entries []Entry
	for _, ev := range []*llmproxyv1.UsageEvent{chatEvent("chat"), denied, aborted} {
		entries = append(entries, Entry{ID: ev.Id, JSON: []byte(marshal(ev))})
	}
	if err := o.Deliver(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	if len(c.requests) != 1 || len(c.auth) != 1 || c.auth[0] != "Bearer collector-key" {
		t.Errorf("%d export calls with authorization %q, want one call for the batch with the configured header", len(c.requests), c.auth)
	}
	c.mu.Unlock()
	got := c.spans()
	if len(got) != 3 {
		t.Fatalf("%d spans, want 3", len(got))
	}

	chat := got[0]
	sameJSON(t, "resource", chat.resource, `{"service.name": "llm-proxy-test", "service.version": "v1.2.3", "deployment.environment.name": "test"}`)
	if chat.scope.GetName() != ScopeName || chat.scope.GetVersion() != "v1.2.3" || chat.schema != SemConvSchemaURL {
		t.Errorf("scope %v, schema %q", chat.scope, chat.schema)
	}
	s := chat.span
	if hex.EncodeToString(s.GetTraceId()) != "4bf92f3577b34da6a3ce929d0e0e4736" || hex.EncodeToString(s.GetSpanId()) != "00f067aa0ba902b7" ||
		hex.EncodeToString(s.GetParentSpanId()) != "b7ad6b7169203331" {
		t.Errorf("ids: trace %x span %x parent %x, want the event's", s.GetTraceId(), s.GetSpanId(), s.GetParentSpanId())
	}
	if s.GetName() != "chat gpt-4.1-mini" || s.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("name %q kind %v", s.GetName(), s.GetKind())
	}
	if s.GetStartTimeUnixNano() != unixNano("2025-01-02T03:04:05.678Z") || s.GetEndTimeUnixNano() != unixNano("2025-01-02T03:04:05.928Z") {
		t.Errorf("times %d → %d, want the event's time and 250ms later", s.GetStartTimeUnixNano(), s.GetEndTimeUnixNano())
	}
	if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_UNSET || s.GetStatus().GetMessage() != "" {
		t.Errorf("status %v, want unset on success", s.GetStatus())
	}
	sameJSON(t, "chat attributes", attrMap(s.GetAttributes()), `{
	  "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
	  "gen_ai.request.model": "gpt-4.1-mini", "gen_ai.response.model": "gpt-4.1-mini-2025-04-14",
	  "gen_ai.response.id": "chatcmpl-9", "gen_ai.response.finish_reasons": ["stop"],
	  "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 5,
	  "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 100, "gen_ai.request.seed": 7,
	  "gen_ai.request.stop_sequences": ["END"],
	  "server.address": "openai.internal", "server.port": 8443,
	  "http.request.method": "POST", "url.path": "/v1/chat/completions", "http.response.status_code": 200,
	  "user.id": "u-42",
	  "llm_proxy.project_id": "p1", "llm_proxy.token_id": "tok_pub", "llm_proxy.request_id": "req-chat",
	  "llm_proxy.event_id": "chat", "llm_proxy.cost_usd": 0.0001, "llm_proxy.cache_status": "miss",
	  "llm_proxy.limit_decision": "allowed", "llm_proxy.outcome": "forwarded", "llm_proxy.stream": true,
	  "llm_proxy.usage_source": "provider", "llm_proxy.usage.cached_tokens": 4, "llm_proxy.ttfb_ms": 80,
	  "llm_proxy.capture.request_truncated": false, "llm_proxy.capture.response_truncated": false
	}`)
	if len(s.GetEvents()) != 1 {
		t.Fatalf("%d span events, want the inference details", len(s.GetEvents()))
	}
	ev := s.GetEvents()[0]
	if ev.GetName() != "gen_ai.client.inference.operation.details" || ev.GetTimeUnixNano() != s.GetEndTimeUnixNano() {
		t.Errorf("event %q at %d", ev.GetName(), ev.GetTimeUnixNano())
	}
	attrs := attrMap(ev.GetAttributes())
	if len(attrs) != 3 || attrs["gen_ai.operation.name"] != "chat" {
		t.Errorf("event attributes %v", attrs)
	}
	sameJSON(t, "input messages", rawJSON(attrs["gen_ai.input.messages"]), `[
	  {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
	  {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
	  {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
	  {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 14C"}]}
	]`)
	sameJSON(t, "output messages", rawJSON(attrs["gen_ai.output.messages"]),
		`[{"role": "assistant", "parts": [{"type": "text", "content": "Rainy, 14°C."}], "finish_reason": "stop"}]`)

	// No ids in the event: ids derived from the event id, no parent, an
	// error status with the code the client got.
	d := got[1].span
	if len(d.GetTraceId()) != 16 || len(d.GetSpanId()) != 8 || len(d.GetParentSpanId()) != 0 ||
		hex.EncodeToString(d.GetTraceId()) == "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("derived ids: trace %x span %x parent %x", d.GetTraceId(), d.GetSpanId(), d.GetParentSpanId())
	}
	if d.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR || d.GetStatus().GetMessage() != "rate_limit_exceeded" || len(d.GetEvents()) != 0 {
		t.Errorf("denied: status %v, %d events", d.GetStatus(), len(d.GetEvents()))
	}
	sameJSON(t, "denied attributes", attrMap(d.GetAttributes()), `{
	  "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
	  "gen_ai.request.model": "gpt-4.1-mini",
	  "server.address": "openai.internal", "server.port": 8443,
	  "http.request.method": "POST", "url.path": "/v1/chat/completions", "http.response.status_code": 429,
	  "error.type": "rate_limit_exceeded",
	  "llm_proxy.project_id": "p1", "llm_proxy.token_id": "tok_pub", "llm_proxy.request_id": "req-denied",
	  "llm_proxy.event_id": "denied", "llm_proxy.cost_usd": 0.0001, "llm_proxy.cache_status": "miss",
	  "llm_proxy.limit_decision": "limited", "llm_proxy.outcome": "denied", "llm_proxy.stream": false,
	  "llm_proxy.usage_source": "provider"
	}`)
	a := attrMap(got[2].span.GetAttributes())
	if a["error.type"] != "aborted" || a["http.response.status_code"] != nil || got[2].span.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("aborted: %v, status %v", a, got[2].span.GetStatus())
	}

	// Redelivered, the same events give the same spans.
	if err := o.Deliver(context.Background(), entries[1:2]); err != nil {
		t.Fatal(err)
	}
	again := c.spans()[3].span
	if !proto.Equal(again, d) {
		t.Errorf("redelivered span differs:\n%v\nfirst:\n%v", again, d)
	}
}

// rawJSON is an attribute holding JSON text, as a value sameJSON encodes
// as that JSON.
func rawJSON(v any) any {
	s, _ := v.(string)
	return jsonRaw(s)
}

type jsonRaw string

func (r jsonRaw) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// TestOTLPExportsOverHTTP exports a Responses API call over OTLP/HTTP and
// checks its conversation event, system instructions included.
func TestOTLPExportsOverHTTP(t *testing.T) {
	c, endpoint := httpCollector(t)
	o := newTestOTLP(t, ProtocolHTTPProtobuf, endpoint)
	ev := responsesEvent("responses")
	if err := o.Deliver(context.Background(), []Entry{{ID: ev.Id, JSON: []byte(marshal(ev))}}); err != nil {
		t.Fatal(err)
	}
	got := c.spans()
	if len(got) != 1 {
		t.Fatalf("%d spans", len(got))
	}
	c.mu.Lock()
	if len(c.auth) != 1 || c.auth[0] != "Bearer collector-key" {
		t.Errorf("authorization %q", c.auth)
	}
	c.mu.Unlock()
	s := got[0].span
	a := attrMap(s.GetAttributes())
	if s.GetName() != "chat gpt-4.1-mini" || a["gen_ai.response.id"] != "resp_1" || a["gen_ai.request.max_tokens"] != int64(50) ||
		a["llm_proxy.usage.reasoning_tokens"] != int64(2) || a["url.path"] != "/v1/responses" {
		t.Errorf("span %q attributes %v", s.GetName(), a)
	}
	attrs := attrMap(s.GetEvents()[0].GetAttributes())
	sameJSON(t, "system instructions", rawJSON(attrs["gen_ai.system_instructions"]), `[{"type": "text", "content": "Answer in French."}]`)
	sameJSON(t, "input messages", rawJSON(attrs["gen_ai.input.messages"]), `[
	  {"role": "user", "parts": [{"type": "text", "content": "Say hi"}]},
	  {"role": "assistant", "parts": [{"type": "tool_call", "id": "fc_1", "name": "lookup", "arguments": {"q": 1}}]},
	  {"role": "tool", "parts": [{"type": "tool_call_response", "id": "fc_1", "response": "42"}]}
	]`)
	sameJSON(t, "output messages", rawJSON(attrs["gen_ai.output.messages"]),
		`[{"role": "assistant", "parts": [{"type": "text", "content": "Bonjour"}], "finish_reason": "completed"}]`)
}

// TestOTLPExportFailures: a collector that refuses, or is not there, fails
// the batch for a retry; an event that does not decode fails alone, for
// good; a binary capture and other APIs export no content.
func TestOTLPExportFailures(t *testing.T) {
	c, endpoint := grpcCollector(t)
	o := newTestOTLP(t, ProtocolGRPC, endpoint)
	c.setFail(true)
	err := o.Deliver(context.Background(), []Entry{entry("a"), entry("b")})
	var be *BatchError
	if err == nil || errors.As(err, &be) || IsPermanent(err) {
		t.Errorf("refused export: %v, want one retryable error for the batch", err)
	}
	err = o.Deliver(context.Background(), []Entry{entry("a"), {ID: "junk", JSON: []byte(`{"id":`)}})
	if !errors.As(err, &be) || len(be.Failed) != 2 || IsPermanent(be.Failed["a"]) || !IsPermanent(be.Failed["junk"]) {
		t.Errorf("refused export with a bad entry: %v, want a retryable and a permanent failure", err)
	}
	c.setFail(false)
	bin := binaryEvent("binary")
	emb := testEvent("emb")
	emb.Path, emb.Model = "/v1/embeddings", "text-embedding-3-small"
	emb.Capture = &llmproxyv1.Capture{Request: `{"model":"text-embedding-3-small","input":"hi"}`, Response: `{"data":[{"embedding":[0.1]}]}`}
	if err := o.Deliver(context.Background(), []Entry{{ID: "binary", JSON: []byte(marshal(bin))}, {ID: "emb", JSON: []byte(marshal(emb))}}); err != nil {
		t.Fatal(err)
	}
	got := c.spans()
	if len(got) != 2 || got[0].span.GetName() != "audio/transcriptions whisper-1" || got[1].span.GetName() != "embeddings text-embedding-3-small" ||
		len(got[0].span.GetEvents())+len(got[1].span.GetEvents()) != 0 {
		t.Errorf("spans %v", got)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + lis.Addr().String()
	lis.Close()
	for _, proto := range []string{ProtocolGRPC, ProtocolHTTPProtobuf} {
		o := newTestOTLP(t, proto, gone+map[string]string{ProtocolGRPC: "", ProtocolHTTPProtobuf: "/v1/traces"}[proto])
		if err := o.Deliver(context.Background(), []Entry{entry("a")}); err == nil || IsPermanent(err) {
			t.Errorf("%s to a closed port: %v, want a retryable error", proto, err)
		}
	}
	if _, err := NewOTLP(context.Background(), OTLPOptions{Protocol: "http/json"}); err == nil {
		t.Error("http/json accepted")
	}
	if _, err := NewOTLP(context.Background(), OTLPOptions{Endpoint: "collector:4318"}); err == nil {
		t.Error("an endpoint without scheme accepted")
	}
}

func TestSpanIDs(t *testing.T) {
	ev := testEvent("x")
	tid, sid, parent := spanIDs("x", ev)
	tid2, sid2, _ := spanIDs("x", ev)
	tid3, sid3, _ := spanIDs("y", ev)
	if !tid.IsValid() || !sid.IsValid() || parent.IsValid() || tid != tid2 || sid != sid2 || tid == tid3 || sid == sid3 {
		t.Errorf("derived ids %s/%s/%s, again %s/%s, other event %s/%s", tid, sid, parent, tid2, sid2, tid3, sid3)
	}
	// A span id without a valid trace id would belong to no trace: both
	// are derived, with no parent.
	ev.SpanId, ev.ParentSpanId, ev.TraceId = "00f067aa0ba902b7", "b7ad6b7169203331", "00000000000000000000000000000000"
	if tid4, sid4, p := spanIDs("x", ev); tid4 != tid || sid4 != sid || p.IsValid() {
		t.Errorf("invalid trace id: %s/%s/%s", tid4, sid4, p)
	}
	ev.TraceId = "4bf92f3577b34da6a3ce929d0e0e4736"
	if tid5, sid5, p := spanIDs("x", ev); tid5.String() != ev.TraceId || sid5.String() != ev.SpanId || p.String() != ev.ParentSpanId {
		t.Errorf("event ids: %s/%s/%s", tid5, sid5, p)
	}
}

// TestDispatcherExportsSpansFromTheStream runs the dispatcher on real Redis
// with the otlp backend and a real gRPC collector: while the collector
// refuses, the entries stay pending and are retried; once it accepts, each
// event becomes exactly one span and every entry is acknowledged.
func TestDispatcherExportsSpansFromTheStream(t *testing.T) {
	rdb, stream := testRedis(t)
	c, endpoint := grpcCollector(t)
	c.setFail(true)
	denied := testEvent("denied")
	denied.Status, denied.ErrorCode = 429, "rate_limit_exceeded"
	events := []*llmproxyv1.UsageEvent{chatEvent("chat"), responsesEvent("responses"), denied}
	for _, ev := range events {
		if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{"id", ev.Id, "event", marshal(ev)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{newTestOTLP(t, ProtocolGRPC, endpoint)}, MaxAttempts: 1000})
	stop := start(t, d)
	waitFor(t, "a retry of the refused export", 20*time.Second, func() bool { return d.Stats().Retries >= 2 })
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 3 || len(c.spans()) != 0 {
		t.Fatalf("while the collector refuses: %d pending, %d spans; want 3 and 0", n, len(c.spans()))
	}
	c.setFail(false)
	waitFor(t, "every entry acknowledged", 20*time.Second, func() bool { return d.Stats().Delivered == 3 })
	stop()

	got := c.spans()
	byEvent := map[string]*tracepb.Span{}
	for _, s := range got {
		byEvent[attrMap(s.span.GetAttributes())["llm_proxy.event_id"].(string)] = s.span
	}
	if len(got) != 3 || len(byEvent) != 3 {
		t.Fatalf("%d spans for %d events, want one each", len(got), len(byEvent))
	}
	if s := byEvent["chat"]; hex.EncodeToString(s.GetTraceId()) != "4bf92f3577b34da6a3ce929d0e0e4736" || len(s.GetEvents()) != 1 {
		t.Errorf("chat span: trace %x, %d events", s.GetTraceId(), len(s.GetEvents()))
	}
	if s := byEvent["denied"]; s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("denied span status %v", s.GetStatus())
	}
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 0 || len(deadEntries(t, rdb, stream)) != 0 {
		t.Errorf("%d pending, %d dead-lettered; want none", n, len(deadEntries(t, rdb, stream)))
	}
}
