package extproc

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBufferBudget(t *testing.T) {
	b := newBufferBudget(100, prometheus.NewRegistry())
	if !b.take("x", 60) || b.take("x", 41) || !b.take("x", 40) {
		t.Fatal("takes up to the limit, not beyond")
	}
	b.give(100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 50 {
		wg.Go(func() {
			if b.take("x", 10) {
				mu.Lock()
				taken++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if taken != 10 || b.used.Load() != 100 || b.peak.Load() != 100 {
		t.Fatalf("%d takes of 10 fit a budget of 100 (used %d, peak %d), want 10", taken, b.used.Load(), b.peak.Load())
	}
	var unlimited *bufferBudget
	if !unlimited.take("x", 1<<40) {
		t.Error("a nil budget refused")
	}
}

// TestBufferBudgetFull: a request body the budget has no room for is refused
// with a retryable 503 in the OpenAI shape, and holds nothing.
func TestBufferBudgetFull(t *testing.T) {
	h := newHarness(t, func(_ *harness, o *Options) { o.MaxBufferedBytes = int64(len(chatBody)) - 1 })
	c := h.open()
	c.send(reqHeaders("POST", "/v1/chat/completions", tokMain))
	checkAnswer(t, 1, c.send(reqBody(chatBody)), answer{status: 503, code: "proxy_overloaded",
		headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1", "retry-after": "1"},
		body:    text(`{"error":{"message":"The proxy is holding too many large requests right now. Please retry.","type":"server_error","param":null,"code":"proxy_overloaded"}}`)})
	ev := c.end()
	if ev.GetOutcome() != outcomeError || ev.GetStatus() != 503 {
		t.Errorf("event %v", ev)
	}
	if got := h.limiter.calls(); len(got) != 0 {
		t.Errorf("reserved %v", got)
	}
	if used := h.srv.buffers.used.Load(); used != 0 {
		t.Errorf("%d bytes still held", used)
	}
}

// TestBufferBudgetGivenBack: what a stream held of the budget (its request
// body, a response read whole, a cache capture) goes back when it ends,
// however it ended.
func TestBufferBudgetGivenBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		abort bool
	}{{"complete", false}, {"aborted", true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.open()
			c.send(reqHeaders("POST", "/v1/chat/completions", tokCachePOST))
			c.send(reqBody(chatBody))
			c.send(respHeaders(200, "content-type", "application/json"))
			c.send(respBody(chatJSON[:20], false))
			// The request body, kept for a lazy count, and the first chunk
			// twice: read for usage and captured for the cache.
			if used, want := h.srv.buffers.used.Load(), int64(len(chatBody)+2*20); used != want {
				t.Fatalf("%d bytes held while the response is read and captured, want %d", used, want)
			}
			if tc.abort {
				c.abort()
			} else {
				c.send(respBody(chatJSON[20:], true))
				c.end()
			}
			if used := h.srv.buffers.used.Load(); used != 0 {
				t.Errorf("%d bytes held after the stream ended", used)
			}
		})
	}
}
