package extproc

import (
	"slices"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/usage"
)

// A fresh sidecar loads an encoding at its first count: that request's
// message asks Envoy to wait longer, the next ones do not.
func TestFirstCountExtendsTheMessageTimeout(t *testing.T) {
	h := newHarness(t, func(h *harness, o *Options) { o.Tokenizer = usage.NewTokenizer() })
	const body = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"max_tokens":5}`
	for i, want := range [][]time.Duration{{tokenizeTimeout}, nil} {
		c := h.open()
		c.send(reqHeaders("POST", "/v1/chat/completions", tokMain))
		c.send(reqBody(body)) // tokMain has a token limit: the prompt is counted to reserve
		if !slices.Equal(c.timeouts, want) {
			t.Errorf("request %d: message timeouts %v, want %v", i+1, c.timeouts, want)
		}
		c.abort()
	}
}
