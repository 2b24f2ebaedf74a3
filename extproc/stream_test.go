package extproc

import (
	"maps"
	"slices"
	"strconv"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/store"
)

// Request and response bodies of the phase tests. Token counts are the
// tokenizer's (cl100k/o200k with chat framing); prices are the embedded
// table's: gpt-4o costs 2.5 µUSD per prompt token and 10 per completion token.
const (
	priceVersion = "2026-12-02"

	// chatBody: 9 prompt tokens, 2 × 50 completion tokens at most.
	chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"max_tokens":50,"n":2}`
	// streamBody: 9 prompt tokens, 50 completion tokens at most; the client
	// did not ask for usage, so llm-proxy does: stream_options is added at
	// the end, every other byte as the client wrote it.
	streamBody         = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"stream":true,"max_tokens":50}`
	streamBodyInjected = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"stream":true,"max_tokens":50,"stream_options":{"include_usage":true}}`
	// streamBodyAsked: the client asked for usage itself (9 prompt tokens,
	// the default 1000 completion tokens at most).
	streamBodyAsked = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"stream":true,"stream_options":{"include_usage":true}}`

	chatJSON = `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"}}],` +
		`"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}`

	// sseText is 5 tokens of text; sseUsage reports 12 + 3 tokens.
	sseText  = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there, friend.\"}}],\"usage\":null}\n\n"
	sseStop  = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
	sseUsage = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n"
	sseDone  = "data: [DONE]\n\n"
	// sseHello is one token of text.
	sseHello = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n"

	modelsJSON = `{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}`
)

// Mode overrides as modeString shows them.
const (
	modeJSONRequest  = "req_body=BUFFERED resp_headers=SEND resp_body=NONE"
	modeHeadersOnly  = "req_body=NONE resp_headers=SEND resp_body=NONE"
	modeNothingAfter = "req_body=NONE resp_headers=SKIP resp_body=NONE"
	modeBufferedBody = "req_body=NONE resp_headers=SEND resp_body=BUFFERED"
	modeStreamedBody = "req_body=NONE resp_headers=SEND resp_body=STREAMED"
)

// exchange is one message from Envoy and what its answer must be.
type exchange struct {
	send *extprocv3.ProcessingRequest
	want answer
}

// answer is what the server must answer to one message, exactly.
type answer struct {
	status  int               // an immediate response's status; 0: the request goes on
	code    string            // the OpenAI error code of an immediate response
	headers map[string]string // every header the answer sets (nil: none)
	removed []string          // every header it removes
	// body is, for an immediate response, its body (nil: not checked); for
	// any other answer, the body it puts in place of the message's (nil:
	// the body passes unchanged).
	body *string
	mode string // its mode override, as modeString shows it; "": none
}

func text(s string) *string { return &s }

// swapped is the request-headers answer of a forwarded request: the
// project's key in place of the proxy token.
var swapped = map[string]string{"authorization": "Bearer sk-upstream-secret-key"}

// noReservation: a request that reserved nothing, not even 0 tokens.
const noReservation = -1

// rateHeaders are the response headers of a limited principal's first
// request, which reserved tokens (or noReservation), with more.
func rateHeaders(tokens int64, more ...string) map[string]string {
	h := map[string]string{
		"x-request-id":                   "rid-1",
		"x-ratelimit-limit-requests":     "100",
		"x-ratelimit-remaining-requests": "99",
		"x-ratelimit-reset-requests":     "1m0s",
	}
	if tokens != noReservation {
		h["x-ratelimit-limit-tokens"] = "100000"
		h["x-ratelimit-remaining-tokens"] = strconv.FormatInt(testTPM-tokens, 10)
		h["x-ratelimit-reset-tokens"] = "1m0s"
	}
	for i := 0; i < len(more); i += 2 {
		h[more[i]] = more[i+1]
	}
	return h
}

// wantEvent completes an expected usage event with what every event of the
// harness carries: its time, request id, client address and project.
func wantEvent(ev *llmproxyv1.UsageEvent) *llmproxyv1.UsageEvent {
	ev = proto.CloneOf(ev)
	ev.Time = timestamppb.New(testStart)
	ev.RequestId = "rid-1"
	ev.ClientAddress = "192.0.2.7"
	if ev.TokenId != "" {
		ev.ProjectId = "proj_1"
	}
	if ev.LimitDecision == "" && limitedTokens[ev.TokenId] {
		ev.LimitDecision = "allowed" // the harness's limited principals pass their limits unless a test says otherwise
	}
	return ev
}

// limitedTokens are the harness principals with limits (harnessPrincipals).
var limitedTokens = map[string]bool{"tok_main": true, "tok_cache_post": true, "tok_background": true}

// checkEvent compares a usage event with want, completed by wantEvent.
func checkEvent(t *testing.T, got, want *llmproxyv1.UsageEvent) {
	t.Helper()
	if want = wantEvent(want); !proto.Equal(got, want) {
		t.Errorf("event\n%v\nwant\n%v", prototext.Format(got), prototext.Format(want))
	}
}

// checkAnswer checks the i-th answer of a request against want.
func checkAnswer(t *testing.T, i int, resp *extprocv3.ProcessingResponse, want answer) {
	t.Helper()
	status, code, body := immediate(resp)
	if status != want.status || code != want.code {
		t.Fatalf("answer %d: immediate %d %q, want %d %q: %v", i, status, code, want.status, want.code, resp)
	}
	got := setHeaders(resp)
	if want.headers == nil {
		want.headers = map[string]string{}
	}
	if !maps.Equal(got, want.headers) {
		t.Errorf("answer %d: headers %v, want %v", i, got, want.headers)
	}
	if removed := common(resp).GetHeaderMutation().GetRemoveHeaders(); !slices.Equal(removed, want.removed) {
		t.Errorf("answer %d: removed %q, want %q", i, removed, want.removed)
	}
	if status != 0 {
		if want.body != nil && body != *want.body {
			t.Errorf("answer %d: body %s, want %s", i, body, *want.body)
		}
	} else {
		mutated, ok := mutatedBody(resp)
		switch {
		case want.body == nil && ok:
			t.Errorf("answer %d: body replaced by %q", i, mutated)
		case want.body != nil && (!ok || mutated != *want.body):
			t.Errorf("answer %d: body %q (replaced: %v), want %q", i, mutated, ok, *want.body)
		}
	}
	if m := modeString(resp.GetModeOverride()); m != want.mode {
		t.Errorf("answer %d: mode override %q, want %q", i, m, want.mode)
	}
}

// TestPhases drives one request per case through the phases, checking every
// answer, then what the stream's end recorded: the reservation, the usage
// roll-up and the usage event.
func TestPhases(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before []exchange // a request of the same server run first
		flow   []exchange
		abort  bool // the client goes away after the flow
		// What the request (not the one before) recorded.
		reserved []reserveCall
		usage    []store.UsageRecord
		event    *llmproxyv1.UsageEvent
	}{
		{
			name: "auth deny: unknown token",
			flow: []exchange{{reqHeaders("GET", "/v1/models", "llmp_nope"), answer{status: 401, code: "invalid_api_key",
				headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"},
				body:    text(`{"error":{"message":"Incorrect API key provided: *********. The proxy token is unknown, revoked or expired.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`)}}},
			event: &llmproxyv1.UsageEvent{Method: "GET", Path: "/v1/models", Status: 401, Outcome: outcomeDenied, ErrorCode: "invalid_api_key",
				Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
		{
			name: "auth deny: no token",
			flow: []exchange{{reqHeaders("GET", "/v1/models", ""), answer{status: 401, code: "invalid_api_key",
				headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"}}}},
			event: &llmproxyv1.UsageEvent{Method: "GET", Path: "/v1/models", Status: 401, Outcome: outcomeDenied, ErrorCode: "invalid_api_key",
				Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
		{
			name: "auth allow: key swap, proxy and client-only headers stripped",
			flow: []exchange{{reqHeaders("GET", "/v1/models?limit=1", tokFree, "x-llm-proxy-debug", "1", "openai-organization", "org-x", "cache-control", "no-store"),
				answer{headers: swapped, removed: []string{"x-llm-proxy-debug", "openai-organization"}, mode: modeHeadersOnly}}},
			usage: []store.UsageRecord{{ProjectID: "proj_1", PriceVersion: priceVersion, Requests: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_free", Method: "GET", Path: "/v1/models", Outcome: outcomeForwarded,
				CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
		{
			name: "request body → token reservation; buffered response → settle with provider usage",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(chatBody), answer{}},
				{respHeaders(200, "content-type", "application/json", "content-length", "200", "x-request-id", "up-1"),
					answer{headers: rateHeaders(109, "x-upstream-request-id", "up-1"), mode: modeBufferedBody}},
				{respBody(chatJSON, true), answer{}},
			},
			reserved: []reserveCall{{tokens: 9 + 2*50, cost: 1023}}, // ⌈9 × 2.5 + 100 × 10⌉
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, PromptTokens: 1000, CompletionTokens: 500, CostMicroUSD: 7500}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{PromptTokens: 1000, CompletionTokens: 500, TotalTokens: 1500},
				UsageSource: "provider", CostMicroUsd: 7500, CostUsd: 0.0075, PriceVersion: priceVersion},
		},
		{
			name: "streamed response, usage asked by the client → settle with provider usage, usage chunk kept",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(streamBodyAsked), answer{}},
				{respHeaders(200, "content-type", "text/event-stream"), answer{headers: rateHeaders(1009), mode: modeStreamedBody}},
				{respBody(sseText, false), answer{}},
				{respBody(sseStop+sseUsage+sseDone, true), answer{}},
			},
			reserved: []reserveCall{{tokens: 9 + 1000, cost: 10023}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, PromptTokens: 12, CompletionTokens: 3, CostMicroUSD: 60}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200, Stream: true,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15},
				UsageSource: "provider", CostMicroUsd: 60, CostUsd: 0.00006, PriceVersion: priceVersion},
		},
		{
			name: "include_usage injected, its usage chunk removed → settle with provider usage",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(streamBody), answer{headers: map[string]string{"content-length": "136"}, body: text(streamBodyInjected)}},
				{respHeaders(200, "content-type", "text/event-stream"), answer{headers: rateHeaders(59), mode: modeStreamedBody}},
				{respBody(sseText, false), answer{}},
				{respBody(sseStop+sseUsage[:40], false), answer{body: text(sseStop)}},
				{respBody(sseUsage[40:]+sseDone, true), answer{body: text(sseDone)}},
			},
			reserved: []reserveCall{{tokens: 9 + 50, cost: 523}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, PromptTokens: 12, CompletionTokens: 3, CostMicroUSD: 60}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200, Stream: true,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15},
				UsageSource: "provider", CostMicroUsd: 60, CostUsd: 0.00006, PriceVersion: priceVersion},
		},
		{
			name: "streamed response without usage → settle with the tokenizer's count",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(streamBody), answer{headers: map[string]string{"content-length": "136"}, body: text(streamBodyInjected)}},
				{respHeaders(200, "content-type", "text/event-stream"), answer{headers: rateHeaders(59), mode: modeStreamedBody}},
				{respBody(sseText, false), answer{}},
				{respBody(sseStop+sseDone, true), answer{}},
			},
			reserved: []reserveCall{{tokens: 59, cost: 523}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, PromptTokens: 9, CompletionTokens: 5, CostMicroUSD: 73}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200, Stream: true,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{PromptTokens: 9, CompletionTokens: 5, TotalTokens: 14},
				UsageSource: "tokenizer", CostMicroUsd: 73, CostUsd: 0.000073, PriceVersion: priceVersion},
		},
		{
			name: "client abort mid-stream → settled with what was streamed, aborted event",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(streamBody), answer{headers: map[string]string{"content-length": "136"}, body: text(streamBodyInjected)}},
				{respHeaders(200, "content-type", "text/event-stream"), answer{headers: rateHeaders(59), mode: modeStreamedBody}},
				{respBody(sseHello, false), answer{}},
			},
			abort:    true,
			reserved: []reserveCall{{tokens: 59, cost: 523}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, PromptTokens: 9, CompletionTokens: 1, CostMicroUSD: 33}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200, Stream: true,
				Outcome: outcomeAborted, Aborted: true, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{PromptTokens: 9, CompletionTokens: 1, TotalTokens: 10},
				UsageSource: "tokenizer", CostMicroUsd: 33, CostUsd: 0.000033, PriceVersion: priceVersion},
		},
		{
			name: "client abort before the response → the prompt estimate",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(chatBody), answer{}},
			},
			abort:    true,
			reserved: []reserveCall{{tokens: 109, cost: 1023}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, PromptTokens: 9, CostMicroUSD: 23}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o",
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{PromptTokens: 9, TotalTokens: 9},
				UsageSource: "estimated", CostMicroUsd: 23, CostUsd: 0.000023, PriceVersion: priceVersion},
		},
		{
			name: "upstream error → nothing charged",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(chatBody), answer{}},
				{respHeaders(429, "content-type", "application/json"), answer{headers: rateHeaders(109)}},
			},
			reserved: []reserveCall{{tokens: 109, cost: 1023}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, Errors: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 429,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "provider", PriceVersion: priceVersion},
		},
		{
			name: "upstream 500 → a request and an error, nothing charged",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(chatBody), answer{}},
				{respHeaders(500, "content-type", "application/json"), answer{headers: rateHeaders(109)}},
			},
			reserved: []reserveCall{{tokens: 109, cost: 1023}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1, Errors: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 500,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "provider", PriceVersion: priceVersion},
		},
		{
			name: "refused by a limit after authentication → an error of its project and model, no request",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(`{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"max_tokens":200000}`), answer{status: 429, code: "rate_limit_exceeded",
					headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1", "x-should-retry": "false"}}},
			},
			reserved: []reserveCall{{tokens: 200009, cost: 2000023}},
			usage:    []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Errors: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 429,
				Outcome: outcomeDenied, ErrorCode: "rate_limit_exceeded", LimitDecision: "limited", CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "provider", PriceVersion: priceVersion},
		},
		{
			name: "cache hit served as an immediate response",
			before: []exchange{
				{reqHeaders("GET", "/v1/models", tokFree), answer{headers: swapped, mode: modeHeadersOnly}},
				{respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(modelsJSON)), "openai-version", "2020-10-01"),
					answer{headers: map[string]string{"x-request-id": "rid-1", "cache-status": "llm-proxy; fwd=miss"}, mode: modeBufferedBody}},
				{respBody(modelsJSON, true), answer{}},
			},
			flow: []exchange{{reqHeaders("GET", "/v1/models", tokFree), answer{status: 200, body: text(modelsJSON), headers: map[string]string{
				"x-request-id": "rid-1", "content-type": "application/json", "openai-version": "2020-10-01",
				"age": "0", "cache-status": "llm-proxy; hit; ttl=60", "content-length": strconv.Itoa(len(modelsJSON)),
			}}}},
			usage: []store.UsageRecord{{ProjectID: "proj_1", PriceVersion: priceVersion, Requests: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_free", Method: "GET", Path: "/v1/models", Status: 200,
				Outcome: outcomeForwarded, CacheStatus: cacheHit, Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
		{
			name: "cache capture of a stream, as the client saw it; replayed at the request body",
			before: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokCachePOST), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(streamBody), answer{headers: map[string]string{"content-length": "136"}, body: text(streamBodyInjected)}},
				{respHeaders(200, "content-type", "text/event-stream", "cache-control", "no-cache"),
					answer{headers: rateHeaders(59, "cache-status", "llm-proxy; fwd=miss"), mode: modeStreamedBody}},
				{respBody(sseText, false), answer{}},
				{respBody(sseStop+sseUsage+sseDone, true), answer{body: text(sseStop + sseDone)}},
			},
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokCachePOST), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(streamBody), answer{status: 200, body: text(sseText + sseStop + sseDone), headers: map[string]string{
					"x-request-id": "rid-1", "content-type": "text/event-stream", "age": "0", "cache-status": "llm-proxy; hit; ttl=60",
					"content-length":             strconv.Itoa(len(sseText + sseStop + sseDone)),
					"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "98", "x-ratelimit-reset-requests": "1m0s",
				}}},
			},
			usage: []store.UsageRecord{{ProjectID: "proj_1", Model: "gpt-4o", PriceVersion: priceVersion, Requests: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_cache_post", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200, Stream: true,
				Outcome: outcomeForwarded, CacheStatus: cacheHit, Usage: &llmproxyv1.Usage{}, UsageSource: "provider", PriceVersion: priceVersion},
		},
		{
			name: "sidecar error: the store is down → 500 in the OpenAI shape",
			flow: []exchange{{reqHeaders("GET", "/v1/models", tokOutage), answer{status: 500, code: "internal_error",
				headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"},
				body:    text(`{"error":{"message":"The proxy failed to process the request. Retry, and contact the operator if it persists.","type":"server_error","param":null,"code":"internal_error"}}`)}}},
			event: &llmproxyv1.UsageEvent{Method: "GET", Path: "/v1/models", Status: 500, Outcome: outcomeError, ErrorCode: "internal_error",
				Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
		{
			name: "sidecar error: a body that is not JSON → 400",
			flow: []exchange{
				{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				{reqBody(`{"model":`), answer{status: 400, code: "invalid_request_body", headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"}}},
			},
			usage: []store.UsageRecord{{ProjectID: "proj_1", PriceVersion: priceVersion, Errors: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Status: 400, Outcome: outcomeDenied,
				ErrorCode: "invalid_request_body", Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
		{
			name: "sidecar error: a JSON endpoint without a JSON content type → 400",
			flow: []exchange{{reqHeaders("POST", "/v1/chat/completions", tokMain, "content-type", "text/plain"), answer{status: 400, code: "invalid_content_type",
				headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"}}}},
			event: &llmproxyv1.UsageEvent{Method: "POST", Path: "/v1/chat/completions", Status: 400, Outcome: outcomeDenied, ErrorCode: "invalid_content_type",
				Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
		{
			name: "sidecar error: an unknown phase → 500",
			flow: []exchange{
				{reqHeaders("GET", "/v1/models", tokFree), answer{headers: swapped, mode: modeHeadersOnly}},
				{&extprocv3.ProcessingRequest{}, answer{status: 500, code: "internal_error", headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"}}},
			},
			usage: []store.UsageRecord{{ProjectID: "proj_1", PriceVersion: priceVersion, Errors: 1}},
			event: &llmproxyv1.UsageEvent{TokenId: "tok_free", Method: "GET", Path: "/v1/models", Status: 500, Outcome: outcomeError,
				ErrorCode: "internal_error", CacheStatus: cacheMiss, Usage: &llmproxyv1.Usage{}, UsageSource: "provider"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.before != nil {
				c := h.open()
				for i, x := range tc.before {
					checkAnswer(t, i, c.send(x.send), x.want)
				}
				c.end()
			}
			reservedBefore, usageBefore := len(h.limiter.calls()), len(h.usage.records())
			c := h.open()
			for i, x := range tc.flow {
				checkAnswer(t, i, c.send(x.send), x.want)
			}
			var ev *llmproxyv1.UsageEvent
			if tc.abort {
				ev = c.abort()
			} else {
				ev = c.end()
			}
			if got := h.limiter.calls()[reservedBefore:]; !slices.Equal(got, tc.reserved) {
				t.Errorf("reserved %v, want %v", got, tc.reserved)
			}
			if got := h.usage.records()[usageBefore:]; !slices.Equal(got, tc.usage) {
				t.Errorf("usage records %+v, want %+v", got, tc.usage)
			}
			checkEvent(t, ev, tc.event)
		})
	}
}
