package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// A Redis that answers late leaks no charge: a limiter call that timed out
// fell back to the local limiter, but Redis ran its script anyway; once
// Redis answers again the sidecar undoes that charge, so the project's one
// concurrency slot is free and its budget charged once.
func TestSlowRedisLeaksNoCharge(t *testing.T) {
	px := testenv.NewLatencyProxy(t, testenv.RedisServer(t))
	s := startStack(t, stackOptions{env: map[string]string{
		"LLM_PROXY_REDIS_URL":     px.URL(),
		"LLM_PROXY_REDIS_PREFIX":  "t:" + t.Name() + ":",
		"LLM_PROXY_REDIS_TIMEOUT": "100ms",
		"LLM_PROXY_CACHE":         "off",
	}})
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "slow-redis", "openai_api_key": realKey,
		"limits": map[string]any{"max_concurrent": 1}}, 201, &p)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	const body = `{"model":"gpt-4.1-mini","max_tokens":5,"messages":[{"role":"user","content":"slow redis"}]}`
	// Redis's replies arrive a second late: the admission times out, falls
	// back to the local limiter (the default for concurrency), the request
	// is served — and Redis takes the slot when the script runs.
	px.SetDelay(testenv.ToClient, time.Second)
	if r := call(t, s, "POST", "/v1/chat/completions", tok.Token, body, nil); r.status != 200 {
		t.Fatalf("with Redis slow: %d %s", r.status, r.body)
	}
	px.SetDelay(testenv.ToClient, 0)
	// Once the limiter is back on Redis, the slot the late script took must
	// have been given back: a leaked one would refuse this for its lease.
	deadline := time.Now().Add(20 * time.Second)
	for s.metric(t, "llm_proxy_ratelimit_degraded") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the limiter did not recover")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 3 {
		r := call(t, s, "POST", "/v1/chat/completions", tok.Token, body, nil)
		if r.status != 200 {
			if strings.Contains(string(r.body), "concurrent") {
				t.Fatalf("request %d after Redis recovered: the timed-out call's slot leaked: %d %s", i, r.status, r.body)
			}
			t.Fatalf("request %d after Redis recovered: %d %s", i, r.status, r.body)
		}
	}
}
