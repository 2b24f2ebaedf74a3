package extproc

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/upstream"
	"github.com/llm-proxy/llm-proxy/usage"
)

const (
	// backgroundBody: 2 prompt tokens, 100 completion tokens at most:
	// 102 tokens and ⌈2 × 2.5 + 100 × 10⌉ = 1005 µUSD reserved.
	backgroundBody = `{"model":"gpt-4o","input":"Say hi","background":true,"max_output_tokens":100}`
	queuedJSON     = `{"id":"resp_1","object":"response","status":"queued","model":"gpt-4o-2024-08-06"}`
	completedJSON  = `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o-2024-08-06",` +
		`"usage":{"input_tokens":2,"output_tokens":40,"total_tokens":42}}`

	batchBody = `{"input_file_id":"file-1","endpoint":"/v1/chat/completions","completion_window":"24h"}`
	// batchInput: two lines of 9 prompt tokens and 100 completion tokens
	// at most, at half price: 2 × ⌈(9 × 2.5 + 100 × 10) / 2⌉ = 2 × 512 µUSD.
	batchInput = `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"max_tokens":100}}` + "\n" +
		`{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"max_tokens":100}}` + "\n"
	batchJSON = `{"id":"batch_1","object":"batch","status":"validating","endpoint":"/v1/chat/completions"}`
)

func withFiles(f fileServer) func(*harness, *Options) {
	return func(_ *harness, o *Options) { o.Files = f }
}

// jsonResponse is the response-headers exchange of a small JSON answer of
// tokBackground, whose first request reserved tokens.
func jsonResponse(tokens int64, body string) exchange {
	return exchange{respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(body))),
		answer{headers: rateHeaders(tokens), mode: modeBufferedBody}}
}

// charged returns the tokens earlier requests of token left charged in the
// window: a probe request's x-ratelimit-remaining-tokens plus what the probe
// itself reserved.
func (h *harness) charged(token string) int64 {
	h.t.Helper()
	c := h.open()
	c.send(reqHeaders("POST", "/v1/embeddings", token))
	c.send(reqBody(`{"model":"text-embedding-3-small","input":""}`))
	r := setHeaders(c.send(respHeaders(500)))
	c.end()
	remaining, err := strconv.ParseInt(r["x-ratelimit-remaining-tokens"], 10, 64)
	calls := h.limiter.calls()
	if err != nil || len(calls) == 0 {
		h.t.Fatalf("remaining tokens %v, reservations %v", r, calls)
	}
	return testTPM - remaining - calls[len(calls)-1].tokens
}

func TestDeferred(t *testing.T) {
	t.Run("a background response's answer hands its reservation to the tracker", func(t *testing.T) {
		h := newHarness(t)
		ev := h.do(
			exchange{reqHeaders("POST", "/v1/responses", tokBackground), answer{headers: swapped, mode: modeJSONRequest}},
			exchange{reqBody(backgroundBody), answer{}},
			jsonResponse(102, queuedJSON),
			exchange{respBody(queuedJSON, true), answer{}},
		)
		checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: "tok_background", Method: "POST", Path: "/v1/responses", Model: "gpt-4o", Status: 200,
			Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "deferred", PriceVersion: priceVersion})
		if got := h.limiter.calls(); !slices.Equal(got, []reserveCall{{102, 1005}}) {
			t.Errorf("reserved %v", got)
		}
		if recs := h.usage.records(); len(recs) != 0 {
			t.Errorf("settled now: %+v", recs)
		}
		if len(h.deferred.tracked) != 1 {
			t.Fatalf("tracked %+v", h.deferred.tracked)
		}
		d := h.deferred.tracked[0]
		ticket, err := ratelimit.UnmarshalTicket(d.Ticket)
		if err != nil {
			t.Fatal(err)
		}
		d.Ticket = nil
		if want := (store.Deferred{ID: "resp_1", Kind: store.DeferredResponse, ProjectID: "proj_1", TokenID: "tok_background",
			Model: "gpt-4o", ReservedMicroUSD: 1005}); !reflect.DeepEqual(d, want) {
			t.Errorf("tracked %+v, want %+v", d, want)
		}
		if ticket.Tokens != 102 || ticket.Cost != 1005 || len(ticket.Limits) != 2 {
			t.Errorf("ticket %+v", ticket)
		}
		// The reservation stays charged until the tracker settles it.
		if got := h.charged(tokBackground); got != 102 {
			t.Errorf("%d tokens charged, want 102", got)
		}
	})

	t.Run("a tracker that fails settles the request now, budget and roll-up alike", func(t *testing.T) {
		h := newHarness(t)
		h.deferred.trackErr = errors.New("store down")
		ev := h.do(
			exchange{reqHeaders("POST", "/v1/responses", tokBackground), answer{headers: swapped, mode: modeJSONRequest}},
			exchange{reqBody(backgroundBody), answer{}},
			jsonResponse(102, queuedJSON),
			exchange{respBody(queuedJSON, true), answer{}},
		)
		// The event and the roll-up show the prompt estimate…
		checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: "tok_background", Method: "POST", Path: "/v1/responses", Model: "gpt-4o", Status: 200,
			Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{PromptTokens: 2, TotalTokens: 2},
			UsageSource: "estimated", CostMicroUsd: 5, CostUsd: 0.000005, PriceVersion: priceVersion})
		// …and so does the limiter: the reservation was settled to it, not
		// kept for a ticket nothing will settle.
		if got := h.charged(tokBackground); got != 2 {
			t.Errorf("%d tokens charged, want 2", got)
		}
	})

	t.Run("a terminal answer is shown to the tracker", func(t *testing.T) {
		h := newHarness(t)
		ev := h.do(
			exchange{reqHeaders("GET", "/v1/responses/resp_1", tokBackground), answer{headers: swapped, mode: modeHeadersOnly}},
			exchange{respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(completedJSON))),
				answer{headers: rateHeaders(noReservation, "cache-status", "llm-proxy; fwd=miss"), mode: modeBufferedBody}},
			exchange{respBody(completedJSON, true), answer{}},
		)
		checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: "tok_background", Method: "GET", Path: "/v1/responses/resp_1", Status: 200,
			Outcome: outcomeForwarded, CacheStatus: cacheMiss, Usage: &llmproxyv1.Usage{}, UsageSource: "provider"})
		want := []observed{{"proj_1", usage.Job{ID: "resp_1", Object: "response", Status: "completed", Model: "gpt-4o-2024-08-06",
			Usage: usage.Usage{PromptTokens: 2, CompletionTokens: 40, TotalTokens: 42}, HasUsage: true}}}
		if !reflect.DeepEqual(h.deferred.observed, want) {
			t.Errorf("observed %+v, want %+v", h.deferred.observed, want)
		}
	})

	t.Run("background refused to a project that does not allow it", func(t *testing.T) {
		h := newHarness(t)
		c := h.open()
		c.send(reqHeaders("POST", "/v1/responses", tokMain))
		resp := c.send(reqBody(backgroundBody))
		checkAnswer(t, 1, resp, answer{status: 403, code: "background_not_allowed", headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"},
			body: text(`{"error":{"message":"The proxy refuses this request: background responses are disabled for this project.","type":"permission_error","param":"background","code":"background_not_allowed"}}`)})
		c.end()
		if got := h.limiter.calls(); len(got) != 0 {
			t.Errorf("reserved %v", got)
		}
	})

	t.Run("a batch is reserved from its input file at the batch price and tracked", func(t *testing.T) {
		h := newHarness(t, withFiles(fileServer{files: map[string]string{"/v1/files/file-1/content": batchInput}}))
		c := h.open()
		checkAnswer(t, 0, c.send(reqHeaders("POST", "/v1/batches", tokBackground)), answer{headers: swapped, mode: modeJSONRequest})
		checkAnswer(t, 1, c.send(reqBody(batchBody)), answer{})
		if want := []time.Duration{9 * time.Second}; !slices.Equal(c.timeouts, want) {
			t.Errorf("message timeouts %v, want %v", c.timeouts, want)
		}
		checkAnswer(t, 2, c.send(respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(batchJSON)))),
			answer{headers: rateHeaders(0), mode: modeBufferedBody})
		checkAnswer(t, 3, c.send(respBody(batchJSON, true)), answer{})
		ev := c.end()
		checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: "tok_background", Method: "POST", Path: "/v1/batches", Status: 200,
			Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "deferred"})
		if got := h.limiter.calls(); !slices.Equal(got, []reserveCall{{0, 2 * 512}}) {
			t.Errorf("reserved %v", got)
		}
		if len(h.deferred.tracked) != 1 {
			t.Fatalf("tracked %+v", h.deferred.tracked)
		}
		if d := h.deferred.tracked[0]; d.ID != "batch_1" || d.Kind != store.DeferredBatch || d.ReservedMicroUSD != 1024 || d.Model != "" || d.TokenID != "tok_background" {
			t.Errorf("tracked %+v", d)
		}
	})

	for _, tc := range []struct {
		name, token, body string
		files             fileServer
		status            int
		code              string
	}{
		{"batches refused", tokMain, batchBody, fileServer{}, 403, "batches_not_allowed"},
		{"batch input file missing", tokBackground, batchBody, fileServer{err: &upstream.StatusError{Status: 404}}, 400, "input_file_not_found"},
		{"batch input file unreadable", tokBackground, batchBody, fileServer{err: &upstream.StatusError{Status: 503}}, 502, "batch_input_unavailable"},
		{"batch input file not JSONL", tokBackground, batchBody, fileServer{files: map[string]string{"/v1/files/file-1/content": "{}\n"}}, 400, "invalid_request_body"},
		{"batch without input file", tokBackground, `{"endpoint":"/v1/chat/completions"}`, fileServer{}, 400, "invalid_request_body"},
		{"batch input file over the read limit", tokBackground, batchBody, fileServer{files: map[string]string{"/v1/files/file-1/content": batchInput + batchInput}}, 400, "batch_input_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withFiles(tc.files), func(_ *harness, o *Options) { o.MaxBatchInput = int64(len(batchInput)) })
			c := h.open()
			c.send(reqHeaders("POST", "/v1/batches", tc.token))
			if status, code, body := immediate(c.send(reqBody(tc.body))); status != tc.status || code != tc.code {
				t.Errorf("answer %d %s, want %d %s", status, body, tc.status, tc.code)
			}
			c.end()
		})
	}
}
