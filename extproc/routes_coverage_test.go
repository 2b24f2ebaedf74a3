package extproc

import (
	"io"
	"regexp"
	"slices"
	"strconv"
	"testing"

	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/llm-proxy/llm-proxy/config"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/usage"
)

// placeholder is a route pattern's {name} segment.
var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// TestEveryRouteForwarded: every route of the built-in allowlist is
// forwarded with the project's key, and the endpoints docs/routes.md leaves
// out are answered at the edge; so a route added to config/routes.json is
// admitted without any other change.
func TestEveryRouteForwarded(t *testing.T) {
	routes, err := config.LoadRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, withoutEvents)
	for _, r := range routes {
		path := placeholder.ReplaceAllString(r.Path, "id_1")
		c := h.open()
		resp := c.send(reqHeaders(r.Method, path, tokFree))
		if status, code, _ := immediate(resp); status != 0 {
			t.Errorf("%s %s: answered %d %s at the edge, want it forwarded", r.Method, path, status, code)
			c.cancel()
			continue
		}
		if got := setHeaders(resp)["authorization"]; got != swapped["authorization"] {
			t.Errorf("%s %s: authorization %q, want the project's key", r.Method, path, got)
		}
		// The rest of the exchange, as Envoy would relay it with the modes
		// asked for, so the stream ends as a real one does.
		if resp.GetModeOverride().GetRequestBodyMode() == procv3.ProcessingMode_BUFFERED {
			c.send(reqBody(`{}`))
		}
		resp = c.send(respHeaders(200, "content-type", "application/json", "content-length", "2"))
		if resp.GetModeOverride().GetResponseBodyMode() != procv3.ProcessingMode_NONE {
			c.send(respBody(`{}`, true))
		}
		closeStream(t, c)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/realtime", 404, "unknown_url"},
		{"POST", "/v1/realtime/client_secrets", 404, "unknown_url"},
		{"POST", "/v1/containers", 405, "method_not_allowed"}, // listed, not created
		{"POST", "/v1/fine_tuning/jobs", 404, "unknown_url"},
		{"DELETE", "/v1/models/ft:gpt-4o-mini:org::id", 405, "method_not_allowed"},
		{"POST", "/v1/evals", 404, "unknown_url"},
		{"POST", "/v1/videos", 404, "unknown_url"},
		{"GET", "/v1/organization/projects", 404, "unknown_url"},
	} {
		c := h.open()
		if status, code, _ := immediate(c.send(reqHeaders(tc.method, tc.path, tokFree))); status != tc.status || code != tc.code {
			t.Errorf("%s %s: answered %d %q, want %d %q", tc.method, tc.path, status, code, tc.status, tc.code)
		}
		c.end()
	}
}

// closeStream closes the stream as Envoy does after the last phase and
// waits until the server has finished it, skipping interim answers (a
// settle that loads a tokenizer asks for more time first).
func closeStream(t *testing.T, c *call) {
	t.Helper()
	c.ps.CloseSend()
	for {
		resp, err := c.ps.Recv()
		switch {
		case err == io.EOF:
			return
		case err != nil:
			t.Fatalf("stream ended with %v, want EOF", err)
		case resp.Response != nil:
			t.Fatalf("answer after the last phase: %v", resp)
		}
	}
}

// TestCallRoutesPriced: every route the built-in allowlist charges per call
// has a price in the built-in price table (serve refuses to start
// otherwise).
func TestCallRoutesPriced(t *testing.T) {
	routes, err := config.LoadRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	prices := usage.DefaultPrices()
	var calls int
	for _, r := range routes {
		if r.Charge != config.ChargeCall {
			continue
		}
		calls++
		if _, ok := prices.CallCost(r.Method + " " + r.Path); !ok {
			t.Errorf("%s %s is charged per call but prices.json has no calls price for it", r.Method, r.Path)
		}
	}
	if calls == 0 {
		t.Error("no route is charged per call: vector store search should be")
	}
}

// TestVectorStoreSearchChargedPerCall: a vector store search, charged per
// call at OpenAI's file search call price ($2.50 per 1,000: 2,500 µUSD), is
// reserved at that price when its body arrives and settled at it when the
// search succeeds; a failed search costs nothing. It names no model, and
// its answer is not read.
func TestVectorStoreSearchChargedPerCall(t *testing.T) {
	const (
		path   = "/v1/vector_stores/vs_abc123/search"
		body   = `{"query":"What is the return policy?","max_num_results":5,"rewrite_query":true}`
		result = `{"object":"vector_store.search_results.page","search_query":"What is the return policy?","data":[],"has_more":false,"next_page":null}`
	)
	for _, tc := range []struct {
		name     string
		token    string
		status   int
		reserved []reserveCall
		cost     int64
		errors   int64
	}{
		{name: "success, limited project: reserved and settled at the call price", token: tokMain, status: 200,
			reserved: []reserveCall{{0, 2_500}}, cost: 2_500},
		{name: "success, no limits: nothing reserved, the call still costs", token: tokFree, status: 200, cost: 2_500},
		{name: "search refused upstream: free", token: tokMain, status: 400,
			reserved: []reserveCall{{0, 2_500}}, errors: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.open()
			hdrs := answer{headers: swapped, mode: modeJSONRequest}
			reserved := int64(noReservation)
			respHdrs := map[string]string{"x-request-id": "rid-1"}
			if tc.token == tokMain {
				reserved = 0
				respHdrs = rateHeaders(reserved)
			}
			checkAnswer(t, 0, c.send(reqHeaders("POST", path, tc.token)), hdrs)
			checkAnswer(t, 1, c.send(reqBody(body)), answer{})
			checkAnswer(t, 2, c.send(respHeaders(tc.status, "content-type", "application/json", "content-length", strconv.Itoa(len(result)))),
				answer{headers: respHdrs})
			ev := c.end()
			version := ""
			if tc.cost > 0 {
				version = priceVersion // a cost names the price table it came from
			}

			if got := h.limiter.calls(); !slices.Equal(got, tc.reserved) {
				t.Errorf("reserved %v, want %v", got, tc.reserved)
			}
			tokenID := "tok_main"
			if tc.token == tokFree {
				tokenID = "tok_free"
			}
			want := []store.UsageRecord{{ProjectID: "proj_1", PriceVersion: priceVersion, Requests: 1, Errors: tc.errors, CostMicroUSD: tc.cost}}
			if got := h.usage.records(); !slices.Equal(got, want) {
				t.Errorf("usage records %+v, want %+v", got, want)
			}
			checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: tokenID, Method: "POST", Path: path, Status: int32(tc.status),
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "provider",
				CostMicroUsd: tc.cost, CostUsd: float64(tc.cost) / 1e6, PriceVersion: version})
		})
	}
}

// TestFreeJSONRoutesReserveNothing: a free route whose JSON body is read (a
// token count, a conversation) holds no tokens per minute, even for a
// limited project, and costs nothing; a compaction, which runs the model,
// is reserved and settled by its usage like a response.
func TestFreeJSONRoutesReserveNothing(t *testing.T) {
	for _, tc := range []struct {
		name, path, body, answer string
		model                    string
		reserved                 []reserveCall
		usage                    *llmproxyv1.Usage
		cost                     int64
	}{
		{
			name: "input token count", path: "/v1/responses/input_tokens",
			body: `{"model":"gpt-4o","input":"Tell me a joke."}`, answer: `{"object":"response.input_tokens","input_tokens":11}`,
			model: "gpt-4o", usage: &llmproxyv1.Usage{},
		},
		{
			name: "conversation", path: "/v1/conversations",
			body:   `{"metadata":{"topic":"demo"},"items":[{"type":"message","role":"user","content":"Hello!"}]}`,
			answer: `{"id":"conv_1","object":"conversation","created_at":1,"metadata":{"topic":"demo"}}`,
			usage:  &llmproxyv1.Usage{},
		},
		{
			// Reserved: the prompt, 5 tokens by tiktoken, plus the default
			// 1,000 output tokens, at gpt-4o's 2.50 and 10 USD per million
			// (10,012.5 µUSD, rounded up); settled at the usage the answer
			// reports (120 × 2.5 + 30 × 10 = 600 µUSD).
			name: "compaction", path: "/v1/responses/compact",
			body:     `{"model":"gpt-4o","input":"Tell me a joke."}`,
			answer:   `{"id":"resp_1","object":"response.compaction","output":[],"usage":{"input_tokens":120,"output_tokens":30,"total_tokens":150}}`,
			model:    "gpt-4o",
			reserved: []reserveCall{{1_005, 10_013}},
			usage:    &llmproxyv1.Usage{PromptTokens: 120, CompletionTokens: 30, TotalTokens: 150},
			cost:     600,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.open()
			checkAnswer(t, 0, c.send(reqHeaders("POST", tc.path, tokMain)), answer{headers: swapped, mode: modeJSONRequest})
			checkAnswer(t, 1, c.send(reqBody(tc.body)), answer{})
			reserved, mode := int64(noReservation), ""
			if tc.reserved != nil {
				reserved, mode = tc.reserved[0].tokens, modeBufferedBody
			}
			checkAnswer(t, 2, c.send(respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(tc.answer)))),
				answer{headers: rateHeaders(reserved), mode: mode})
			if mode != "" {
				checkAnswer(t, 3, c.send(respBody(tc.answer, true)), answer{})
			}
			ev := c.end()
			if got := h.limiter.calls(); !slices.Equal(got, tc.reserved) {
				t.Errorf("reserved %v, want %v", got, tc.reserved)
			}
			want := []store.UsageRecord{{ProjectID: "proj_1", Model: tc.model, PriceVersion: priceVersion, Requests: 1,
				PromptTokens: tc.usage.PromptTokens, CompletionTokens: tc.usage.CompletionTokens, CostMicroUSD: tc.cost}}
			if got := h.usage.records(); !slices.Equal(got, want) {
				t.Errorf("usage records %+v, want %+v", got, want)
			}
			version := priceVersion
			if tc.model == "" {
				version = "" // no model and no cost: no price looked up
			}
			checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: tc.path, Model: tc.model, Status: 200,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: tc.usage, UsageSource: "provider",
				CostMicroUsd: tc.cost, CostUsd: float64(tc.cost) / 1e6, PriceVersion: version})
		})
	}
}
