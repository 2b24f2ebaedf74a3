package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
	"github.com/llm-proxy/llm-proxy/usage"
)

// The Python openai SDK (tests/python/client.py, run with the pinned
// version from .venv) as a second real client next to openai-go. Unlike the
// Go tests' client it keeps its defaults: Accept-Encoding "gzip, deflate",
// retries of 429 and 5xx honouring retry-after and x-should-retry.

// pySDKAcceptEncoding is what the Python SDK's HTTP client (httpx2) asks for
// by default.
const pySDKAcceptEncoding = "gzip, deflate"

// pyResult is the JSON object client.py prints; each scenario fills its part.
type pyResult struct {
	Scenario     string              `json:"scenario"`
	SDKVersion   string              `json:"sdk_version"`
	Error        *pyError            `json:"error"`
	Attempts     []pyAttempt         `json:"attempts"`
	ID           string              `json:"id"`
	Model        string              `json:"model"`
	Status       string              `json:"status"`
	Content      string              `json:"content"`
	FinishReason string              `json:"finish_reason"`
	Usage        *pyUsage            `json:"usage"`
	RequestID    string              `json:"request_id"`
	StatusCode   int                 `json:"status_code"`
	Headers      map[string]string   `json:"headers"`
	RetriesTaken int                 `json:"retries_taken"`
	Chunks       []pyChunk           `json:"chunks"`
	Cases        map[string]pyResult `json:"cases"`

	WireEmbeddingTypes []string    `json:"wire_embedding_types"`
	Embeddings         [][]float64 `json:"embeddings"`
}

// pyError is an SDK exception: its class (AuthenticationError, …) and what
// it carries.
type pyError struct {
	Class      string            `json:"class"`
	StatusCode int               `json:"status_code"`
	Code       string            `json:"code"`
	Type       string            `json:"type"`
	Message    string            `json:"message"`
	RequestID  string            `json:"request_id"`
	Headers    map[string]string `json:"headers"`
}

// pyAttempt is one HTTP request the SDK sent, seen by an httpx2 event hook.
type pyAttempt struct {
	Method          string         `json:"method"`
	Path            string         `json:"path"`
	SentAt          float64        `json:"sent_at"`     // seconds since the client started
	ReceivedAt      float64        `json:"received_at"` // response headers arrived
	AcceptEncoding  string         `json:"accept_encoding"`
	RetryCount      string         `json:"retry_count"` // x-stainless-retry-count
	RequestBody     map[string]any `json:"request_body"`
	Status          int            `json:"status"`
	ContentEncoding string         `json:"content_encoding"`
}

// pyUsage is a response's usage as the SDK parsed it (Responses API input
// and output tokens as prompt and completion).
type pyUsage struct {
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	TotalTokens      int64  `json:"total_tokens"`
	CachedTokens     *int64 `json:"cached_tokens"`
	ReasoningTokens  *int64 `json:"reasoning_tokens"`
}

func (u *pyUsage) String() string {
	if u == nil {
		return "<none>"
	}
	opt := func(p *int64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatInt(*p, 10)
	}
	return fmt.Sprintf("prompt %d completion %d total %d cached %s reasoning %s",
		u.PromptTokens, u.CompletionTokens, u.TotalTokens, opt(u.CachedTokens), opt(u.ReasoningTokens))
}

// pyChunk is the shape of one streamed chat chunk.
type pyChunk struct {
	Choices      int     `json:"choices"`
	Content      *string `json:"content"`
	FinishReason string  `json:"finish_reason"`
	HasUsage     bool    `json:"has_usage"`
}

func (c pyChunk) String() string {
	return fmt.Sprintf("choices=%d finish=%q usage=%v", c.Choices, c.FinishReason, c.HasUsage)
}

// python runs a client.py scenario against the stack's Envoy with tok as
// the SDK's API key.
func (s *stack) python(t *testing.T, scenario, tok string, args map[string]any) pyResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var r pyResult
	testenv.PythonClient(ctx, t, scenario, map[string]string{
		"OPENAI_BASE_URL": s.envoyURL + "/v1",
		"OPENAI_API_KEY":  tok,
	}, args, &r)
	return r
}

// mustSucceed fails t when the SDK call raised.
func (r pyResult) mustSucceed(t *testing.T) {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("python %s raised %s: %d %s %q (attempts %v)", r.Scenario, r.Error.Class, r.Error.StatusCode, r.Error.Code, r.Error.Message, r.wire())
	}
}

// wire summarises the attempts: method, path, status, what was asked for
// and which retry it was.
func (r pyResult) wire() []string {
	out := make([]string, 0, len(r.Attempts))
	for _, a := range r.Attempts {
		out = append(out, fmt.Sprintf("%s %s → %d (accept-encoding %q, retry %s)", a.Method, a.Path, a.Status, a.AcceptEncoding, a.RetryCount))
	}
	return out
}

func wantWire(method, path string, statuses ...int) []string {
	out := make([]string, 0, len(statuses))
	for i, st := range statuses {
		out = append(out, fmt.Sprintf("%s %s → %d (accept-encoding %q, retry %d)", method, path, st, pySDKAcceptEncoding, i))
	}
	return out
}

func checkWire(t *testing.T, r pyResult, want []string) {
	t.Helper()
	if got := r.wire(); !slices.Equal(got, want) {
		t.Fatalf("SDK attempts:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func int64p(n int64) *int64 { return &n }

// chatUsage is the usage the fake reports for a one-message chat echo.
func chatUsage(msg string) pyUsage {
	prompt := int64(fakeopenai.PromptTokens(msg))
	completion := int64(fakeopenai.CountWords(fakeopenai.EchoReply(msg)))
	return pyUsage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion,
		CachedTokens: int64p(0), ReasoningTokens: int64p(0)}
}

// usageRollup is what the usage API must show for a project: the totals and
// the one model of its rows.
type usageRollup struct {
	Model            string
	Requests         int64
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	CostMicroUSD     int64
}

// charged is the roll-up of requests on model that used u in all, priced
// with the embedded price table.
func charged(t *testing.T, model string, requests int64, u pyUsage) usageRollup {
	t.Helper()
	cost, known := usage.DefaultPrices().Cost(model, usage.Usage{
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens,
	})
	if !known {
		t.Fatalf("the price table does not know %s", model)
	}
	return usageRollup{Model: model, Requests: requests, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
		TotalTokens: u.PromptTokens + u.CompletionTokens, CostMicroUSD: cost}
}

// waitUsage polls the project's usage report for the UTC days since..today
// until it equals want, then checks it still does a few flushes later (a
// late double charge would show there). It fails t at the deadline with
// what the API last showed.
func (s *stack) waitUsage(t *testing.T, projectID string, since time.Time, want usageRollup) {
	t.Helper()
	read := func() usageRollup {
		var u struct {
			Data []struct {
				Model string `json:"model"`
			} `json:"data"`
			Total struct {
				Requests         int64       `json:"requests"`
				PromptTokens     int64       `json:"prompt_tokens"`
				CompletionTokens int64       `json:"completion_tokens"`
				TotalTokens      int64       `json:"total_tokens"`
				CostUSD          json.Number `json:"cost_usd"`
			} `json:"total"`
		}
		path := fmt.Sprintf("/manage/projects/%s/usage?from=%s&to=%s", projectID,
			since.UTC().Format(time.DateOnly), time.Now().UTC().Format(time.DateOnly))
		s.mustManage("GET", path, nil, 200, &u)
		got := usageRollup{Requests: u.Total.Requests, PromptTokens: u.Total.PromptTokens,
			CompletionTokens: u.Total.CompletionTokens, TotalTokens: u.Total.TotalTokens}
		var models []string
		for _, row := range u.Data {
			models = append(models, row.Model)
		}
		got.Model = strings.Join(models, ",")
		micro, err := microUSD(u.Total.CostUSD)
		if err != nil {
			t.Fatalf("usage API: cost_usd: %v", err)
		}
		got.CostMicroUSD = micro
		return got
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := read()
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of project %s:\n  got  %+v\n  want %+v", projectID, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // five flush intervals of the test stack
	if got := read(); got != want {
		t.Fatalf("usage of project %s changed after it matched:\n  got  %+v\n  want %+v", projectID, got, want)
	}
}

// microUSD converts the API's exact decimal dollars (at most six decimals)
// to micro-USD.
func microUSD(n json.Number) (int64, error) {
	whole, frac, _ := strings.Cut(n.String(), ".")
	if len(frac) > 6 {
		return 0, fmt.Errorf("%s has more than six decimals", n)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", n, err)
	}
	var f int64
	if frac != "" {
		if f, err = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64); err != nil {
			return 0, fmt.Errorf("%s: %w", n, err)
		}
	}
	return w*1_000_000 + f, nil
}

// checkLedger waits for the fake upstream to bill and checks that it billed
// exactly want, once: what the gateway's charge is compared with.
func (s *stack) checkLedger(t *testing.T, want fakeopenai.Charge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := s.upstream.WaitLedger(ctx, 1)
	if err != nil || len(got) != 1 || got[0] != want {
		t.Fatalf("the upstream billed %+v (%v), want exactly %+v", got, err, want)
	}
}

// chatCharge is what the fake bills for a one-message chat echo.
func chatCharge(model, msg string, stream bool) fakeopenai.Charge {
	u := chatUsage(msg)
	return fakeopenai.Charge{Key: realKey, Family: fakeopenai.FamilyChat, Model: model, Stream: stream,
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
}

// TestPythonSDKChat: a non-streamed chat completion with the SDK's default
// Accept-Encoding gets the echo and its usage, and the project is charged
// exactly the tokens the upstream reported.
func TestPythonSDKChat(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("py-chat", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	const model, msg = "gpt-4.1-mini", "hello from the python sdk"
	r := s.python(t, "chat", tok.Token, map[string]any{"model": model, "message": msg})
	r.mustSucceed(t)
	checkWire(t, r, wantWire("POST", "/v1/chat/completions", 200))
	if r.Content != fakeopenai.EchoReply(msg) || r.FinishReason != "stop" || r.Model != model {
		t.Fatalf("reply %q (finish %q, model %q), want %q (stop, %s)", r.Content, r.FinishReason, r.Model, fakeopenai.EchoReply(msg), model)
	}
	want := chatUsage(msg)
	if r.Usage.String() != want.String() {
		t.Fatalf("SDK usage %v, want %v", r.Usage, &want)
	}
	if n := s.upstream.Count(); n != 1 {
		t.Fatalf("upstream received %d requests, want 1", n)
	}
	s.checkLedger(t, chatCharge(model, msg, false))
	s.waitUsage(t, p.ID, since, charged(t, model, 1, want))
}

// TestPythonSDKChatStream: streams with and without stream_options
// include_usage. llm-proxy asks the upstream for usage either way; a client
// that did not ask must never see the usage-only chunk (empty choices), one
// that did sees it once, last. Both are charged the upstream's usage.
func TestPythonSDKChatStream(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	const model = "gpt-4.1-mini"
	for _, tc := range []struct {
		name         string
		includeUsage bool
		msg          string
	}{
		{"without include_usage", false, "stream these few words please"},
		{"with include_usage", true, "stream and count these words"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			since := time.Now()
			s.upstream.ResetLedger()
			p := s.createProject("py-stream", realKey)
			tok := s.createToken(map[string]any{"project_id": p.ID})
			r := s.python(t, "chat_stream", tok.Token, map[string]any{"model": model, "message": tc.msg, "include_usage": tc.includeUsage})
			r.mustSucceed(t)
			checkWire(t, r, wantWire("POST", "/v1/chat/completions", 200))
			reply := fakeopenai.EchoReply(tc.msg)
			if r.Content != reply {
				t.Fatalf("streamed content %q, want %q", r.Content, reply)
			}

			// The fake's stream: a role chunk, one chunk per word, a finish
			// chunk, then (asked for) the usage-only chunk.
			var want []string
			for range 1 + fakeopenai.CountWords(reply) {
				want = append(want, pyChunk{Choices: 1}.String())
			}
			want = append(want, pyChunk{Choices: 1, FinishReason: "stop"}.String())
			if tc.includeUsage {
				want = append(want, pyChunk{Choices: 0, HasUsage: true}.String())
			}
			var got []string
			for _, c := range r.Chunks {
				got = append(got, c.String())
			}
			if !slices.Equal(got, want) {
				t.Fatalf("chunk shapes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}

			u := chatUsage(tc.msg)
			switch {
			case tc.includeUsage && r.Usage.String() != u.String():
				t.Fatalf("streamed usage %v, want %v", r.Usage, &u)
			case !tc.includeUsage && r.Usage != nil:
				t.Fatalf("usage %v reached a client that did not ask for it", r.Usage)
			}
			s.checkLedger(t, chatCharge(model, tc.msg, true))
			s.waitUsage(t, p.ID, since, charged(t, model, 1, u))
		})
	}
}

// TestPythonSDKRateLimitHeaders reads the headers the SDK gets through
// with_raw_response: OpenAI's x-ratelimit-*-requests counting down from a
// token's requests_per_minute, llm-proxy's x-request-id (what the SDK
// reports as the request id) next to the upstream's, and the gzip encoding
// the SDK asked for by default.
func TestPythonSDKRateLimitHeaders(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	p := s.createProject("py-headers", realKey)
	const rpm = 7
	tok := s.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"requests_per_minute": rpm}})

	for i, msg := range []string{"first raw request", "second raw request"} {
		r := s.python(t, "raw_headers", tok.Token, map[string]any{"message": msg})
		r.mustSucceed(t)
		checkWire(t, r, wantWire("POST", "/v1/chat/completions", 200))
		if r.StatusCode != 200 || r.RetriesTaken != 0 || r.Content != fakeopenai.EchoReply(msg) {
			t.Fatalf("request %d: status %d, retries %d, content %q", i+1, r.StatusCode, r.RetriesTaken, r.Content)
		}
		h := r.Headers
		limits := map[string]string{}
		for k, v := range h {
			if strings.HasPrefix(k, "x-ratelimit-") && k != "x-ratelimit-reset-requests" {
				limits[k] = v
			}
		}
		wantLimits := map[string]string{
			"x-ratelimit-limit-requests":     strconv.Itoa(rpm),
			"x-ratelimit-remaining-requests": strconv.Itoa(rpm - 1 - i),
		}
		if fmt.Sprint(limits) != fmt.Sprint(wantLimits) {
			t.Fatalf("request %d: x-ratelimit headers %v, want %v (and a reset)", i+1, limits, wantLimits)
		}
		if _, ok := h["x-ratelimit-reset-requests"]; !ok {
			t.Fatalf("request %d: no x-ratelimit-reset-requests in %v", i+1, h)
		}
		if _, err := uuid.Parse(h["x-request-id"]); err != nil || r.RequestID != h["x-request-id"] {
			t.Fatalf("request %d: x-request-id %q (SDK request id %q), want llm-proxy's UUID in both", i+1, h["x-request-id"], r.RequestID)
		}
		if want := "req_" + strings.TrimPrefix(r.ID, "chatcmpl-"); h["x-upstream-request-id"] != want {
			t.Fatalf("request %d: x-upstream-request-id %q, want the upstream's %q", i+1, h["x-upstream-request-id"], want)
		}
		// DESIGN.md: clients who ask for compression still get compressed
		// bytes (Envoy's compressor), which the SDK decoded above.
		if h["content-encoding"] != "gzip" || r.Attempts[0].ContentEncoding != "gzip" {
			t.Fatalf("request %d: content-encoding %q (hook: %q), want gzip for a client sending Accept-Encoding %q",
				i+1, h["content-encoding"], r.Attempts[0].ContentEncoding, pySDKAcceptEncoding)
		}
	}
}

// TestPythonSDKRetry429: the upstream refuses the first attempt with 429,
// retry-after: 1 and retry-after-ms: 1000 (x-fake-fail); the SDK
// (max_retries 2) waits as told, retries once and succeeds. Only the
// successful attempt is charged.
func TestPythonSDKRetry429(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("py-retry", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	const model, msg = "gpt-4.1-mini", "retry me once please"
	fail := fmt.Sprintf("py-retry-%d:429:1", time.Now().UnixNano())
	r := s.python(t, "retry_429", tok.Token, map[string]any{
		"model": model, "message": msg, "max_retries": 2,
		"extra_headers": map[string]string{"x-fake-fail": fail},
	})
	r.mustSucceed(t)
	checkWire(t, r, wantWire("POST", "/v1/chat/completions", 429, 200))
	if r.RetriesTaken != 1 || r.Content != fakeopenai.EchoReply(msg) {
		t.Fatalf("retries taken %d, content %q; want 1 and %q", r.RetriesTaken, r.Content, fakeopenai.EchoReply(msg))
	}
	if wait := r.Attempts[1].SentAt - r.Attempts[0].ReceivedAt; wait < 0.95 {
		t.Fatalf("the SDK retried %.3fs after the 429, want the 1s of retry-after-ms", wait)
	}
	reqs := s.upstream.Requests()
	var seen []string
	for _, rq := range reqs {
		seen = append(seen, rq.Path+" retry "+rq.Header.Get("X-Stainless-Retry-Count"))
	}
	if want := []string{"/v1/chat/completions retry 0", "/v1/chat/completions retry 1"}; s.upstream.Count() != 2 || !slices.Equal(seen, want) {
		t.Fatalf("upstream saw %d requests %v, want %v", s.upstream.Count(), seen, want)
	}
	// The upstream billed the successful attempt only; the refused one went
	// upstream, so it counts as a request, but it used and costs nothing.
	s.checkLedger(t, chatCharge(model, msg, false))
	s.waitUsage(t, p.ID, since, charged(t, model, 2, chatUsage(msg)))
}

// TestPythonSDKErrors: llm-proxy's and the upstream's refusals reach the SDK
// as its typed exceptions with OpenAI's codes, and the SDK, retrying by
// default, retries none of them.
func TestPythonSDKErrors(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	p := s.createProject("py-errors", realKey)
	good := s.createToken(map[string]any{"project_id": p.ID})
	revoked := s.createToken(map[string]any{"project_id": p.ID})
	s.mustManage("DELETE", "/manage/tokens/"+revoked.ID, nil, 200, nil)
	var broke project
	// One micro-dollar: the first request's worst-case cost is already over.
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "py-broke", "openai_api_key": realKey, "monthly_budget_usd": 0.000001}, 201, &broke)
	brokeTok := s.createToken(map[string]any{"project_id": broke.ID})
	off := s.createProject("py-off", realKey)
	offTok := s.createToken(map[string]any{"project_id": off.ID})
	s.mustManage("PATCH", "/manage/projects/"+off.ID, map[string]any{"active": false}, 200, nil)

	tests := []struct {
		name        string
		apiKey      string
		headers     map[string]string
		class       string
		status      int
		code, typ   string
		shouldRetry string // the x-should-retry header, "" for none
	}{
		{"unknown token", "llmp_" + strings.Repeat("Z", 43), nil, "AuthenticationError", 401, "invalid_api_key", "invalid_request_error", ""},
		{"revoked token", revoked.Token, nil, "AuthenticationError", 401, "invalid_api_key", "invalid_request_error", ""},
		{"project over its budget", brokeTok.Token, nil, "RateLimitError", 429, "insufficient_quota", "insufficient_quota", "false"},
		{"deactivated project", offTok.Token, nil, "PermissionDeniedError", 403, "project_inactive", "permission_error", ""},
		{"upstream 403", good.Token, map[string]string{"x-fake-status": "403"}, "PermissionDeniedError", 403, "", "permission_error", ""},
	}
	cases := map[string]any{}
	for _, tc := range tests {
		cases[tc.name] = map[string]any{"api_key": tc.apiKey, "message": "this should fail: " + tc.name, "extra_headers": tc.headers}
	}
	s.upstream.Reset()
	res := s.python(t, "errors", good.Token, map[string]any{"cases": cases})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := res.Cases[tc.name]
			if !ok {
				t.Fatalf("no result for %q", tc.name)
			}
			e := r.Error
			if e == nil {
				t.Fatalf("no exception; the call answered %q", r.Content)
			}
			got := fmt.Sprintf("%s %d code=%q type=%q x-should-retry=%q", e.Class, e.StatusCode, e.Code, e.Type, e.Headers["x-should-retry"])
			want := fmt.Sprintf("%s %d code=%q type=%q x-should-retry=%q", tc.class, tc.status, tc.code, tc.typ, tc.shouldRetry)
			if got != want {
				t.Fatalf("exception %s (%q), want %s", got, e.Message, want)
			}
			if _, err := uuid.Parse(e.RequestID); err != nil {
				t.Fatalf("exception request id %q is not llm-proxy's UUID", e.RequestID)
			}
			checkWire(t, r, wantWire("POST", "/v1/chat/completions", tc.status))
		})
	}
	// Only the injected 403 went upstream; every denial stopped at the proxy.
	if n, l := s.upstream.Count(), s.upstream.Ledger(); n != 1 || len(l) != 0 {
		t.Fatalf("upstream received %d requests and billed %+v, want 1 (the injected 403) and nothing", n, l)
	}
}

// TestPythonSDKEmbeddings: the SDK asks for base64 embeddings by default and
// decodes them; through llm-proxy it gets exactly the upstream's vectors, and
// the project is charged the input tokens the upstream reported. The input
// has words that tiktoken splits, so an estimate would not pass for them.
func TestPythonSDKEmbeddings(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("py-embed", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	const model, input = "text-embedding-3-small", "supercalifragilistic embeddings through llm-proxy's sidecar"
	r := s.python(t, "embeddings", tok.Token, map[string]any{"model": model, "input": input})
	r.mustSucceed(t)
	checkWire(t, r, wantWire("POST", "/v1/embeddings", 200))
	if f := r.Attempts[0].RequestBody["encoding_format"]; f != "base64" {
		t.Fatalf("the SDK sent encoding_format %v, want its default base64", f)
	}
	if !slices.Equal(r.WireEmbeddingTypes, []string{"str"}) {
		t.Fatalf("embeddings on the wire were %v, want one base64 string", r.WireEmbeddingTypes)
	}
	want := fakeopenai.EmbeddingVector(input, fakeopenai.DefaultEmbeddingDimensions)
	if len(r.Embeddings) != 1 || len(r.Embeddings[0]) != len(want) {
		t.Fatalf("SDK got %d embeddings of dimensions %v, want 1 of %d", len(r.Embeddings), dims(r.Embeddings), len(want))
	}
	for i, v := range r.Embeddings[0] {
		// base64 carries float32s, which JSON numbers hold exactly.
		if float32(v) != want[i] || math.IsNaN(v) {
			t.Fatalf("dimension %d: SDK decoded %v, the upstream sent %v", i, v, want[i])
		}
	}
	words := int64(fakeopenai.CountWords(input))
	u := pyUsage{PromptTokens: words, TotalTokens: words}
	if r.Usage == nil || r.Usage.PromptTokens != u.PromptTokens || r.Usage.TotalTokens != u.TotalTokens {
		t.Fatalf("SDK usage %v, want prompt %d total %d", r.Usage, u.PromptTokens, u.TotalTokens)
	}
	s.checkLedger(t, fakeopenai.Charge{Key: realKey, Family: fakeopenai.FamilyEmbeddings, Model: model, PromptTokens: words})
	s.waitUsage(t, p.ID, since, charged(t, model, 1, u))
}

func dims(vs [][]float64) []int {
	out := make([]int, 0, len(vs))
	for _, v := range vs {
		out = append(out, len(v))
	}
	return out
}

// TestPythonSDKResponses: a non-streamed Responses API call gets the echo
// and its usage, and the project is charged its input and output tokens.
func TestPythonSDKResponses(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("py-responses", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	const model, input = "gpt-4.1-mini", "answer through the responses api"
	r := s.python(t, "responses", tok.Token, map[string]any{"model": model, "input": input})
	r.mustSucceed(t)
	checkWire(t, r, wantWire("POST", "/v1/responses", 200))
	if r.Content != fakeopenai.EchoReply(input) || r.Status != "completed" || r.Model != model {
		t.Fatalf("output %q (status %q, model %q), want %q (completed, %s)", r.Content, r.Status, r.Model, fakeopenai.EchoReply(input), model)
	}
	// A string input is one user message: counted as in a chat.
	u := chatUsage(input)
	if r.Usage.String() != u.String() {
		t.Fatalf("SDK usage %v, want %v", r.Usage, &u)
	}
	s.checkLedger(t, fakeopenai.Charge{Key: realKey, Family: fakeopenai.FamilyResponses, Model: model,
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens})
	s.waitUsage(t, p.ID, since, charged(t, model, 1, u))
}
