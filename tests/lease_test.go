package tests

import (
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// A stream that lasts longer than the concurrency lease keeps its slot: the
// sidecar renews the lease while chunks flow, so max_concurrent still holds
// after the lease (shortened to 2s here) has run out several times.
func TestLongStreamKeepsConcurrencySlot(t *testing.T) {
	s := startStack(t, stackOptions{env: map[string]string{"LLM_PROXY_CONCURRENCY_LEASE": "2s"}})
	p := s.createProject("lease", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"max_concurrent": 1}})
	// 60 words, one every 100ms: a 6s stream.
	st := s.client(tok.Token).Chat.Completions.NewStreaming(t.Context(), chatParams("a long answer"),
		option.WithHeader(fakeopenai.HeaderWords, "60"), option.WithHeader(fakeopenai.HeaderChunkDelay, "100ms"))
	defer st.Close()
	chunks := 0
	for chunks < 45 && st.Next() { // 4.5s in: the lease ended twice over
		chunks++
	}
	if chunks < 45 {
		t.Fatalf("stream ended after %d chunks: %v", chunks, st.Err())
	}
	r := call(t, s, "POST", "/v1/chat/completions", tok.Token, `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"me too"}]}`, nil)
	if r.status != 429 || !strings.Contains(string(r.body), "concurrent requests") {
		t.Fatalf("a second request while the first streams: %d %s, want 429 for concurrency", r.status, r.body)
	}
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if r := call(t, s, "POST", "/v1/chat/completions", tok.Token, `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"now me"}]}`, nil); r.status != 200 {
		t.Fatalf("after the stream: %d %s", r.status, r.body)
	}
}
