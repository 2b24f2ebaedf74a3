package extproc

import (
	"fmt"
	"testing"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/usage"
)

// withPrincipal adds a principal of proj_1 under token.
func withPrincipal(token string, p authz.Principal) func(*harness, *Options) {
	return func(h *harness, _ *Options) {
		p.ProjectID, p.OpenAIKey = "proj_1", "sk-upstream-secret-key"
		h.auth.principals[token] = p
	}
}

func TestLimits(t *testing.T) {
	denied := func(more ...string) map[string]string {
		h := map[string]string{"content-type": "application/json", "x-request-id": "rid-1"}
		for i := 0; i < len(more); i += 2 {
			h[more[i]] = more[i+1]
		}
		return h
	}

	t.Run("concurrency: a slot is held until the stream ends", func(t *testing.T) {
		h := newHarness(t, withPrincipal("llmp_one", authz.Principal{TokenID: "tok_one", TokenLimits: store.Limits{MaxConcurrent: ptr(int64(1))}}))
		first := h.open()
		checkAnswer(t, 0, first.send(reqHeaders("GET", "/v1/models", "llmp_one")), answer{headers: swapped, mode: modeHeadersOnly})
		second := h.open()
		checkAnswer(t, 0, second.send(reqHeaders("GET", "/v1/models", "llmp_one")), answer{status: 429, code: "rate_limit_exceeded",
			headers: denied("retry-after", "1", "retry-after-ms", "1000"),
			body:    text(`{"error":{"message":"Rate limit reached for this proxy token on concurrent requests: limit 1. Please try again in 1s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)})
		second.end()
		first.abort() // the client left: the slot is freed all the same
		third := h.open()
		checkAnswer(t, 0, third.send(reqHeaders("GET", "/v1/models", "llmp_one")), answer{headers: swapped, mode: modeHeadersOnly})
		third.end()
	})

	t.Run("the limiter is down for a kind that fails closed", func(t *testing.T) {
		h := newHarness(t)
		h.limiter.admitErr = fmt.Errorf("admit: %w", ratelimit.ErrUnavailable)
		c := h.open()
		checkAnswer(t, 0, c.send(reqHeaders("GET", "/v1/models", tokMain)), answer{status: 503, code: "rate_limiter_unavailable", headers: denied()})
		c.end()
	})

	t.Run("budget: a reservation beyond it is refused, and audited", func(t *testing.T) {
		h := newHarness(t, withPrincipal("llmp_poor", authz.Principal{TokenID: "tok_poor", MonthlyBudgetMicroUSD: ptr(int64(1000))}))
		c := h.open()
		c.send(reqHeaders("POST", "/v1/chat/completions", "llmp_poor"))
		checkAnswer(t, 1, c.send(reqBody(chatBody)), answer{status: 429, code: "insufficient_quota", headers: denied("x-should-retry", "false"),
			body: text(`{"error":{"message":"This project has used its monthly budget.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`)})
		c.end()
		if evs := h.audit.events(); len(evs) != 1 || evs[0].Action != store.AuditAuthQuotaExhausted || evs[0].TargetID != "tok_poor" {
			t.Errorf("audited %+v", evs)
		}
	})

	t.Run("a request larger than the whole token limit", func(t *testing.T) {
		h := newHarness(t, withPrincipal("llmp_small", authz.Principal{TokenID: "tok_small", TokenLimits: store.Limits{TokensPerMinute: ptr(int64(100))}}))
		c := h.open()
		c.send(reqHeaders("POST", "/v1/chat/completions", "llmp_small"))
		checkAnswer(t, 1, c.send(reqBody(chatBody)), answer{status: 429, code: "rate_limit_exceeded", headers: denied("x-should-retry", "false"),
			body: text(`{"error":{"message":"Request too large for this proxy token's tokens per minute (TPM): limit 100.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`)})
		c.end()
		if evs := h.audit.events(); len(evs) != 0 {
			t.Errorf("a rate limit audited: %+v", evs)
		}
	})

	t.Run("lifetime cap of a project's token", func(t *testing.T) {
		h := newHarness(t, withPrincipal("llmp_once", authz.Principal{TokenID: "tok_once", MaxRequests: ptr(int64(1)),
			ProjectLimits: store.Limits{RequestsPerMinute: ptr(int64(5))}}))
		h.do(exchange{reqHeaders("GET", "/v1/models", "llmp_once"), answer{headers: swapped, mode: modeHeadersOnly}})
		c := h.open()
		checkAnswer(t, 0, c.send(reqHeaders("GET", "/v1/models", "llmp_once")), answer{status: 429, code: "insufficient_quota", headers: denied("x-should-retry", "false"),
			body: text(`{"error":{"message":"This proxy token has used all of its allowed requests.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`)})
		c.end()
	})

	t.Run("project requests per minute", func(t *testing.T) {
		h := newHarness(t, withPrincipal("llmp_slow", authz.Principal{TokenID: "tok_slow", ProjectLimits: store.Limits{RequestsPerMinute: ptr(int64(1))}}))
		h.do(exchange{reqHeaders("GET", "/v1/models", "llmp_slow"), answer{headers: swapped, mode: modeHeadersOnly}})
		c := h.open()
		checkAnswer(t, 0, c.send(reqHeaders("GET", "/v1/models", "llmp_slow")), answer{status: 429, code: "rate_limit_exceeded",
			headers: denied("retry-after", "60", "retry-after-ms", "60000"),
			body:    text(`{"error":{"message":"Rate limit reached for this project on requests per minute (RPM): limit 1. Please try again in 1m0s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)})
		c.end()
	})
}

// Embeddings produce no output tokens: their reservation is the prompt
// alone, not the default completion size.
func TestEmbeddingsReserveNoOutput(t *testing.T) {
	h := newHarness(t, withoutEvents, withoutCache)
	c := h.open()
	c.send(reqHeaders("POST", "/v1/embeddings", tokMain))
	body := `{"model":"text-embedding-3-small","input":"four words of input"}`
	c.send(reqBody(body))
	c.end()
	tok := usage.NewTokenizer()
	prompt := tok.CountPrompt("text-embedding-3-small", []byte(body))
	calls := h.limiter.calls()
	if len(calls) != 1 || calls[0].tokens != prompt || calls[0].cost != usage.DefaultPrices().Estimate("text-embedding-3-small", prompt, 0) {
		t.Fatalf("reserved %+v, want the prompt's %d tokens and no output", calls, prompt)
	}
}
