package fakeopenai_test

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

func upload(t testing.TB, c openai.Client, name, purpose, content string) *openai.FileObject {
	t.Helper()
	f, err := c.Files.New(ctx(t), openai.FileNewParams{
		File:    openai.File(strings.NewReader(content), name, "application/jsonl"),
		Purpose: openai.FilePurpose(purpose),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func fileContent(t testing.TB, c openai.Client, id string) string {
	t.Helper()
	res, err := c.Files.Content(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/octet-stream" || res.Header.Get("Content-Encoding") != "" {
		t.Errorf("content headers %v", res.Header)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFiles(t *testing.T) {
	r := start(t)
	c := sdk(r)
	content := `{"a":1}` + "\n"
	f := upload(t, c, "in.jsonl", "batch", content)
	//lint:ignore SA1019 the fake answers the status field OpenAI still sends
	status := f.Status
	if !strings.HasPrefix(f.ID, "file-") || f.Object != "file" || f.Bytes != int64(len(content)) || f.Filename != "in.jsonl" ||
		f.Purpose != "batch" || status != "processed" || f.CreatedAt == 0 {
		t.Errorf("uploaded %+v", f)
	}
	got, err := c.Files.Get(ctx(t), f.ID)
	if err != nil || got.ID != f.ID || got.Bytes != f.Bytes {
		t.Errorf("get: %v %+v", err, got)
	}
	if s := fileContent(t, c, f.ID); s != content {
		t.Errorf("content %q", s)
	}
	g := upload(t, c, "v.jsonl", "user_data", "x")
	page, err := c.Files.List(ctx(t), openai.FileListParams{})
	if err != nil || len(page.Data) != 2 || page.Data[0].ID != g.ID || page.Data[1].ID != f.ID {
		t.Errorf("list: %v %+v", err, page)
	}
	page, err = c.Files.List(ctx(t), openai.FileListParams{Purpose: openai.String("batch")})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != f.ID {
		t.Errorf("list purpose=batch: %v %+v", err, page)
	}
	del, err := c.Files.Delete(ctx(t), f.ID)
	if err != nil || !del.Deleted || del.ID != f.ID || del.Object != "file" {
		t.Errorf("delete: %v %+v", err, del)
	}
	if _, err := c.Files.Get(ctx(t), f.ID); err == nil {
		t.Error("get after delete")
	}
	if status, _, _ := do(t, r, "GET", "/v1/files/"+f.ID+"/content", ""); status != 404 {
		t.Errorf("content after delete: %d", status)
	}
	// Not multipart, no purpose, a bad purpose, no file.
	if status, _, _ := do(t, r, "POST", "/v1/files", `{}`); status != 400 {
		t.Errorf("json upload: %d", status)
	}
	if _, err := c.Files.New(ctx(t), openai.FileNewParams{File: openai.File(strings.NewReader("x"), "x", "text/plain"), Purpose: "nope"}); err == nil {
		t.Error("bad purpose accepted")
	}
	if status, _, _ := do(t, r, "PUT", "/v1/files", ""); status != 405 {
		t.Errorf("PUT /v1/files: %d", status)
	}
}

type outputLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *json.RawMessage `json:"error"`
}

func parseLines(t testing.TB, s string) []outputLine {
	t.Helper()
	var out []outputLine
	for line := range strings.Lines(s) {
		out = append(out, mustJSON[outputLine](t, []byte(line)))
	}
	return out
}

func TestBatchLifecycle(t *testing.T) {
	r := start(t)
	c := sdk(r)
	input := strings.Join([]string{
		`{"custom_id":"one","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"first line"}]}}`,
		`{"custom_id":"two","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"second line here"}]}}`,
		``,
		`{"custom_id":"bad","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[]}}`,
	}, "\n")
	in := upload(t, c, "batch.jsonl", "batch", input)
	b, err := c.Batches.New(ctx(t), openai.BatchNewParams{
		InputFileID:      in.ID,
		Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
		Metadata:         map[string]string{"job": "nightly"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.ID, "batch_") || b.Object != "batch" || b.Status != "validating" || b.InputFileID != in.ID ||
		b.Endpoint != "/v1/chat/completions" || b.CompletionWindow != "24h" || b.OutputFileID != "" || b.Metadata["job"] != "nightly" ||
		b.JSON.Usage.Valid() || b.JSON.Errors.Raw() != "null" {
		t.Fatalf("created %s", b.RawJSON())
	}

	got, err := c.Batches.Get(ctx(t), b.ID)
	if err != nil || got.Status != "in_progress" || got.RequestCounts.Total != 3 || got.InProgressAt == 0 {
		t.Fatalf("GET 1: %v %s", err, got.RawJSON())
	}
	if n := len(r.Ledger()); n != 0 {
		t.Fatalf("billed %d lines before completion", n)
	}
	got, err = c.Batches.Get(ctx(t), b.ID)
	if err != nil || got.Status != "completed" || got.CompletedAt == 0 || got.OutputFileID == "" || got.ErrorFileID == "" ||
		got.RequestCounts.Total != 3 || got.RequestCounts.Completed != 2 || got.RequestCounts.Failed != 1 || got.JSON.Usage.Valid() {
		t.Fatalf("GET 2: %v %s", err, got.RawJSON())
	}

	out := parseLines(t, fileContent(t, c, got.OutputFileID))
	if len(out) != 2 || out[0].CustomID != "one" || out[1].CustomID != "two" {
		t.Fatalf("output %+v", out)
	}
	for i, msg := range []string{"first line", "second line here"} {
		l := out[i]
		if !strings.HasPrefix(l.ID, "batch_req_") || l.Response.StatusCode != 200 || !strings.HasPrefix(l.Response.RequestID, "req_") || l.Error != nil {
			t.Errorf("line %d: %+v", i, l)
		}
		var cc openai.ChatCompletion
		if err := json.Unmarshal(l.Response.Body, &cc); err != nil {
			t.Fatal(err)
		}
		reply := fakeopenai.EchoReply(msg)
		if cc.Object != "chat.completion" || cc.Choices[0].Message.Content != reply ||
			cc.Usage.PromptTokens != int64(fakeopenai.PromptTokens(msg)) || cc.Usage.CompletionTokens != int64(fakeopenai.CountWords(reply)) {
			t.Errorf("line %d body %s", i, l.Response.Body)
		}
	}
	errs := parseLines(t, fileContent(t, c, got.ErrorFileID))
	if len(errs) != 1 || errs[0].CustomID != "bad" || errs[0].Response.StatusCode != 400 || !bytes.Contains(errs[0].Response.Body, []byte(`"error"`)) {
		t.Errorf("error file %+v", errs)
	}
	if f, err := c.Files.Get(ctx(t), got.OutputFileID); err != nil || f.Purpose != "batch_output" {
		t.Errorf("output file: %v %+v", err, f)
	}

	led := r.Ledger()
	want := []fakeopenai.Charge{
		{Key: testKey, Family: "chat", Model: "gpt-4o-mini", Batch: true, PromptTokens: 5, CompletionTokens: 3},
		{Key: testKey, Family: "chat", Model: "gpt-4o-mini", Batch: true, PromptTokens: 6, CompletionTokens: 4},
	}
	if len(led) != 2 || led[0] != want[0] || led[1] != want[1] {
		t.Errorf("ledger %+v\nwant   %+v", led, want)
	}
	// Later GETs neither change nor bill it.
	if again, err := c.Batches.Get(ctx(t), b.ID); err != nil || again.Status != "completed" || again.OutputFileID != got.OutputFileID || len(r.Ledger()) != 2 {
		t.Errorf("GET 3: %v %s", err, again.RawJSON())
	}
	// A completed batch cannot be cancelled.
	if _, err := c.Batches.Cancel(ctx(t), b.ID); err == nil {
		t.Error("cancelled a completed batch")
	}

	page, err := c.Batches.List(ctx(t), openai.BatchListParams{})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != b.ID {
		t.Errorf("list: %v %+v", err, page)
	}
}

func TestBatchEndpointsAndKnobs(t *testing.T) {
	r := start(t)
	r.SetBatchPolls(1)
	for _, tc := range []struct {
		endpoint, body string
		family         string
		prompt, output int64
	}{
		{"/v1/embeddings", `{"model":"text-embedding-3-small","input":["a b","c"]}`, fakeopenai.FamilyEmbeddings, 3, 0},
		{"/v1/responses", `{"model":"gpt-4.1","input":"hi there","stream":true,"background":true}`, fakeopenai.FamilyResponses, 5, 7 + 4},
		{"/v1/chat/completions", `{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}`, fakeopenai.FamilyChat, 4, 7 + 4},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			r.ResetLedger()
			c := sdk(r)
			in := upload(t, c, "in.jsonl", "batch", `{"custom_id":"x","method":"POST","url":"`+tc.endpoint+`","body":`+tc.body+`}`)
			// Knobs sent with the create request apply to every line.
			status, _, b := do(t, r, "POST", "/v1/batches", `{"input_file_id":"`+in.ID+`","endpoint":"`+tc.endpoint+`","completion_window":"24h"}`,
				"x-fake-words", "7", "x-fake-reasoning-tokens", "4", "x-fake-cached-tokens", "2")
			if status != 200 {
				t.Fatalf("create: %d %s", status, b)
			}
			got, err := c.Batches.Get(ctx(t), mustJSON[struct{ ID string }](t, b).ID)
			if err != nil || got.Status != "completed" || got.RequestCounts.Completed != 1 || got.ErrorFileID != "" {
				t.Fatalf("GET: %v %s", err, got.RawJSON())
			}
			out := parseLines(t, fileContent(t, c, got.OutputFileID))
			if len(out) != 1 || out[0].Response.StatusCode != 200 || !bytes.Contains(out[0].Response.Body, []byte(`"usage":{`)) {
				t.Fatalf("output %+v", out)
			}
			led := r.Ledger()
			if len(led) != 1 || !led[0].Batch || led[0].Stream || led[0].Background || led[0].Family != tc.family ||
				led[0].PromptTokens != tc.prompt || led[0].CompletionTokens != tc.output {
				t.Errorf("ledger %+v", led)
			}
		})
	}
}

func TestBatchErrorsAndCancel(t *testing.T) {
	r := start(t)
	c := sdk(r)
	good := upload(t, c, "in.jsonl", "batch", `{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"x"}]}}`)
	notBatch := upload(t, c, "in.jsonl", "user_data", `{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{}}`)
	for _, tc := range []struct{ why, content, body string }{
		{"unknown file", "", `{"input_file_id":"file-nope","endpoint":"/v1/chat/completions","completion_window":"24h"}`},
		{"wrong purpose", "", `{"input_file_id":"` + notBatch.ID + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`},
		{"bad endpoint", "", `{"input_file_id":"` + good.ID + `","endpoint":"/v1/completions","completion_window":"24h"}`},
		{"bad window", "", `{"input_file_id":"` + good.ID + `","endpoint":"/v1/chat/completions","completion_window":"1h"}`},
		{"not json", "not json", ""},
		{"no custom_id", `{"method":"POST","url":"/v1/chat/completions","body":{}}`, ""},
		{"duplicate custom_id", `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}` + "\n" + `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}`, ""},
		{"GET method", `{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{}}`, ""},
		{"other url", `{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{}}`, ""},
		{"body not an object", `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":[]}`, ""},
		{"empty", "\n\n", ""},
	} {
		body := tc.body
		if body == "" {
			f := upload(t, c, "in.jsonl", "batch", tc.content)
			body = `{"input_file_id":"` + f.ID + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
		}
		if status, _, b := do(t, r, "POST", "/v1/batches", body); status != 400 {
			t.Errorf("%s: %d %s", tc.why, status, b)
		}
	}

	b, err := c.Batches.New(ctx(t), openai.BatchNewParams{InputFileID: good.ID, Endpoint: "/v1/chat/completions", CompletionWindow: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Batches.Cancel(ctx(t), b.ID)
	if err != nil || got.Status != "cancelling" || got.CancellingAt == 0 {
		t.Fatalf("cancel: %v %s", err, got.RawJSON())
	}
	for range 2 {
		if got, err = c.Batches.Get(ctx(t), b.ID); err != nil || got.Status != "cancelled" || got.OutputFileID != "" || got.CancelledAt == 0 {
			t.Fatalf("GET after cancel: %v %s", err, got.RawJSON())
		}
	}
	if n := len(r.Ledger()); n != 0 {
		t.Errorf("cancelled batch billed: %+v", r.Ledger())
	}
	if status, _, _ := do(t, r, "GET", "/v1/batches/batch_nope", ""); status != 404 {
		t.Errorf("unknown batch: %d", status)
	}
	if status, _, _ := do(t, r, "DELETE", "/v1/batches/"+b.ID, ""); status != 405 {
		t.Errorf("DELETE batch: %d", status)
	}
}
