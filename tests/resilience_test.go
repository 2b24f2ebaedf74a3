package tests

import (
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Envoy's resilience towards OpenAI (envoy.yaml's openai cluster and /v1/
// routes): OpenAI's own 429 and 5xx reach the client once, headers and all;
// a connection that cannot be made is retried, so the request reaches
// OpenAI exactly once; five 5xx in a row eject the (single) host, which
// keeps serving through Envoy's panic threshold and returns once the
// ejection ends.
func TestUpstreamResilience(t *testing.T) {
	var front *flakyFront
	s := startStack(t, stackOptions{upstreamVia: func(t testing.TB, addr string) string {
		front = startFlakyFront(t, addr)
		return front.addr()
	}})
	p := s.createProject("resilience", "sk-resilience-0123456789")
	tk := s.createToken(map[string]any{"project_id": p.ID})

	type answer struct {
		status int
		header http.Header
		body   string
	}
	// chat POSTs a chat completion whose x-fake-fail is fail ("" for none).
	chat := func(fail string) answer {
		t.Helper()
		req, err := http.NewRequest("POST", s.envoyURL+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tk.Token)
		req.Header.Set("Content-Type", "application/json")
		if fail != "" {
			req.Header.Set("X-Fake-Fail", fail)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return answer{resp.StatusCode, resp.Header, string(b)}
	}
	// upstreamSaw counts the requests OpenAI received carrying fail.
	upstreamSaw := func(fail string) int {
		n := 0
		for _, r := range s.upstream.Requests() {
			if r.Header.Get("X-Fake-Fail") == fail {
				n++
			}
		}
		return n
	}
	stats := func() map[string]int64 { return envoyStats(t, s, `^cluster\.openai\.`) }

	t.Run("OpenAI's 429 and 5xx reach the client once, with their headers", func(t *testing.T) {
		for _, status := range []int{500, 502, 503, 504, 429} {
			fail := "once-" + strconv.Itoa(status) + ":" + strconv.Itoa(status) + ":1"
			a := chat(fail)
			wantBody := `"message":"fakeopenai: injected ` + strconv.Itoa(status) + " " + http.StatusText(status) + `"`
			if a.status != status || !strings.Contains(a.body, wantBody) || a.header.Get("Content-Type") != "application/json" {
				t.Errorf("%d: client got %d %q (content-type %q), want OpenAI's answer unchanged",
					status, a.status, a.body, a.header.Get("Content-Type"))
			}
			if status == 429 && (a.header.Get("Retry-After") != "1" || a.header.Get("Retry-After-Ms") != "1000") {
				t.Errorf("429: retry-after %q, retry-after-ms %q, want OpenAI's 1 and 1000",
					a.header.Get("Retry-After"), a.header.Get("Retry-After-Ms"))
			}
			if n := upstreamSaw(fail); n != 1 {
				t.Errorf("%d: OpenAI received the POST %d times, want exactly 1", status, n)
			}
			// The client's own retry is answered (and resets the outlier
			// detector's count of consecutive errors).
			if a := chat(fail); a.status != 200 {
				t.Errorf("%d: the client's retry got %d %q", status, a.status, a.body)
			}
			if n := upstreamSaw(fail); n != 2 {
				t.Errorf("%d: after the client's retry OpenAI received the POST %d times, want 2", status, n)
			}
		}
	})

	t.Run("a connection that cannot be made is retried; OpenAI gets the POST once", func(t *testing.T) {
		before := stats()
		// Envoy must open a new connection, and the front closes it before
		// the TLS handshake: a connect failure.
		front.refuseNext(1)
		front.dropAll()
		waitFor(t, "Envoy's pooled upstream connections closed", func() bool {
			return stats()["cluster.openai.upstream_cx_active"] == 0
		})
		const fail = "connect-retry:500:0" // never fails; marks the request
		if a := chat(fail); a.status != 200 {
			t.Fatalf("got %d %q, want 200 after one retry", a.status, a.body)
		}
		after := stats()
		if got := front.refused.Load(); got != 1 {
			t.Errorf("the front refused %d connections, want 1", got)
		}
		if n := upstreamSaw(fail); n != 1 {
			t.Errorf("OpenAI received the POST %d times, want exactly 1", n)
		}
		if d := after["cluster.openai.upstream_rq_retry"] - before["cluster.openai.upstream_rq_retry"]; d != 1 {
			t.Errorf("upstream_rq_retry grew by %d, want 1", d)
		}
		if d := after["cluster.openai.upstream_cx_connect_fail"] - before["cluster.openai.upstream_cx_connect_fail"]; d != 1 {
			t.Errorf("upstream_cx_connect_fail grew by %d, want 1", d)
		}
	})

	t.Run("five 5xx eject the host, which keeps serving and comes back", func(t *testing.T) {
		before := stats()
		const fail = "eject:500:5"
		for i := range 5 {
			if a := chat(fail); a.status != 500 {
				t.Fatalf("request %d: got %d %q, want OpenAI's 500", i+1, a.status, a.body)
			}
		}
		waitFor(t, "the openai host ejected", func() bool {
			return stats()["cluster.openai.outlier_detection.ejections_active"] == 1
		})
		if flags := openAIHealthFlags(t, s); flags != "/failed_outlier_check" {
			t.Errorf("openai host health flags %q while ejected, want /failed_outlier_check", flags)
		}
		// Ejected, yet served: with no healthy host left, Envoy balances
		// over all of them (panic), and the only one is OpenAI.
		if a := chat(fail); a.status != 200 {
			t.Errorf("while ejected: got %d %q, want 200", a.status, a.body)
		}
		after := stats()
		if d := after["cluster.openai.outlier_detection.ejections_enforced_consecutive_5xx"] -
			before["cluster.openai.outlier_detection.ejections_enforced_consecutive_5xx"]; d != 1 {
			t.Errorf("ejections_enforced_consecutive_5xx grew by %d, want 1", d)
		}
		if after["cluster.openai.lb_healthy_panic"] <= before["cluster.openai.lb_healthy_panic"] {
			t.Error("lb_healthy_panic did not grow: the request while ejected was not balanced in panic")
		}
		if n := upstreamSaw(fail); n != 6 {
			t.Errorf("OpenAI received %d requests, want 6 (5 failed, 1 served)", n)
		}
		// base_ejection_time 15s, checked every 5s.
		deadline := time.Now().Add(60 * time.Second)
		for stats()["cluster.openai.outlier_detection.ejections_active"] != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the openai host still ejected after 60s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if flags := openAIHealthFlags(t, s); flags != "healthy" {
			t.Errorf("openai host health flags %q after the ejection, want healthy", flags)
		}
	})
}

var statLine = regexp.MustCompile(`^(\S+): (\d+)$`)

// envoyStats reads Envoy's counters and gauges whose names match filter.
func envoyStats(t *testing.T, s *stack, filter string) map[string]int64 {
	t.Helper()
	out, err := s.envoy.Admin("/stats?filter=" + filter)
	if err != nil {
		t.Fatalf("admin /stats: %v", err)
	}
	m := make(map[string]int64)
	for _, l := range strings.Split(out, "\n") {
		if g := statLine.FindStringSubmatch(l); g != nil {
			n, _ := strconv.ParseInt(g[2], 10, 64)
			m[g[1]] = n
		}
	}
	return m
}

// openAIHealthFlags is the openai host's health_flags in Envoy's /clusters.
func openAIHealthFlags(t *testing.T, s *stack) string {
	t.Helper()
	flags, err := s.envoy.HealthFlags("openai")
	if err != nil {
		t.Fatal(err)
	}
	return flags
}

// flakyFront forwards TCP connections to a target (the fake upstream),
// except the ones it is told to refuse: those it closes at once, before a
// byte is read, as a host that cannot be reached would look to Envoy (the
// TLS handshake fails: a connect failure).
type flakyFront struct {
	ln      net.Listener
	target  string
	refuse  atomic.Int64 // connections still to refuse
	refused atomic.Int64 // connections refused so far

	mu    sync.Mutex
	conns map[net.Conn]struct{} // forwarded connections, both ends
	wg    sync.WaitGroup        // the accept loop and every forwarding goroutine
}

func startFlakyFront(t testing.TB, target string) *flakyFront {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyFront{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(func() {
		ln.Close()
		f.dropAll()
		f.wg.Wait()
	})
	return f
}

func (f *flakyFront) addr() string { return f.ln.Addr().String() }

// refuseNext makes the next n connections fail.
func (f *flakyFront) refuseNext(n int64) { f.refuse.Store(n) }

// takeRefusal reports whether the connection just accepted is to be
// refused, counting it off.
func (f *flakyFront) takeRefusal() bool {
	for {
		n := f.refuse.Load()
		if n <= 0 {
			return false
		}
		if f.refuse.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// dropAll closes every forwarded connection (Envoy's pooled ones too).
func (f *flakyFront) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

func (f *flakyFront) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // the listener closed at cleanup
		}
		if f.takeRefusal() {
			f.refused.Add(1)
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns[c], f.conns[up] = struct{}{}, struct{}{}
		f.mu.Unlock()
		f.wg.Add(2)
		go f.pipe(c, up)
		go f.pipe(up, c)
	}
}

// pipe copies src to dst until either ends, then closes both.
func (f *flakyFront) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	f.mu.Lock()
	delete(f.conns, dst)
	delete(f.conns, src)
	f.mu.Unlock()
}
