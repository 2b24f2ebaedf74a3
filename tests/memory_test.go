package tests

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// Many large prompts waiting at once on a slow upstream hold no more than
// the buffer budget in the sidecar: a large body is let go after its phase
// (only its prompt count is kept), and beyond the budget a request is refused
// with a retryable 503 in the OpenAI shape — never an out-of-memory, never
// one of Envoy's timeouts.
func TestLargePromptsStayWithinBufferBudget(t *testing.T) {
	const budget = 6 << 20 // one 4 MiB prompt and a half
	s := startStack(t, stackOptions{env: map[string]string{"LLM_PROXY_MAX_BUFFERED_BYTES": strconv.Itoa(budget)}})
	s.upstream.SetRecording(false) // the fake itself must not keep the prompts
	p := s.createProject("big-prompts", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	// One 4 MiB prompt, shared by every client.
	words := strings.Repeat("lorem ipsum dolor sit amet ", (4<<20)/27)
	body := `{"model":"gpt-4.1-mini","max_tokens":5,"messages":[{"role":"user","content":"` + words + `"}]}`
	clients := 40
	if raceEnabled {
		clients = 8
	}
	var wg sync.WaitGroup
	statuses := make(chan reply, clients)
	for range clients {
		wg.Go(func() {
			statuses <- call(t, s, "POST", "/v1/chat/completions", tok.Token, body, map[string]string{fakeopenai.HeaderDelay: "1s"})
		})
	}
	wg.Wait()
	close(statuses)
	ok, refused := 0, 0
	for r := range statuses {
		switch {
		case r.status == 200:
			ok++
		case r.status == 503 && strings.Contains(string(r.body), `"code":"proxy_overloaded"`) && r.header.Get("Retry-After") == "1":
			refused++
		default:
			t.Errorf("status %d %s: want 200, or 503 proxy_overloaded", r.status, truncateForLog(r.body))
		}
	}
	t.Logf("%d answered, %d refused for the buffer budget", ok, refused)
	if ok == 0 {
		t.Error("no request got through")
	}
	peak, now := s.metric(t, "llm_proxy_buffered_bytes_peak"), s.metric(t, "llm_proxy_buffered_bytes")
	t.Logf("buffered bytes: peak %d of a %d budget, %d left held", peak, budget, now)
	if peak > budget || peak < 4<<20 {
		t.Errorf("peak buffered bytes %d, want at least one 4 MiB prompt and at most the %d budget", peak, budget)
	}
	if now != 0 {
		t.Errorf("%d bytes still held after every request ended", now)
	}
}

// metric reads one unlabelled series from llm-proxy's /metrics.
func (s *stack) metric(t *testing.T, name string) int64 {
	t.Helper()
	resp, err := http.Get(s.manageURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
