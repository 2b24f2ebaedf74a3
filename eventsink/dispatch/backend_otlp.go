package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Defaults of the otlp backend.
const (
	// DefaultServiceName is the service.name of the spans' resource.
	DefaultServiceName = "llm-proxy"
	// ScopeName is the instrumentation scope of the spans.
	ScopeName = "github.com/llm-proxy/llm-proxy/eventsink/dispatch"
	// SemConvSchemaURL is the version of the semantic conventions the spans
	// follow.
	SemConvSchemaURL = "https://opentelemetry.io/schemas/1.37.0"
	// EventInferenceDetails is the name of the span event that carries a
	// captured conversation (the GenAI conventions' inference details event).
	EventInferenceDetails = "gen_ai.client.inference.operation.details"
)

// Span attributes, as the OpenTelemetry GenAI semantic conventions (v1.37)
// and llm-proxy name them.
const (
	attrOperationName    = "gen_ai.operation.name"
	attrProviderName     = "gen_ai.provider.name"
	attrSystem           = "gen_ai.system" // the name before v1.37, for backends that read only it
	attrRequestModel     = "gen_ai.request.model"
	attrResponseModel    = "gen_ai.response.model"
	attrResponseID       = "gen_ai.response.id"
	attrFinishReasons    = "gen_ai.response.finish_reasons"
	attrInputTokens      = "gen_ai.usage.input_tokens"
	attrOutputTokens     = "gen_ai.usage.output_tokens"
	attrTemperature      = "gen_ai.request.temperature"
	attrTopP             = "gen_ai.request.top_p"
	attrMaxTokens        = "gen_ai.request.max_tokens"
	attrSeed             = "gen_ai.request.seed"
	attrFrequencyPenalty = "gen_ai.request.frequency_penalty"
	attrPresencePenalty  = "gen_ai.request.presence_penalty"
	attrStopSequences    = "gen_ai.request.stop_sequences"
	attrChoiceCount      = "gen_ai.request.choice.count"
	attrInputMessages    = "gen_ai.input.messages"
	attrOutputMessages   = "gen_ai.output.messages"
	attrSystemInstr      = "gen_ai.system_instructions"
	attrServerAddress    = "server.address"
	attrServerPort       = "server.port"
	attrHTTPMethod       = "http.request.method"
	attrHTTPStatus       = "http.response.status_code"
	attrURLPath          = "url.path"
	attrErrorType        = "error.type"
	attrUserID           = "user.id"

	attrProjectID       = "llm_proxy.project_id"
	attrTokenID         = "llm_proxy.token_id"
	attrRequestID       = "llm_proxy.request_id"
	attrEventID         = "llm_proxy.event_id"
	attrCostUSD         = "llm_proxy.cost_usd"
	attrCacheStatus     = "llm_proxy.cache_status"
	attrLimitDecision   = "llm_proxy.limit_decision"
	attrOutcome         = "llm_proxy.outcome"
	attrStream          = "llm_proxy.stream"
	attrUsageSource     = "llm_proxy.usage_source"
	attrCachedTokens    = "llm_proxy.usage.cached_tokens"
	attrReasoningTokens = "llm_proxy.usage.reasoning_tokens"
	attrTTFB            = "llm_proxy.ttfb_ms"
	attrReqTruncated    = "llm_proxy.capture.request_truncated"
	attrRespTruncated   = "llm_proxy.capture.response_truncated"
)

// OTLP turns each usage event into one OpenTelemetry span and exports the
// spans of a batch in one OTLP call (gRPC or HTTP/protobuf), following the
// GenAI semantic conventions for a client inference span:
//
//   - name "{gen_ai.operation.name} {gen_ai.request.model}", kind CLIENT;
//   - gen_ai.operation.name "chat" (chat completions and the Responses API),
//     "text_completion" (legacy completions), "embeddings", or for any other
//     API the path without "/v1/" (e.g. "images/generations");
//   - gen_ai.provider.name and gen_ai.system "openai", gen_ai.request.model,
//     gen_ai.response.model, gen_ai.usage.input_tokens and output_tokens,
//     gen_ai.response.finish_reasons, server.address and server.port (of
//     [OTLPOptions.UpstreamURL]), http.request.method, url.path,
//     http.response.status_code, user.id (the end user the request named);
//   - with a captured request, its settings: gen_ai.request.temperature,
//     top_p, max_tokens (max_tokens, max_completion_tokens or
//     max_output_tokens), seed, frequency_penalty, presence_penalty,
//     stop_sequences, choice.count (n, when not 1); with a captured
//     response, gen_ai.response.id;
//   - llm-proxy's own: llm_proxy.project_id, token_id, request_id, event_id,
//     cost_usd, cache_status, limit_decision, outcome, stream, usage_source,
//     usage.cached_tokens, usage.reasoning_tokens, ttfb_ms, and the capture's
//     truncation flags;
//   - a request whose client got a status ≥ 400, or no status (the client
//     went away), ends in error: status Error, error.type the OpenAI error
//     code the client received, else the HTTP status, else "aborted".
//
// The span starts at the event's time and lasts latency_ms. Its trace id,
// span id and parent are the event's trace_id, span_id (the span llm-proxy
// gave the request and sent upstream as traceparent's parent) and
// parent_span_id (the client's span), so the span joins the client's trace
// and the upstream's spans hang under it. An event without ids (tracing off
// in the sidecar) gets ids derived from its event id: a redelivered event
// exports the same span again, which the backend can drop as a duplicate.
//
// When the event carries a capture of a chat completions, Responses API or
// legacy completions request, the span has one event,
// [EventInferenceDetails], at its end, whose attributes gen_ai.input.messages,
// gen_ai.output.messages and gen_ai.system_instructions hold the
// conversation as JSON text in the conventions' message schema
// ({"role", "parts": [{"type": "text", "content"}, {"type": "tool_call", "id",
// "name", "arguments"}, {"type": "tool_call_response", "id", "response"},
// other OpenAI parts as they are], "finish_reason"}). Without a capture, or
// for other APIs, no content is exported.
//
// Deliver exports the batch's spans in one call; an export error fails
// every entry of the call, to be retried by the dispatcher (the exporter's
// own retries are off). An entry whose event does not decode fails
// permanently on its own.
type OTLP struct {
	exp    sdktrace.SpanExporter
	res    *resource.Resource
	scope  instrumentation.Scope
	server string
	port   int
	now    func() time.Time
}

// OTLPOptions configure [NewOTLP]. The exporter also reads the standard
// OTEL_EXPORTER_OTLP_* variables of the environment (certificates,
// compression, timeout); the fields here take precedence.
type OTLPOptions struct {
	// Protocol is [ProtocolGRPC] or [ProtocolHTTPProtobuf] (empty:
	// http/protobuf, the OTLP default).
	Protocol string
	// Endpoint is the URL spans are sent to: for http/protobuf the full URL
	// (e.g. http://collector:4318/v1/traces), for gRPC scheme, host and port
	// (http:// connects without TLS). Empty: what the environment's
	// OTEL_EXPORTER_OTLP_* variables say, else the exporter's default
	// (localhost:4318 or :4317).
	Endpoint string
	// Headers are sent with every export (e.g. an API key).
	Headers map[string]string
	// Timeout bounds one export (0: the exporter's default, 10s).
	Timeout time.Duration
	// ServiceName is the resource's service.name (empty: [DefaultServiceName]).
	ServiceName string
	// ServiceVersion is the resource's service.version (empty: none).
	ServiceVersion string
	// ResourceAttributes are further resource attributes
	// (OTEL_RESOURCE_ATTRIBUTES); service.name and service.version win.
	ResourceAttributes map[string]string
	// UpstreamURL is the OpenAI API base the requests went to, named by
	// server.address and server.port (empty: [DefaultUpstreamURL]).
	UpstreamURL string
	// Now places events that carry no time (nil: time.Now).
	Now func() time.Time
}

// NewOTLP checks the options and returns the backend. No connection is made
// until the first export. Close releases the exporter.
func NewOTLP(ctx context.Context, o OTLPOptions) (*OTLP, error) {
	server, port, err := serverOf(o.UpstreamURL)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch o.Protocol {
	case ProtocolHTTPProtobuf, "":
		opts := []otlptracehttp.Option{otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false})}
		if o.Endpoint != "" {
			if err := checkURL(o.Endpoint); err != nil {
				return nil, fmt.Errorf("otlp endpoint: %w", err)
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(o.Endpoint))
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(o.Headers))
		}
		if o.Timeout > 0 {
			opts = append(opts, otlptracehttp.WithTimeout(o.Timeout))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ProtocolGRPC:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false})}
		if o.Endpoint != "" {
			if err := checkURL(o.Endpoint); err != nil {
				return nil, fmt.Errorf("otlp endpoint: %w", err)
			}
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.Endpoint))
		}
		if len(o.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(o.Headers))
		}
		if o.Timeout > 0 {
			opts = append(opts, otlptracegrpc.WithTimeout(o.Timeout))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("otlp protocol %q: want %s or %s", o.Protocol, ProtocolGRPC, ProtocolHTTPProtobuf)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	return &OTLP{exp: exp, res: otlpResource(o), server: server, port: port, now: orNow(o.Now),
		scope: instrumentation.Scope{Name: ScopeName, Version: o.ServiceVersion, SchemaURL: SemConvSchemaURL}}, nil
}

// otlpResource is the spans' resource: the extra attributes, then
// service.name and service.version.
func otlpResource(o OTLPOptions) *resource.Resource {
	attrs := make([]attribute.KeyValue, 0, len(o.ResourceAttributes)+2)
	for k, v := range o.ResourceAttributes {
		if k != "service.name" && k != "service.version" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	name := o.ServiceName
	if name == "" {
		name = o.ResourceAttributes["service.name"]
	}
	if name == "" {
		name = DefaultServiceName
	}
	attrs = append(attrs, attribute.String("service.name", name))
	if o.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", o.ServiceVersion))
	}
	return resource.NewWithAttributes(SemConvSchemaURL, attrs...)
}

// serverOf is the host and port of the upstream URL.
func serverOf(upstream string) (string, int, error) {
	if upstream == "" {
		upstream = DefaultUpstreamURL
	}
	if err := checkURL(upstream); err != nil {
		return "", 0, fmt.Errorf("upstream URL: %w", err)
	}
	u, _ := url.Parse(upstream)
	port := 443
	if u.Scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	}
	return u.Hostname(), port, nil
}

// Name returns "otlp".
func (o *OTLP) Name() string { return "otlp" }

// Close shuts the exporter down, waiting up to 5s for an export in flight.
func (o *OTLP) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return o.exp.Shutdown(ctx)
}

// Deliver exports one span per entry in one call.
func (o *OTLP) Deliver(ctx context.Context, entries []Entry) error {
	failed := map[string]error{}
	spans := make([]sdktrace.ReadOnlySpan, 0, len(entries))
	ids := make([]string, 0, len(entries))
	now := o.now()
	for _, e := range entries {
		ev, err := decodeEvent(e)
		if err != nil {
			failed[e.ID] = err
			continue
		}
		spans = append(spans, o.spanFor(e.ID, ev, now).Snapshot())
		ids = append(ids, e.ID)
	}
	if len(spans) > 0 {
		if err := o.exp.ExportSpans(ctx, spans); err != nil {
			err = fmt.Errorf("export spans: %w", err)
			if len(failed) == 0 {
				return err
			}
			for _, id := range ids {
				failed[id] = err
			}
		}
	}
	if len(failed) > 0 {
		return &BatchError{Failed: failed}
	}
	return nil
}

// spanFor maps one usage event, delivered under entry id id, to its span.
func (o *OTLP) spanFor(id string, ev *llmproxyv1.UsageEvent, now time.Time) tracetest.SpanStub {
	start, end := span(ev, now)
	tid, sid, parent := spanIDs(id, ev)
	x := decodeCapture(ev)
	op := operationName(ev.GetPath())
	name := op
	if m := ev.GetModel(); m != "" {
		name += " " + m
	}
	stub := tracetest.SpanStub{
		Name:                 name,
		SpanContext:          trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
		SpanKind:             trace.SpanKindClient,
		StartTime:            start,
		EndTime:              end,
		Attributes:           o.attributes(id, ev, x, op),
		Resource:             o.res,
		InstrumentationScope: o.scope,
	}
	if parent.IsValid() {
		stub.Parent = trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: parent, TraceFlags: trace.FlagsSampled, Remote: true})
	}
	if status := ev.GetStatus(); status >= 400 || status == 0 {
		desc := ev.GetErrorCode()
		if desc == "" && status != 0 {
			desc = "HTTP " + strconv.Itoa(int(status))
		}
		if desc == "" {
			desc = "client went away before the response"
		}
		stub.Status = sdktrace.Status{Code: codes.Error, Description: desc}
	}
	if attrs := contentAttributes(x, op, ev.GetFinishReasons()); len(attrs) > 0 {
		stub.Events = []sdktrace.Event{{Name: EventInferenceDetails, Time: end, Attributes: attrs}}
	}
	return stub
}

// operationName is gen_ai.operation.name for a request path: the
// conventions' name where there is one (eventsink.GenAIOperation, which the
// /metrics histograms use too), else the path after /v1/.
func operationName(path string) string {
	if op, ok := eventsink.GenAIOperation(path); ok {
		return op
	}
	if op := strings.Trim(strings.TrimPrefix(path, "/v1/"), "/"); op != "" {
		return op
	}
	return "unknown"
}

// spanIDs are the span's trace id, span id and parent span id: the event's
// when valid; else the trace and span ids derived from the event id (and no
// parent, which belongs to a trace the span is then not in).
func spanIDs(id string, ev *llmproxyv1.UsageEvent) (trace.TraceID, trace.SpanID, trace.SpanID) {
	tid, err := trace.TraceIDFromHex(ev.GetTraceId())
	fromEvent := err == nil && tid.IsValid()
	if !fromEvent {
		sum := sha256.Sum256([]byte("llm-proxy trace " + id))
		copy(tid[:], sum[:16])
		if !tid.IsValid() {
			tid[15] = 1
		}
	}
	sid, err := trace.SpanIDFromHex(ev.GetSpanId())
	if err != nil || !sid.IsValid() || !fromEvent {
		sum := sha256.Sum256([]byte("llm-proxy span " + id))
		copy(sid[:], sum[:8])
		if !sid.IsValid() {
			sid[7] = 1
		}
	}
	var parent trace.SpanID
	if fromEvent {
		if p, err := trace.SpanIDFromHex(ev.GetParentSpanId()); err == nil {
			parent = p
		}
	}
	return tid, sid, parent
}

// attributes are the span's attributes, in a fixed order.
func (o *OTLP) attributes(id string, ev *llmproxyv1.UsageEvent, x exchange, op string) []attribute.KeyValue {
	u := ev.GetUsage()
	a := []attribute.KeyValue{
		attribute.String(attrOperationName, op),
		attribute.String(attrProviderName, "openai"),
		attribute.String(attrSystem, "openai"),
	}
	str := func(k, v string) {
		if v != "" {
			a = append(a, attribute.String(k, v))
		}
	}
	str(attrRequestModel, ev.GetModel())
	str(attrResponseModel, ev.GetResponseModel())
	if id, _ := x.response["id"].(string); id != "" {
		a = append(a, attribute.String(attrResponseID, id))
	}
	if fr := ev.GetFinishReasons(); len(fr) > 0 {
		a = append(a, attribute.StringSlice(attrFinishReasons, fr))
	}
	if u != nil {
		a = append(a, attribute.Int64(attrInputTokens, u.GetPromptTokens()), attribute.Int64(attrOutputTokens, u.GetCompletionTokens()))
	}
	a = append(a, requestSettings(x)...)
	a = append(a, attribute.String(attrServerAddress, o.server), attribute.Int(attrServerPort, o.port))
	str(attrHTTPMethod, ev.GetMethod())
	str(attrURLPath, ev.GetPath())
	if s := ev.GetStatus(); s != 0 {
		a = append(a, attribute.Int(attrHTTPStatus, int(s)))
	}
	if s := ev.GetStatus(); s >= 400 || s == 0 {
		et := ev.GetErrorCode()
		if et == "" && s != 0 {
			et = strconv.Itoa(int(s))
		}
		if et == "" {
			et = "aborted"
		}
		a = append(a, attribute.String(attrErrorType, et))
	}
	str(attrUserID, ev.GetEndUser())
	str(attrProjectID, ev.GetProjectId())
	str(attrTokenID, ev.GetTokenId())
	str(attrRequestID, ev.GetRequestId())
	a = append(a, attribute.String(attrEventID, id))
	if c := ev.GetCostUsd(); c != 0 {
		a = append(a, attribute.Float64(attrCostUSD, c))
	}
	str(attrCacheStatus, ev.GetCacheStatus())
	str(attrLimitDecision, ev.GetLimitDecision())
	str(attrOutcome, ev.GetOutcome())
	a = append(a, attribute.Bool(attrStream, ev.GetStream()))
	str(attrUsageSource, ev.GetUsageSource())
	if c := u.GetCachedTokens(); c > 0 {
		a = append(a, attribute.Int64(attrCachedTokens, c))
	}
	if r := u.GetReasoningTokens(); r > 0 {
		a = append(a, attribute.Int64(attrReasoningTokens, r))
	}
	if t := ev.GetTtfbMs(); t > 0 {
		a = append(a, attribute.Float64(attrTTFB, t))
	}
	if c := ev.GetCapture(); c != nil {
		a = append(a, attribute.Bool(attrReqTruncated, c.GetRequestTruncated()), attribute.Bool(attrRespTruncated, c.GetResponseTruncated()))
	}
	return a
}

// requestSettings are the gen_ai.request.* attributes the captured request
// sets.
func requestSettings(x exchange) []attribute.KeyValue {
	r := x.request
	if r == nil {
		return nil
	}
	var a []attribute.KeyValue
	float := func(k string, names ...string) {
		for _, n := range names {
			if f, err := number(r[n]).Float64(); err == nil {
				a = append(a, attribute.Float64(k, f))
				return
			}
		}
	}
	integer := func(k string, names ...string) {
		for _, n := range names {
			if i, err := number(r[n]).Int64(); err == nil {
				a = append(a, attribute.Int64(k, i))
				return
			}
		}
	}
	float(attrTemperature, "temperature")
	float(attrTopP, "top_p")
	integer(attrMaxTokens, "max_completion_tokens", "max_tokens", "max_output_tokens")
	integer(attrSeed, "seed")
	float(attrFrequencyPenalty, "frequency_penalty")
	float(attrPresencePenalty, "presence_penalty")
	switch s := r["stop"].(type) {
	case string:
		a = append(a, attribute.StringSlice(attrStopSequences, []string{s}))
	case []any:
		var stops []string
		for _, v := range s {
			if str, ok := v.(string); ok {
				stops = append(stops, str)
			}
		}
		if len(stops) > 0 {
			a = append(a, attribute.StringSlice(attrStopSequences, stops))
		}
	}
	if n, err := number(r["n"]).Int64(); err == nil && n != 1 {
		a = append(a, attribute.Int64(attrChoiceCount, n))
	}
	return a
}

// number is v as a json.Number, or "" (which parses as nothing).
func number(v any) json.Number {
	n, _ := v.(json.Number)
	return n
}

// contentAttributes are the attributes of the inference details event: the
// captured conversation in the conventions' message schema, as JSON text.
// None for APIs other than chat, responses and text completions.
func contentAttributes(x exchange, op string, finishReasons []string) []attribute.KeyValue {
	switch x.api {
	case apiChat, apiResponses, apiCompletions:
	default:
		return nil
	}
	var a []attribute.KeyValue
	if s := x.instructions(); s != "" {
		a = append(a, attribute.String(attrSystemInstr, jsonText([]any{map[string]any{"type": "text", "content": s}})))
	}
	if in := x.inputMessages(); len(in) > 0 {
		msgs := make([]any, len(in))
		for i, m := range in {
			msgs[i] = map[string]any{"role": m.role, "parts": otelParts(m)}
		}
		a = append(a, attribute.String(attrInputMessages, jsonText(msgs)))
	}
	if out := x.outputMessages(finishReasons); len(out) > 0 {
		msgs := make([]any, len(out))
		for i, m := range out {
			msgs[i] = map[string]any{"role": m.role, "parts": otelParts(m), "finish_reason": m.finish}
		}
		a = append(a, attribute.String(attrOutputMessages, jsonText(msgs)))
	}
	if len(a) == 0 {
		return nil
	}
	return append([]attribute.KeyValue{attribute.String(attrOperationName, op)}, a...)
}

// otelParts are m's parts in the conventions' message schema.
func otelParts(m message) []any {
	parts := []any{}
	if m.role == "tool" {
		resp := m.content
		if resp == nil {
			resp = ""
		}
		p := map[string]any{"type": "tool_call_response", "response": resp}
		if m.toolCallID != "" {
			p["id"] = m.toolCallID
		}
		return append(parts, p)
	}
	switch c := m.content.(type) {
	case string:
		parts = append(parts, map[string]any{"type": "text", "content": c})
	case []any:
		for _, p := range c {
			pm, _ := p.(map[string]any)
			if pm["type"] == "text" {
				parts = append(parts, map[string]any{"type": "text", "content": pm["text"]})
				continue
			}
			parts = append(parts, pm)
		}
	}
	for _, tc := range m.toolCalls {
		p := map[string]any{"type": "tool_call", "name": tc.name, "arguments": toolArguments(tc.arguments)}
		if tc.id != "" {
			p["id"] = tc.id
		}
		parts = append(parts, p)
	}
	return parts
}

// toolArguments is a tool call's arguments: the JSON the model wrote,
// decoded, or the text itself when it is not JSON.
func toolArguments(s string) any {
	if !json.Valid([]byte(s)) {
		return s
	}
	return json.RawMessage(s)
}

// jsonText encodes v, built of maps, lists, strings and JSON numbers, as
// JSON text.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}
