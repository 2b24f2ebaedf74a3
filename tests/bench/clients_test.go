package bench

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

func newRequest(ctx context.Context, base string, l load) *http.Request {
	var body io.Reader
	if l.body != "" {
		body = strings.NewReader(l.body)
	}
	req, _ := http.NewRequestWithContext(ctx, l.method, base+l.path, body)
	for k, v := range l.headers {
		req.Header.Set(k, v)
	}
	return req
}

// countEvents sends l once and counts the SSE events of the answer: the
// chunks a stream of it carries.
func countEvents(b *testing.B, base string, l load) int {
	b.Helper()
	resp, err := http.DefaultClient.Do(newRequest(context.Background(), base, l))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("stream: status %d", resp.StatusCode)
	}
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return n
}

// latency is one open-loop run's percentiles, in µs.
type latency struct{ p50, p99 float64 }

// openLoop sends rate requests per second for d, each on its own goroutine,
// so a slow answer does not delay the next one (no coordinated omission).
// wrk cannot hold a fixed rate; this generator need not be fast, only on time.
func openLoop(b *testing.B, base string, l load, rate int, d time.Duration) latency {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		lats []time.Duration
		fail error
		wg   sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for n := int(float64(rate) * d.Seconds()); n > 0; n-- {
		<-tick.C
		wg.Go(func() {
			t0 := time.Now()
			resp, err := client.Do(newRequest(context.Background(), base, l))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = &statusError{resp.StatusCode}
				}
			}
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && fail == nil {
				fail = err
			}
			lats = append(lats, took)
		})
	}
	wg.Wait()
	if fail != nil {
		b.Fatalf("open loop at %d req/s: %v", rate, fail)
	}
	slices.Sort(lats)
	at := func(p int) float64 { return float64(lats[min(len(lats)-1, len(lats)*p/100)].Microseconds()) }
	return latency{p50: at(50), p99: at(99)}
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.status) }

// slowStreamsRSS opens n streams at once through llm-proxy, each answered
// slowly by the upstream, and reads the sidecar's RSS once every one of them
// has received its first event.
func slowStreamsRSS(b *testing.B, s *sidecar, tok string, n int) (rss, anon float64) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	l := load{method: "POST", path: "/v1/chat/completions", body: streamBody, headers: map[string]string{
		"Content-Type": "application/json", "Authorization": "Bearer " + tok,
		// 20 words, one every 250 ms: each stream stays open ~5 s.
		"X-Fake-Words": "20", "X-Fake-Chunk-Delay": "250ms",
	}}
	var first, done sync.WaitGroup
	first.Add(n)
	errs := make(chan error, n)
	for range n {
		done.Go(func() {
			once := sync.OnceFunc(first.Done)
			defer once()
			resp, err := client.Do(newRequest(ctx, s.url, l))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- &statusError{resp.StatusCode}
				return
			}
			r := bufio.NewReader(resp.Body)
			if _, err := r.ReadString('\n'); err != nil {
				errs <- err
				return
			}
			once()
			_, _ = io.Copy(io.Discard, r)
		})
	}
	first.Wait()
	rss, anon, err := rssMiB(s.pid())
	cancel()
	done.Wait()
	close(errs)
	if err != nil {
		b.Fatal(err)
	}
	for e := range errs {
		b.Fatalf("slow streams: %v", e)
	}
	return rss, anon
}
