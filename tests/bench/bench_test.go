// Package bench is `make bench`: Envoy alone against Envoy + llm-proxy, on
// the same fake upstream, in one run, as ratios.
//
// Every component is a process of its own — Envoy (one per configuration),
// llm-proxy serve (one per settings row), the fake upstream, and wrk as the
// load generator — so the CPU each spends per request is read from
// /proc/<pid>/stat without the others' share. Each row is warmed up, then
// measured BENCH_ROUNDS times (rows interleaved, so drift on a shared machine
// spreads over all of them) and reported as medians. The results go to
// bin/bench.json so runs can be compared.
//
// It is a measurement, not a test: it asserts nothing about time, only that
// every answer was a success. Load goes to 127.0.0.1 only, bounded by
// BENCH_DURATION per row and round. BENCH_PPROF_ADDR (a loopback address)
// serves the plain sidecar's pprof while it runs. BENCH_AB_ENV adds rows
// for a second sidecar with other settings (A/B in one run). BENCH_ROWS (a regular
// expression) measures only the rows it matches and their baselines, to
// profile or compare one path quickly; such a partial run skips latency
// and headroom and writes bin/bench-partial.json.
package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/tests/envoytest"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

const (
	chatBody   = `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"Say hello to the benchmark."}]}`
	streamBody = `{"model":"gpt-4.1-mini","stream":true,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}`
	// streamWords makes the fake answer a stream of that many word chunks
	// (plus its role, finish, usage and [DONE] events).
	streamWords = 200
	conns       = 16
)

// target is where a row sends its load: an Envoy, and the sidecar behind it
// (nil for Envoy alone).
type target struct {
	url     string
	envoy   *envoytest.Envoy
	sidecar *sidecar
}

type row struct {
	name     string
	to       target
	load     load
	baseline string // the row of Envoy alone this one is compared with
	chunks   int    // SSE events per response, for CPU per chunk
	script   string
}

// result is one row's medians over the rounds.
type result struct {
	Name         string  `json:"name"`
	RPS          float64 `json:"req_per_s"`
	Ratio        float64 `json:"ratio_to_envoy_alone,omitempty"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	EnvoyCPUUS   float64 `json:"envoy_cpu_us_per_req"`
	SidecarCPUUS float64 `json:"sidecar_cpu_us_per_req,omitempty"`
	UpstreamCPU  float64 `json:"upstream_cpu_us_per_req"`
	SidecarChunk float64 `json:"sidecar_cpu_us_per_chunk,omitempty"`
	EnvoyChunk   float64 `json:"envoy_cpu_us_per_chunk,omitempty"`
	ExtProcMsgs  float64 `json:"ext_proc_msgs_per_req,omitempty"`
}

// round is one measurement of one row.
type round struct {
	rps, p50, p99, envoyUS, sidecarUS, upstreamUS, msgs float64
}

func BenchmarkGateway(b *testing.B) {
	requireWrk(b)
	duration := envDuration(b, "BENCH_DURATION", 8*time.Second)
	rounds := envInt(b, "BENCH_ROUNDS", 3)
	bins := build(b)
	up := startUpstream(b, bins)
	redis := testenv.Redis(b)

	bareEnvoy, bareURL := startBareEnvoy(b, up)
	bare := target{url: bareURL, envoy: bareEnvoy}

	// BENCH_PPROF_ADDR gives the sidecar of the plain rows (chat, cache hit,
	// SSE, models) a pprof endpoint, to profile it while the bench runs.
	var pprof map[string]string
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		pprof = map[string]string{"LLM_PROXY_PPROF_ADDR": addr}
	}
	plain := startSidecar(b, bins, up, pprof)
	idleRSS, idleAnon, err := rssMiB(plain.pid())
	if err != nil {
		b.Fatal(err)
	}
	info := startSidecar(b, bins, up, map[string]string{"LLM_PROXY_LOG_LEVEL": "info"})
	sockDir, err := os.MkdirTemp("", "llmp") // short: socket paths are limited to 107 bytes
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sockDir) })
	unix := startSidecar(b, bins, up, map[string]string{"LLM_PROXY_GRPC_ADDR": "unix:" + filepath.Join(sockDir, "extproc.sock")})
	limited := startSidecar(b, bins, up, map[string]string{"LLM_PROXY_REDIS_URL": redis, "LLM_PROXY_REDIS_PREFIX": "bench-limits:"})
	events := startSidecar(b, bins, up, map[string]string{
		"LLM_PROXY_REDIS_URL": redis, "LLM_PROXY_REDIS_PREFIX": "bench-events:",
		"LLM_PROXY_EVENTS_SINKS": "redis", "LLM_PROXY_EVENTS_STREAM": "bench:events",
	})

	// Limits set high enough never to refuse, so each request is admitted,
	// reserved and settled in Redis.
	high := map[string]any{"requests_per_minute": 10_000_000, "tokens_per_minute": 1_000_000_000, "max_concurrent": 10_000}
	plainTok := plain.token(b, map[string]any{}, map[string]any{})
	infoTok := info.token(b, map[string]any{}, map[string]any{})
	unixTok := unix.token(b, map[string]any{}, map[string]any{})
	limitTok := limited.token(b, map[string]any{"limits": high, "monthly_budget_usd": 1_000_000}, map[string]any{"limits": high})
	eventTok := events.token(b, map[string]any{}, map[string]any{})

	// headers are a request's: the token, then name/value pairs.
	headers := func(tok string, extra ...string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + tok}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	chat := func(tok string, extra ...string) load {
		return load{method: "POST", path: "/v1/chat/completions", body: chatBody, headers: headers(tok, append([]string{"Content-Type", "application/json"}, extra...)...)}
	}
	sse := func(tok string) load {
		l := chat(tok, "X-Fake-Words", strconv.Itoa(streamWords))
		l.body = streamBody
		return l
	}
	models := func(tok string, extra ...string) load {
		return load{method: "GET", path: "/v1/models", headers: headers(tok, extra...)}
	}
	via := func(s *sidecar) target { return target{url: s.url, envoy: s.envoy, sidecar: s} }
	// BENCH_AB_ENV (NAME=value pairs, space-separated) adds rows for a
	// sidecar started with those settings, to compare them with the plain
	// sidecar in one run: same machine, same moment.
	var ab []row
	if spec := os.Getenv("BENCH_AB_ENV"); spec != "" {
		settings := map[string]string{}
		for _, kv := range strings.Fields(spec) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				b.Fatalf("BENCH_AB_ENV: %q is not NAME=value", kv)
			}
			settings[k] = v
		}
		s := startSidecar(b, bins, up, settings)
		tok := s.token(b, map[string]any{}, map[string]any{})
		ab = []row{
			{name: "B: llm-proxy, chat", to: via(s), load: chat(tok), baseline: "Envoy alone, chat"},
			{name: "B: llm-proxy, cache hit", to: via(s), load: chat(tok, "Cache-Control", "public, max-age=3600"), baseline: "Envoy alone, chat"},
			{name: "B: llm-proxy, SSE 200 chunks", to: via(s), load: sse(tok), baseline: "Envoy alone, SSE 200 chunks"},
			{name: "B: llm-proxy, GET /v1/models, cache hit", to: via(s), load: models(tok), baseline: "Envoy alone, GET /v1/models"},
		}
	}
	direct := target{url: "https://" + up.addr}

	rows := []row{
		// Not a gateway row: proves wrk is not the bottleneck (it must reach
		// well beyond Envoy alone when it drives the upstream by itself).
		{name: "wrk → upstream directly", to: direct, load: chat(plainTok)},
		{name: "Envoy alone, chat", to: bare, load: chat(plainTok)},
		{name: "llm-proxy, chat", to: via(plain), load: chat(plainTok), baseline: "Envoy alone, chat"},
		{name: "llm-proxy, chat, Unix socket", to: via(unix), load: chat(unixTok), baseline: "Envoy alone, chat"},
		{name: "llm-proxy, chat, info log", to: via(info), load: chat(infoTok), baseline: "Envoy alone, chat"},
		{name: "llm-proxy, chat, Redis limits", to: via(limited), load: chat(limitTok), baseline: "Envoy alone, chat"},
		{name: "llm-proxy, chat, Redis events", to: via(events), load: chat(eventTok), baseline: "Envoy alone, chat"},
		{name: "llm-proxy, cache hit", to: via(plain), load: chat(plainTok, "Cache-Control", "public, max-age=3600"), baseline: "Envoy alone, chat"},
		{name: "Envoy alone, SSE 200 chunks", to: bare, load: sse(plainTok)},
		{name: "llm-proxy, SSE 200 chunks", to: via(plain), load: sse(plainTok), baseline: "Envoy alone, SSE 200 chunks"},
		{name: "llm-proxy, SSE 200 chunks, Unix socket", to: via(unix), load: sse(unixTok), baseline: "Envoy alone, SSE 200 chunks"},
		{name: "Envoy alone, GET /v1/models", to: bare, load: models(plainTok)},
		{name: "llm-proxy, GET /v1/models", to: via(plain), load: models(plainTok, "Cache-Control", "no-cache"), baseline: "Envoy alone, GET /v1/models"},
		// A GET is cached for the default TTL unless its client says
		// no-cache: after the first, the sidecar answers it at the request
		// headers.
		{name: "llm-proxy, GET /v1/models, cache hit", to: via(plain), load: models(plainTok), baseline: "Envoy alone, GET /v1/models"},
	}
	rows = append(rows, ab...)
	rows, partial := selectRows(b, rows)
	for i := range rows {
		r := &rows[i]
		r.script = wrkScript(b, r.load)
		if strings.Contains(r.name, "SSE") { // per-chunk figures
			r.chunks = countEvents(b, r.to.url, r.load)
		}
		runWrk(b, r.script, r.to.url+r.load.path, conns, 2*time.Second) // warm-up: connections, caches, JIT of nothing
	}

	b.ResetTimer()
	measured := make(map[string][]round)
	for range rounds {
		for _, r := range rows {
			measured[r.name] = append(measured[r.name], measure(b, r, up, duration))
		}
	}
	b.StopTimer()

	results := make([]result, 0, len(rows))
	byName := map[string]*result{}
	for _, r := range rows {
		ms := measured[r.name]
		res := result{
			Name: r.name, RPS: median(ms, func(m round) float64 { return m.rps }),
			P50MS: median(ms, func(m round) float64 { return m.p50 }) / 1000, P99MS: median(ms, func(m round) float64 { return m.p99 }) / 1000,
			EnvoyCPUUS:   median(ms, func(m round) float64 { return m.envoyUS }),
			SidecarCPUUS: median(ms, func(m round) float64 { return m.sidecarUS }),
			UpstreamCPU:  median(ms, func(m round) float64 { return m.upstreamUS }),
			ExtProcMsgs:  median(ms, func(m round) float64 { return m.msgs }),
		}
		if base, ok := byName[r.baseline]; ok {
			res.Ratio = res.RPS / base.RPS
		}
		if r.chunks > 0 {
			res.SidecarChunk = res.SidecarCPUUS / float64(r.chunks)
			res.EnvoyChunk = res.EnvoyCPUUS / float64(r.chunks)
		}
		results = append(results, res)
		byName[r.name] = &results[len(results)-1]
	}

	mem := memory{IdleMiB: idleRSS, IdleAnonMiB: idleAnon, SlowStreams: 1000}
	mem.SlowStreamsMiB, mem.SlowStreamsAnonMiB = slowStreamsRSS(b, plain, plainTok, mem.SlowStreams)
	if partial {
		report(b, results, nil, mem, 0, duration, rounds)
		return
	}

	// Added latency at half of llm-proxy's saturation, open loop, Envoy
	// alone against llm-proxy at the same rate.
	rate := int(byName["llm-proxy, chat"].RPS / 2)
	var baseLat, proxyLat []latency
	for range rounds {
		baseLat = append(baseLat, openLoop(b, bare.url, chat(plainTok), rate, duration/2))
		proxyLat = append(proxyLat, openLoop(b, plain.url, chat(plainTok), rate, duration/2))
	}
	added := addedLatency{
		RatePerS: rate,
		P50MS:    (median(proxyLat, func(l latency) float64 { return l.p50 }) - median(baseLat, func(l latency) float64 { return l.p50 })) / 1000,
		P99MS:    (median(proxyLat, func(l latency) float64 { return l.p99 }) - median(baseLat, func(l latency) float64 { return l.p99 })) / 1000,
	}

	// wrk alone against the upstream must outrun Envoy alone by far, or the
	// generator, not the gateway, sets the pace.
	headroom := byName["wrk → upstream directly"].RPS / byName["Envoy alone, chat"].RPS
	report(b, results, &added, mem, headroom, duration, rounds)
	b.ReportMetric(byName["llm-proxy, chat"].Ratio, "chat-ratio")
	b.ReportMetric(byName["llm-proxy, chat"].SidecarCPUUS, "sidecar-µs/req")
	b.ReportMetric(byName["llm-proxy, SSE 200 chunks"].Ratio, "sse-ratio")
	b.ReportMetric(byName["llm-proxy, SSE 200 chunks"].SidecarChunk, "sidecar-µs/chunk")
	b.ReportMetric(byName["llm-proxy, cache hit"].Ratio, "cache-hit-ratio")
}

// selectRows keeps the rows BENCH_ROWS matches and the baselines they are
// compared with; partial says whether any row was left out.
func selectRows(b *testing.B, rows []row) (kept []row, partial bool) {
	b.Helper()
	expr := os.Getenv("BENCH_ROWS")
	if expr == "" {
		return rows, false
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		b.Fatalf("BENCH_ROWS=%q: %v", expr, err)
	}
	want := map[string]bool{}
	for _, r := range rows {
		if re.MatchString(r.name) {
			want[r.name], want[r.baseline] = true, r.baseline != ""
		}
	}
	for _, r := range rows {
		if want[r.name] {
			kept = append(kept, r)
		}
	}
	if len(kept) == 0 {
		b.Fatalf("BENCH_ROWS=%q matches no row", expr)
	}
	return kept, len(kept) < len(rows)
}

// measure runs one round of one row: wrk for d, and the CPU each process
// spent meanwhile.
func measure(b *testing.B, r row, up upstream, d time.Duration) round {
	b.Helper()
	pids := map[string]int{"upstream": up.pid()}
	if r.to.envoy != nil {
		pids["envoy"] = r.to.envoy.Pid()
	}
	if r.to.sidecar != nil {
		pids["sidecar"] = r.to.sidecar.pid()
	}
	before := ticks(b, pids)
	msgs0 := extProcMessages(b, r.to)
	w := runWrk(b, r.script, r.to.url+r.load.path, conns, d)
	after := ticks(b, pids)
	msgs1 := extProcMessages(b, r.to)
	perReq := func(proc string) float64 {
		if _, ok := pids[proc]; !ok {
			return 0
		}
		return float64(after[proc]-before[proc]) * float64(clockTick.Microseconds()) / float64(w.Requests)
	}
	return round{
		rps: w.rps(), p50: w.P50US, p99: w.P99US,
		envoyUS: perReq("envoy"), sidecarUS: perReq("sidecar"), upstreamUS: perReq("upstream"),
		msgs: float64(msgs1-msgs0) / float64(w.Requests),
	}
}

func ticks(b *testing.B, pids map[string]int) map[string]int64 {
	b.Helper()
	out := make(map[string]int64, len(pids))
	for name, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		out[name] = t
	}
	return out
}

// extProcMessages is how many messages Envoy has sent to its ext_proc server
// so far (0 without a sidecar).
func extProcMessages(b *testing.B, t target) int64 {
	b.Helper()
	if t.sidecar == nil {
		return 0
	}
	stats, err := t.envoy.Admin("/stats?filter=ext_proc%5C.stream_msgs_sent$")
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for line := range strings.Lines(stats) {
		if _, v, ok := strings.Cut(line, ": "); ok {
			c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatalf("stat line %q: %v", line, err)
			}
			n += c
		}
	}
	return n
}

func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return math.NaN()
	}
	return v[len(v)/2]
}

type addedLatency struct {
	RatePerS int     `json:"rate_per_s"`
	P50MS    float64 `json:"added_p50_ms"`
	P99MS    float64 `json:"added_p99_ms"`
}

type memory struct {
	IdleMiB            float64 `json:"sidecar_rss_idle_mib"`
	IdleAnonMiB        float64 `json:"sidecar_rss_anon_idle_mib"`
	SlowStreams        int     `json:"slow_streams"`
	SlowStreamsMiB     float64 `json:"sidecar_rss_slow_streams_mib"`
	SlowStreamsAnonMiB float64 `json:"sidecar_rss_anon_slow_streams_mib"`
}

// report prints the table and writes bin/bench.json (bin/bench-partial.json
// when BENCH_ROWS left latency and headroom unmeasured: added nil).
func report(b *testing.B, results []result, added *addedLatency, mem memory, headroom float64, d time.Duration, rounds int) {
	var s strings.Builder
	fmt.Fprintf(&s, "\nmedians of %d rounds of %s, wrk -t2 -c%d; CPU per request from /proc\n\n", rounds, d, conns)
	s.WriteString("| row | req/s | ratio | p50 ms | p99 ms | Envoy µs/req | sidecar µs/req | upstream µs/req | ext_proc msgs/req |\n")
	s.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		ratio := "—"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(&s, "| %s | %.0f | %s | %.2f | %.2f | %.0f | %.0f | %.0f | %.2f |\n",
			r.Name, r.RPS, ratio, r.P50MS, r.P99MS, r.EnvoyCPUUS, r.SidecarCPUUS, r.UpstreamCPU, r.ExtProcMsgs)
	}
	for _, r := range results {
		if r.SidecarChunk > 0 {
			fmt.Fprintf(&s, "\n%s: sidecar %.2f µs and Envoy %.2f µs of CPU per chunk", r.Name, r.SidecarChunk, r.EnvoyChunk)
		}
	}
	fmt.Fprintf(&s, "\nsidecar RSS: idle %.1f MiB (anonymous %.1f), with %d slow streams open %.1f MiB (anonymous %.1f)",
		mem.IdleMiB, mem.IdleAnonMiB, mem.SlowStreams, mem.SlowStreamsMiB, mem.SlowStreamsAnonMiB)
	if added != nil {
		fmt.Fprintf(&s, "\nadded latency at %d req/s (half of llm-proxy's saturation), open loop: p50 %+.2f ms, p99 %+.2f ms", added.RatePerS, added.P50MS, added.P99MS)
		fmt.Fprintf(&s, "\nload generator headroom: wrk alone drives the upstream at %.1fx Envoy alone's rate (want >= 2)", headroom)
	}
	s.WriteString("\n")
	// Printed, not logged: go test cuts a benchmark's log after ten lines.
	fmt.Println(s.String())

	host, _ := os.Hostname()
	out := map[string]any{
		"when": time.Now().UTC().Format(time.RFC3339), "host": host, "cpus": numCPU(), "rounds": rounds,
		"duration_s": d.Seconds(), "connections": conns, "rows": results, "latency": added, "memory": mem,
		"generator_headroom": headroom,
	}
	name := "bench.json"
	if added == nil {
		name = "bench-partial.json"
	}
	raw, _ := json.MarshalIndent(out, "", "  ")
	path := filepath.Join("..", "..", "bin", name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		b.Fatal(err)
	}
	fmt.Println("results written to bin/" + name)
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		b.Fatalf("%s=%q: want a duration of at least 1s", name, v)
	}
	return d
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
