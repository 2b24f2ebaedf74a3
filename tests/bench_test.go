package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/tests/envoytest"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// benchBody is a small, realistic chat request.
const benchBody = `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"Say hello to the benchmark."}]}`

// BenchmarkGateway measures, in one run on the same fake upstream, Envoy
// alone (the ext_proc filter disabled) against Envoy + llm-proxy (token
// validation, key swap, request body buffered to the sidecar) for a
// non-streaming POST /v1/chat/completions:
//
//   - at saturation (closed loop, benchWorkers concurrent clients): req/s;
//   - at moderate load (open loop, benchRate req/s): p50 and p99 latency.
//
// A third row runs with every limit on, kept in Redis; a fourth sends usage
// events to a Redis Stream instead of the default JSONL file. It reports all
// rows and their ratios. It is a measurement, not a test: it
// asserts nothing about time. Load goes to 127.0.0.1 only and is bounded by
// benchDuration per phase.
func BenchmarkGateway(b *testing.B) {
	const (
		benchDuration = 5 * time.Second
		benchWorkers  = 16
		benchRate     = 200
	)
	s := startStack(b, stackOptions{env: map[string]string{"LLM_PROXY_LOG_LEVEL": "warn"}})
	s.upstream.SetRecording(false)
	p := s.createProject("bench", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	// Envoy alone: the very same rendered configuration without the ext_proc
	// filter, in front of the same upstream. (Marking the filter disabled is
	// not enough: the /v1/ route's per-route override enables it again.)
	cfg := string(s.envoyConfig)
	from := strings.Index(cfg, "- name: envoy.filters.http.ext_proc\n")
	to := strings.Index(cfg, "- name: envoy.filters.http.router\n")
	if from < 0 || to < from {
		b.Fatal("could not find the ext_proc filter in the rendered config")
	}
	bare := cfg[:from] + cfg[to:]
	bareListener := envoytest.FreePort(b)
	bare = strings.Replace(bare, fmt.Sprintf("port_value: %d }", s.listenerPort), fmt.Sprintf("port_value: %d }", bareListener), 1)
	bare = strings.Replace(bare, fmt.Sprintf("port_value: %d }", s.adminPort), fmt.Sprintf("port_value: %d }", envoytest.FreePort(b)), 1)
	envoytest.Start(b, []byte(bare))
	bareURL := fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", bareListener)
	proxyURL := s.envoyURL + "/v1/chat/completions"

	// Limits on, in Redis: a second deployment on the same upstream whose
	// project and token have every rate limit (set high enough never to
	// refuse), so each request is admitted, reserved and settled in Redis.
	lim := startStack(b, stackOptions{env: map[string]string{
		"LLM_PROXY_LOG_LEVEL": "warn", "LLM_PROXY_REDIS_URL": testenv.Redis(b), "LLM_PROXY_REDIS_PREFIX": "bench:",
	}})
	lim.upstream.SetRecording(false)
	high := map[string]any{"requests_per_minute": 10_000_000, "tokens_per_minute": 1_000_000_000, "max_concurrent": 10_000}
	var lp project
	lim.mustManage("POST", "/manage/projects", map[string]any{"name": "bench", "openai_api_key": realKey, "limits": high, "monthly_budget_usd": 1_000_000}, 201, &lp)
	limTok := lim.createToken(map[string]any{"project_id": lp.ID, "limits": high})

	// Usage events into a Redis Stream (for `llm-proxy dispatch`) instead of
	// the default JSONL file; no limits.
	evs := startStack(b, stackOptions{env: map[string]string{
		"LLM_PROXY_LOG_LEVEL": "warn", "LLM_PROXY_REDIS_URL": testenv.Redis(b), "LLM_PROXY_REDIS_PREFIX": "bench-ev:",
		"LLM_PROXY_EVENTS_SINKS": "redis", "LLM_PROXY_EVENTS_STREAM": "bench:events",
	}})
	evs.upstream.SetRecording(false)
	evTok := evs.createToken(map[string]any{"project_id": evs.createProject("bench", realKey).ID})

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchWorkers * 2}}
	send := func(url, auth, cacheControl string) error {
		req, _ := http.NewRequest("POST", url, strings.NewReader(benchBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		if cacheControl != "" {
			req.Header.Set("Cache-Control", cacheControl)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	targets := []struct{ name, url, auth, cacheControl string }{
		// Envoy alone never checks the token; the upstream is sent the proxy
		// token, which is fine for a fake.
		{"envoy", bareURL, "Bearer " + tok.Token, ""},
		{"envoy+llm-proxy", proxyURL, "Bearer " + tok.Token, ""},
		{"+redis limits", lim.envoyURL + "/v1/chat/completions", "Bearer " + limTok.Token, ""},
		{"+redis events", evs.envoyURL + "/v1/chat/completions", "Bearer " + evTok.Token, ""},
		// The same request, opted in to the cache: after the warm-up every
		// request is a hit answered by the sidecar through Envoy.
		{"cache hit", proxyURL, "Bearer " + tok.Token, "public, max-age=3600"},
	}
	// Prove the baseline really bypasses the sidecar: it forwards a token
	// llm-proxy would refuse.
	if err := send(bareURL, "Bearer llmp_refused-by-llm-proxy", ""); err != nil {
		b.Fatalf("baseline Envoy still runs ext_proc: %v", err)
	}
	for _, tg := range targets {
		if err := send(tg.url, tg.auth, tg.cacheControl); err != nil {
			b.Fatalf("%s: warm-up request: %v", tg.name, err)
		}
	}

	b.ResetTimer()
	type summary struct {
		rps      float64
		p50, p99 time.Duration
	}
	results := map[string]summary{}
	for _, tg := range targets {
		r := closedLoop(benchWorkers, benchDuration, func() error { return send(tg.url, tg.auth, tg.cacheControl) })
		o := openLoop(benchRate, benchDuration, func() error { return send(tg.url, tg.auth, tg.cacheControl) })
		if r.errors+o.errors > 0 {
			b.Fatalf("%s: %d errors (first: %v)", tg.name, r.errors+o.errors, firstErr(r, o))
		}
		results[tg.name] = summary{rps: r.rps, p50: o.p50, p99: o.p99}
		b.Logf("%-16s saturation: %7.0f req/s (p99 %v)   at %d req/s: p50 %v  p99 %v",
			tg.name, r.rps, r.p99, benchRate, o.p50, o.p99)
	}
	b.StopTimer()
	base, with := results["envoy"], results["envoy+llm-proxy"]
	b.ReportMetric(base.rps, "envoy-req/s")
	b.ReportMetric(with.rps, "proxy-req/s")
	b.ReportMetric(with.rps/base.rps, "throughput-ratio")
	b.ReportMetric(float64((with.p50 - base.p50).Microseconds()), "added-p50-µs")
	b.ReportMetric(float64((with.p99 - base.p99).Microseconds()), "added-p99-µs")
	b.Logf("throughput ratio (with/without llm-proxy) %.2f; added latency at %d req/s: p50 %v, p99 %v",
		with.rps/base.rps, benchRate, with.p50-base.p50, with.p99-base.p99)
	limited := results["+redis limits"]
	b.ReportMetric(limited.rps/with.rps, "limits-throughput-ratio")
	b.ReportMetric(float64((limited.p50 - with.p50).Microseconds()), "limits-added-p50-µs")
	b.Logf("Redis limits vs the plain sidecar: throughput ratio %.2f; added latency at %d req/s: p50 %v, p99 %v",
		limited.rps/with.rps, benchRate, limited.p50-with.p50, limited.p99-with.p99)
	hit := results["cache hit"]
	b.ReportMetric(hit.rps/base.rps, "cache-hit-vs-envoy-throughput-ratio")
	b.Logf("cache hits through Envoy vs Envoy forwarding to the upstream: throughput ratio %.2f; latency at %d req/s: p50 %v vs %v, p99 %v vs %v",
		hit.rps/base.rps, benchRate, hit.p50, base.p50, hit.p99, base.p99)
	streamed := results["+redis events"]
	b.ReportMetric(streamed.rps/with.rps, "redis-events-throughput-ratio")
	b.Logf("Redis Stream events vs file events: throughput ratio %.2f; added latency at %d req/s: p50 %v, p99 %v",
		streamed.rps/with.rps, benchRate, streamed.p50-with.p50, streamed.p99-with.p99)
}

// loadResult collects one load phase's latencies.
type loadResult struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    int
	firstErr  error
	elapsed   time.Duration
	rps       float64
	p50, p99  time.Duration
}

func (r *loadResult) record(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	r.latencies = append(r.latencies, d)
}

func (r *loadResult) finish() *loadResult {
	slices.Sort(r.latencies)
	if n := len(r.latencies); n > 0 {
		r.p50 = r.latencies[n*50/100]
		r.p99 = r.latencies[min(n-1, n*99/100)]
	}
	r.rps = float64(len(r.latencies)) / r.elapsed.Seconds()
	return r
}

func firstErr(rs ...*loadResult) error {
	for _, r := range rs {
		if r.firstErr != nil {
			return r.firstErr
		}
	}
	return nil
}

// closedLoop runs workers clients back to back for d.
func closedLoop(workers int, d time.Duration, send func() error) *loadResult {
	r := &loadResult{}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				err := send()
				r.record(time.Since(t0), err)
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r.finish()
}

// openLoop sends rate requests per second for d, each on its own goroutine,
// so a slow answer does not delay the next request (no coordinated omission).
func openLoop(rate int, d time.Duration, send func() error) *loadResult {
	r := &loadResult{}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	var wg sync.WaitGroup
	for n := rate * int(d/time.Second); n > 0; n-- {
		<-tick.C
		wg.Go(func() {
			t0 := time.Now()
			err := send()
			r.record(time.Since(t0), err)
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	return r.finish()
}
