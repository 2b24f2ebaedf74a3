package extproc

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

func compress(t *testing.T, encoding, s string) string {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch encoding {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "br":
		w = brotli.NewWriter(&b)
	case "deflate":
		w, _ = flate.NewWriter(&b, flate.DefaultCompression)
	}
	io.WriteString(w, s)
	w.Close()
	return b.String()
}

// chatUsage is the event of a tokMain chat completion settled at u.
func chatUsage(stream bool, u *llmproxyv1.Usage, source string, cost int64) *llmproxyv1.UsageEvent {
	return &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 200, Stream: stream,
		Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: u, UsageSource: source, CostMicroUsd: cost, CostUsd: float64(cost) / 1e6,
		PriceVersion: priceVersion}
}

// TestCompressedResponse: a compressed answer is read whole, decoded at its
// end and settled with the usage inside; it passes to the client unchanged.
func TestCompressedResponse(t *testing.T) {
	provider := &llmproxyv1.Usage{PromptTokens: 1000, CompletionTokens: 500, TotalTokens: 1500}
	for _, tc := range []struct {
		name, encoding, body string
		want                 *llmproxyv1.UsageEvent
	}{
		{"gzip", "gzip", "", chatUsage(false, provider, "provider", 7500)},
		{"brotli", "br", "", chatUsage(false, provider, "provider", 7500)},
		{"deflate", "deflate", "", chatUsage(false, provider, "provider", 7500)},
		{"undecodable: the prompt estimate", "gzip", "not gzip at all",
			chatUsage(false, &llmproxyv1.Usage{PromptTokens: 9, TotalTokens: 9}, "estimated", 23)},
		{"unknown encoding: the prompt estimate", "zstd", "????",
			chatUsage(false, &llmproxyv1.Usage{PromptTokens: 9, TotalTokens: 9}, "estimated", 23)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if body == "" {
				body = compress(t, tc.encoding, chatJSON)
			}
			h := newHarness(t)
			ev := h.do(
				exchange{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
				exchange{reqBody(chatBody), answer{}},
				exchange{respHeaders(200, "content-type", "application/json", "content-encoding", tc.encoding),
					answer{headers: rateHeaders(109), mode: modeStreamedBody}},
				exchange{respBody(body[:len(body)/2], false), answer{}},
				exchange{respBody(body[len(body)/2:], true), answer{}},
			)
			checkEvent(t, ev, tc.want)
		})
	}

	t.Run("a compressed stream: decoded at its end, its usage chunk left in", func(t *testing.T) {
		h := newHarness(t)
		body := compress(t, "br", sseText+sseStop+sseUsage+sseDone)
		ev := h.do(
			exchange{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
			exchange{reqBody(streamBody), answer{headers: map[string]string{"content-length": "136"}, body: text(streamBodyInjected)}},
			exchange{respHeaders(200, "content-type", "text/event-stream", "content-encoding", "br"), answer{headers: rateHeaders(59), mode: modeStreamedBody}},
			exchange{respBody(body[:10], false), answer{}},
			exchange{respBody(body[10:], true), answer{}},
		)
		checkEvent(t, ev, chatUsage(true, &llmproxyv1.Usage{PromptTokens: 12, CompletionTokens: 3, TotalTokens: 15}, "provider", 60))
	})
}

// TestSettledAmountsReachTheLimiter: the reservation is replaced by what was
// used, in the token window the next request sees.
func TestSettledAmountsReachTheLimiter(t *testing.T) {
	for _, tc := range []struct {
		name string
		flow []exchange
		// tokens left charged by the request
		charged int64
	}{
		{"provider usage", []exchange{
			{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
			{reqBody(chatBody), answer{}},
			{respHeaders(200, "content-type", "application/json"), answer{headers: rateHeaders(109), mode: modeStreamedBody}},
			{respBody(chatJSON, true), answer{}},
		}, 1500},
		{"an upstream error", []exchange{
			{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
			{reqBody(chatBody), answer{}},
			{respHeaders(503), answer{headers: rateHeaders(109)}},
		}, 0},
		{"no answer", []exchange{
			{reqHeaders("POST", "/v1/chat/completions", tokMain), answer{headers: swapped, mode: modeJSONRequest}},
			{reqBody(chatBody), answer{}},
		}, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.do(tc.flow...)
			if got := h.charged(tokMain); got != tc.charged {
				t.Errorf("%d tokens charged, want %d", got, tc.charged)
			}
		})
	}
}

// TestResponseBodyMode: a small JSON answer of known length is BUFFERED, any
// other read body STREAMED; a body nobody reads is not asked for.
func TestResponseBodyMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		kv   []string
		mode string
	}{
		{"small JSON", []string{"content-type", "application/json", "content-length", "1000"}, modeBufferedBody},
		{"large JSON", []string{"content-type", "application/json", "content-length", strconv.Itoa(maxBufferedResponse + 1)}, modeStreamedBody},
		{"JSON of unknown length", []string{"content-type", "application/json"}, modeStreamedBody},
		{"a stream of known length", []string{"content-type", "text/event-stream", "content-length", "1000"}, modeStreamedBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.open()
			c.send(reqHeaders("POST", "/v1/chat/completions", tokMain))
			c.send(reqBody(chatBody))
			checkAnswer(t, 2, c.send(respHeaders(200, tc.kv...)), answer{headers: rateHeaders(109), mode: tc.mode})
			c.end()
		})
	}
	t.Run("a free route", func(t *testing.T) {
		h := newHarness(t, withoutEvents, withoutCache)
		c := h.open()
		checkAnswer(t, 0, c.send(reqHeaders("POST", "/v1/moderations", tokFree)), answer{headers: swapped, mode: "req_body=BUFFERED resp_headers=SEND resp_body=NONE"})
		c.send(reqBody(`{"model":"omni-moderation-latest","input":"hi"}`))
		// A free route's answer is not read, even when the request names a model.
		checkAnswer(t, 2, c.send(respHeaders(200, "content-type", "application/json")), answer{headers: map[string]string{"x-request-id": "rid-1"}})
		c.end()
		checkAnswer(t, 0, h.open().send(reqHeaders("GET", "/v1/models", tokFree)), answer{headers: swapped, mode: modeNothingAfter})
	})
}

// TestLargeRequestBody: a body larger than keepBodyMax is counted in its own
// phase, with more time asked of Envoy, and let go: what the stream holds
// of the buffer budget goes back before the response.
func TestLargeRequestBody(t *testing.T) {
	content := strings.Repeat("lorem ipsum ", 6000) // 72 000 bytes
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + content + `"}]}`
	prompt := sharedTokenizer(t).CountPrompt("gpt-4o", []byte(body))
	h := newHarness(t, func(_ *harness, o *Options) { o.MaxBufferedBytes = int64(len(body)) + 100 })

	// tokFree reserves nothing: the count is made for the settlement.
	first := h.open()
	checkAnswer(t, 0, first.send(reqHeaders("POST", "/v1/chat/completions", tokFree)), answer{headers: swapped, mode: modeJSONRequest})
	checkAnswer(t, 1, first.send(reqBody(body)), answer{})
	if want := tokenizeTimeout; len(first.timeouts) != 1 || first.timeouts[0] != want {
		t.Errorf("message timeouts %v, want [%v]", first.timeouts, want)
	}
	if used := h.srv.buffers.used.Load(); used != 0 {
		t.Errorf("%d bytes held after the request body", used)
	}
	// The budget has room for a second one while the first waits upstream.
	second := h.open()
	second.send(reqHeaders("POST", "/v1/chat/completions", tokFree))
	if status, code, _ := immediate(second.send(reqBody(body))); status != 0 {
		t.Errorf("second large body refused: %d %s", status, code)
	}
	second.end()
	ev := first.abort()
	if ev.GetUsage().GetPromptTokens() != prompt || ev.GetUsageSource() != "estimated" || prompt < 6000 {
		t.Errorf("settled %v (%s), want %d prompt tokens estimated", ev.GetUsage(), ev.GetUsageSource(), prompt)
	}
}
