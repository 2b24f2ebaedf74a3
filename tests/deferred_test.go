package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/usage"
)

// Work OpenAI finishes after answering — background responses and batches —
// is reserved when created and settled from OpenAI's own record: when a
// client reads it in a terminal state, or by the sidecar's reconciler when
// nobody does.

// call sends one request through Envoy with a proxy token (the package's
// call, with a content type of choice) and decodes a 2xx JSON answer into
// out (when not nil).
func (s *stack) call(t *testing.T, tok, method, path, contentType string, body []byte, hdr map[string]string, out any) (int, []byte) {
	t.Helper()
	h := maps.Clone(hdr)
	if h == nil {
		h = map[string]string{}
	}
	if contentType != "" {
		h["Content-Type"] = contentType
	}
	r := call(t, s, method, path, tok, string(body), h)
	if out != nil && r.status/100 == 2 {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, r.body)
		}
	}
	return r.status, r.body
}

type jobObject struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	OutputFileID string `json:"output_file_id"`
}

// background creates a background response answering with words words.
func (s *stack) background(t *testing.T, tok, model string, words, maxOutput int) (int, jobObject, []byte) {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"input":"hello there","background":true,"max_output_tokens":%d}`, model, maxOutput)
	var job jobObject
	status, b := s.call(t, tok, "POST", "/v1/responses", "application/json", []byte(body),
		map[string]string{fakeopenai.HeaderWords: fmt.Sprint(words)}, &job)
	return status, job, b
}

// backgroundBill is what the fake bills a background response created by
// background: input "hello there" is 2 words + 3, output words.
func backgroundBill(t *testing.T, model string, words int64) usageRollup {
	t.Helper()
	return charged(t, model, 1, pyUsage{PromptTokens: 5, CompletionTokens: words})
}

func TestBackgroundResponseSettledWhenPolled(t *testing.T) {
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("bg-polled", "sk-bg-polled-0123456789")
	tok := s.createToken(map[string]any{"project_id": p.ID})

	status, job, b := s.background(t, tok.Token, "gpt-4o-mini", 40, 100)
	if status != 200 || job.Status != "queued" || !strings.HasPrefix(job.ID, "resp_") {
		t.Fatalf("create: %d %s", status, b)
	}
	// The client polls until it completes: the answer that shows it
	// completed settles it with OpenAI's usage.
	polls := int64(0)
	for job.Status != "completed" {
		status, b := s.call(t, tok.Token, "GET", "/v1/responses/"+job.ID, "", nil, nil, &job)
		if status != 200 {
			t.Fatalf("poll: %d %s", status, b)
		}
		polls++
	}
	// The polls are free requests (the roll-up's model "" row).
	want := backgroundBill(t, "gpt-4o-mini", 40)
	want.Model, want.Requests = ","+want.Model, want.Requests+polls
	s.waitUsage(t, p.ID, since, want)
}

func TestBackgroundResponseSettledWhenNobodyAsks(t *testing.T) {
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("bg-never-polled", "sk-bg-never-0123456789")
	tok := s.createToken(map[string]any{"project_id": p.ID})

	status, job, b := s.background(t, tok.Token, "gpt-4o-mini", 30, 100)
	if status != 200 || job.Status != "queued" {
		t.Fatalf("create: %d %s", status, b)
	}
	// Nobody polls: the reconciler does, with the project's key, and
	// settles it once the fake says it completed.
	s.waitUsage(t, p.ID, since, backgroundBill(t, "gpt-4o-mini", 30))
	for _, r := range s.upstream.Requests() {
		if r.Method == "GET" && r.Path == "/v1/responses/"+job.ID && r.Authorization != "Bearer sk-bg-never-0123456789" {
			t.Errorf("reconciler polled with %q, want the project's key", r.Authorization)
		}
	}
}

// A project with a $0.01 budget cannot spend past it with background
// responses: each is reserved at its worst case when created, and settled
// later; the one that does not fit is refused.
func TestBackgroundResponsesCannotExceedBudget(t *testing.T) {
	s := startStack(t, stackOptions{})
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "bg-budget", "openai_api_key": "sk-bg-budget-0123456789", "monthly_budget_usd": 0.01}, 201, &p)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	// gpt-4o output: $10 per million tokens: 400 tokens reserve 4000 µUSD
	// (plus the prompt); two fit in 10000 µUSD, a third does not.
	for i := range 3 {
		status, _, b := s.background(t, tok.Token, "gpt-4o", 400, 400)
		if i < 2 {
			if status != 200 {
				t.Fatalf("background %d: %d %s", i, status, b)
			}
			continue
		}
		if status != 429 || !strings.Contains(string(b), "insufficient_quota") {
			t.Fatalf("third background response over the budget: %d %s", status, b)
		}
	}
	one := backgroundBill(t, "gpt-4o", 400)
	s.waitUsage(t, p.ID, time.Now().Add(-time.Hour), usageRollup{Model: "gpt-4o", Requests: 2,
		PromptTokens: 10, CompletionTokens: 800, TotalTokens: 810, CostMicroUSD: 2 * one.CostMicroUSD})
	var billed int64
	for _, c := range s.upstream.Ledger() {
		if c.Key == "Bearer sk-bg-budget-0123456789" || c.Key == "sk-bg-budget-0123456789" {
			cost, _ := usage.DefaultPrices().Cost(c.Model, usage.Usage{PromptTokens: c.PromptTokens, CompletionTokens: c.CompletionTokens})
			billed += cost
		}
	}
	if billed != 2*one.CostMicroUSD || billed > 10000 {
		t.Errorf("OpenAI billed %d µUSD for the project, want %d (and never more than its 10000 budget)", billed, 2*one.CostMicroUSD)
	}
}

// A reservation kept for a background response outlives a restart of the
// sidecar: the in-memory budget is seeded with the month's spend plus what is
// still reserved, so the restart cannot free budget for more work.
func TestBackgroundReservationSurvivesRestart(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.upstream.SetBackgroundPolls(1_000_000) // never ends during the test
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "bg-restart", "openai_api_key": "sk-bg-restart-0123456789", "monthly_budget_usd": 0.01}, 201, &p)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	// gpt-4o: 600 output tokens reserve 6000 µUSD and more: one fits in
	// 10000, two do not.
	if status, _, b := s.background(t, tok.Token, "gpt-4o", 10, 600); status != 200 {
		t.Fatalf("first: %d %s", status, b)
	}
	s.restartProxy()
	s.waitThroughEnvoy()
	status, _, b := s.background(t, tok.Token, "gpt-4o", 10, 600)
	if status != 429 || !strings.Contains(string(b), "insufficient_quota") {
		t.Fatalf("after a restart, a second reservation over the budget: %d %s", status, b)
	}
}

func TestBackgroundRefusedByProjectPolicy(t *testing.T) {
	s := startStack(t, stackOptions{})
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "no-bg", "openai_api_key": "sk-no-bg-0123456789",
		"allow_background": false, "allow_batches": false}, 201, &p)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	before := s.upstream.Count()
	status, _, b := s.background(t, tok.Token, "gpt-4o-mini", 5, 10)
	if status != 403 || !strings.Contains(string(b), `"code":"background_not_allowed"`) || !strings.Contains(string(b), `"type":"permission_error"`) {
		t.Errorf("background on a project that refuses it: %d %s", status, b)
	}
	status, b = s.call(t, tok.Token, "POST", "/v1/batches", "application/json",
		[]byte(`{"input_file_id":"file-x","endpoint":"/v1/chat/completions","completion_window":"24h"}`), nil, nil)
	if status != 403 || !strings.Contains(string(b), `"code":"batches_not_allowed"`) {
		t.Errorf("batch on a project that refuses it: %d %s", status, b)
	}
	if n := s.upstream.Count() - before; n != 0 {
		t.Errorf("%d refused requests reached OpenAI", n)
	}
}

// uploadBatch uploads a batch input file of chat requests through the
// gateway and returns its id.
func (s *stack) uploadBatch(t *testing.T, tok string, lines []string) string {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "batch.jsonl")
	io.WriteString(fw, strings.Join(lines, "\n")+"\n")
	mw.Close()
	var file struct {
		ID string `json:"id"`
	}
	status, b := s.call(t, tok, "POST", "/v1/files", mw.FormDataContentType(), buf.Bytes(), nil, &file)
	if status != 200 || file.ID == "" {
		t.Fatalf("upload: %d %s", status, b)
	}
	return file.ID
}

func batchLine(i int, model, text string, maxTokens int) string {
	return fmt.Sprintf(`{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":%q}]}}`,
		i, model, maxTokens, text)
}

// A batch is reserved from its input file when created and settled from its
// output file at the Batch API's discount; with a $0.01 budget one that
// may cost more is refused, and one that fits is charged exactly.
func TestBatchReservedAndSettledFromOutputFile(t *testing.T) {
	s := startStack(t, stackOptions{})
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "batch-budget", "openai_api_key": "sk-batch-budget-0123456789", "monthly_budget_usd": 0.01}, 201, &p)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	// gpt-4o at the batch discount: $5 per million output tokens. Three
	// lines of max_tokens 1000 may cost 15000 µUSD: over the budget.
	big := s.uploadBatch(t, tok.Token, []string{
		batchLine(1, "gpt-4o", "one two", 1000), batchLine(2, "gpt-4o", "three", 1000), batchLine(3, "gpt-4o", "four", 1000),
	})
	status, b := s.call(t, tok.Token, "POST", "/v1/batches", "application/json",
		[]byte(fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, big)), nil, nil)
	if status != 429 || !strings.Contains(string(b), "insufficient_quota") {
		t.Fatalf("a batch that may cost more than the budget: %d %s", status, b)
	}

	small := s.uploadBatch(t, tok.Token, []string{batchLine(1, "gpt-4o", "one two three", 1000), batchLine(2, "gpt-4o", "four five", 500)})
	var job jobObject
	status, b = s.call(t, tok.Token, "POST", "/v1/batches", "application/json",
		[]byte(fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, small)), nil, &job)
	if status != 200 || job.Status != "validating" {
		t.Fatalf("create batch: %d %s", status, b)
	}
	// Nobody polls: the reconciler reads the batch and its output file.
	// Each line echoes its prompt: "echo: one two three" is 4 words, its
	// prompt 3+3; "echo: four five" 3 words, prompt 2+3.
	u := usage.Usage{PromptTokens: 11, CompletionTokens: 7}
	cost, _ := usage.DefaultPrices().BatchCost("gpt-4o", u)
	// The two uploads are free requests (the roll-up's model "" row).
	s.waitUsage(t, p.ID, time.Now().Add(-time.Hour), usageRollup{Model: ",gpt-4o", Requests: 3,
		PromptTokens: 11, CompletionTokens: 7, TotalTokens: 18, CostMicroUSD: cost})
	var billed usage.Usage
	for _, c := range s.upstream.Ledger() {
		if c.Batch {
			billed.PromptTokens += c.PromptTokens
			billed.CompletionTokens += c.CompletionTokens
		}
	}
	if billed != u {
		t.Errorf("the fake billed %+v for the batch, the gateway charged %+v", billed, u)
	}
}
