package fakeopenai_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

func respParams(input string) responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Model: "gpt-4.1",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(input)},
	}
}

func TestResponsesNonStream(t *testing.T) {
	r := start(t)
	c := sdk(r, option.WithHeader("x-fake-cached-tokens", "4"), option.WithHeader("x-fake-reasoning-tokens", "9"))
	p := respParams("hello   there world")
	p.Instructions = openai.String("be brief")
	res, err := c.Responses.New(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.ID, "resp_") || res.Object != "response" || res.Status != "completed" || res.Model != "gpt-4.1" || res.CreatedAt == 0 || res.Background {
		t.Errorf("response %s %s %s %s %v %v", res.ID, res.Object, res.Status, res.Model, res.CreatedAt, res.Background)
	}
	if got := res.OutputText(); got != fakeopenai.EchoReply("hello there world") {
		t.Errorf("output text %q", got)
	}
	if len(res.Output) != 1 || res.Output[0].Type != "message" || res.Output[0].Role != "assistant" || res.Output[0].Status != "completed" {
		t.Errorf("output %+v", res.Output)
	}
	in := int64(fakeopenai.PromptTokens("be brief", "hello   there world"))
	u := res.Usage
	if u.InputTokens != in || u.InputTokensDetails.CachedTokens != 4 || u.OutputTokens != 4+9 ||
		u.OutputTokensDetails.ReasoningTokens != 9 || u.TotalTokens != in+13 {
		t.Errorf("usage %+v", u)
	}
	want := fakeopenai.Charge{Key: testKey, Family: fakeopenai.FamilyResponses, Model: "gpt-4.1",
		PromptTokens: in, CachedTokens: 4, CompletionTokens: 13, ReasoningTokens: 9}
	if led := r.Ledger(); len(led) != 1 || led[0] != want {
		t.Errorf("ledger %+v, want %+v", led, want)
	}

	// Stored (store defaults to true): GET answers the same, without billing.
	got, err := c.Responses.Get(ctx(t), res.ID, responses.ResponseGetParams{})
	if err != nil || got.Status != "completed" || got.OutputText() != res.OutputText() || got.Usage.TotalTokens != u.TotalTokens {
		t.Errorf("GET: %v %+v", err, got)
	}
	if n := len(r.Ledger()); n != 1 {
		t.Errorf("%d charges after a GET", n)
	}
}

func TestResponsesInputItemsAndLimits(t *testing.T) {
	r := start(t)
	body := `{"model":"gpt-4.1","max_output_tokens":2,"store":true,"input":[
		{"role":"system","content":"you help"},
		{"type":"message","role":"user","content":[{"type":"input_text","text":"first part"},{"type":"input_image","image_url":"x"},{"type":"input_text","text":"second"}]},
		{"type":"function_call_output","call_id":"c","output":"ignored"}
	]}`
	status, _, b := do(t, r, "POST", "/v1/responses", body, "x-fake-words", "10")
	if status != 200 {
		t.Fatalf("status %d: %s", status, b)
	}
	var res responses.Response
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Status != "incomplete" || res.IncompleteDetails.Reason != "max_output_tokens" || res.OutputText() != fakeopenai.WordsReply(2) ||
		res.Output[0].Status != "incomplete" || res.MaxOutputTokens != 2 {
		t.Errorf("limited response: %s", b)
	}
	if in := int64(fakeopenai.PromptTokens("you help", "first part second")); res.Usage.InputTokens != in || res.Usage.OutputTokens != 2 {
		t.Errorf("usage %+v, want input %d", res.Usage, in)
	}

	status, _, b = do(t, r, "GET", "/v1/responses/"+res.ID+"/input_items?order=asc", "")
	items := mustJSON[struct {
		Object string `json:"object"`
		Data   []struct {
			Type    string `json:"type"`
			Role    string `json:"role"`
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		} `json:"data"`
		HasMore bool `json:"has_more"`
	}](t, b)
	if status != 200 || items.Object != "list" || len(items.Data) != 2 || items.Data[1].Role != "user" ||
		items.Data[1].Content[0].Text != "first part second" || items.HasMore {
		t.Errorf("input_items %d %s", status, b)
	}

	for _, tc := range []struct{ body, why string }{
		{`{"input":"x"}`, "no model"},
		{`{"model":"m"}`, "no input"},
		{`{"model":"m","input":3}`, "bad input"},
		{`{"model":"m","input":"x","background":true,"store":false}`, "background without store"},
	} {
		if status, _, b := do(t, r, "POST", "/v1/responses", tc.body); status != 400 {
			t.Errorf("%s: %d %s", tc.why, status, b)
		}
	}
	// store false: not retrievable.
	_, _, b = do(t, r, "POST", "/v1/responses", `{"model":"m","input":"x","store":false}`)
	id := mustJSON[struct{ ID string }](t, b).ID
	if status, _, b := do(t, r, "GET", "/v1/responses/"+id, ""); status != 404 || !strings.Contains(string(b), `"type":"invalid_request_error"`) {
		t.Errorf("GET of an unstored response: %d %s", status, b)
	}
	if status, _, _ := do(t, r, "PUT", "/v1/responses/"+id, ""); status != 405 {
		t.Errorf("PUT: %d", status)
	}
}

func TestResponsesStream(t *testing.T) {
	r := start(t)
	c := sdk(r, option.WithHeader("x-fake-reasoning-tokens", "3"))
	msg := "stream these words"
	st := c.Responses.NewStreaming(ctx(t), respParams(msg))
	var types []string
	var deltas strings.Builder
	var final responses.Response
	for i := 0; st.Next(); i++ {
		ev := st.Current()
		if ev.SequenceNumber != int64(i) {
			t.Errorf("event %d has sequence_number %d", i, ev.SequenceNumber)
		}
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_text.delta":
			deltas.WriteString(ev.Delta)
		case "response.completed":
			final = ev.Response
		case "response.created", "response.in_progress":
			if ev.Response.Status != "in_progress" || len(ev.Response.Output) != 0 {
				t.Errorf("%s: %+v", ev.Type, ev.Response)
			}
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	reply := fakeopenai.EchoReply(msg)
	words := strings.Fields(reply)
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	for range words {
		want = append(want, "response.output_text.delta")
	}
	want = append(want, "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed")
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Errorf("events %v\nwant   %v", types, want)
	}
	in := int64(fakeopenai.PromptTokens(msg))
	if deltas.String() != reply || final.OutputText() != reply || final.Status != "completed" ||
		final.Usage.InputTokens != in || final.Usage.OutputTokens != int64(len(words))+3 {
		t.Errorf("deltas %q, final %q %s usage %+v", deltas.String(), final.OutputText(), final.Status, final.Usage)
	}
	wantCharge := fakeopenai.Charge{Key: testKey, Family: fakeopenai.FamilyResponses, Model: "gpt-4.1", Stream: true,
		PromptTokens: in, CompletionTokens: int64(len(words)) + 3, ReasoningTokens: 3}
	if led, err := r.WaitLedger(ctx(t), 1); err != nil || led[0] != wantCharge {
		t.Errorf("ledger %+v (%v), want %+v", led, err, wantCharge)
	}

	// The wire format: an event: line before each data: line.
	req, _ := http.NewRequestWithContext(ctx(t), "POST", r.URL()+"/v1/responses", strings.NewReader(`{"model":"m","input":"a b","stream":true}`))
	res, err := r.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 3 || lines[0] != "event: response.created" || !strings.HasPrefix(lines[1], `data: {"type":"response.created","sequence_number":0,`) || lines[2] != "" {
		t.Errorf("wire: %q", lines[:min(3, len(lines))])
	}
}

func TestResponsesStreamBreakBills(t *testing.T) {
	r := start(t)
	msg := "a b c d"
	// Events: created, in_progress, item added, part added, then deltas: the
	// break after 6 events leaves two deltas written.
	req, _ := http.NewRequestWithContext(ctx(t), "POST", r.URL()+"/v1/responses", strings.NewReader(`{"model":"m","input":"`+msg+`","stream":true}`))
	req.Header.Set("X-Fake-Break", "after-6")
	res, err := r.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil || strings.Count(string(b), "\n\n") != 6 {
		t.Fatalf("read %q, %v; want 6 events and an error", b, err)
	}
	led, err := r.WaitLedger(ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if ch := led[0]; !ch.Stream || ch.PromptTokens != int64(fakeopenai.PromptTokens(msg)) || ch.CompletionTokens != 2 {
		t.Errorf("charge %+v", ch)
	}
}

func TestResponsesBackground(t *testing.T) {
	r := start(t)
	c := sdk(r)
	p := respParams("run in the background")
	p.Background = openai.Bool(true)
	res, err := c.Responses.New(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "queued" || !res.Background || len(res.Output) != 0 || res.JSON.Usage.Raw() != "null" {
		t.Fatalf("created: status %s background %v output %d usage %s", res.Status, res.Background, len(res.Output), res.JSON.Usage.Raw())
	}
	if n := len(r.Ledger()); n != 0 {
		t.Fatalf("billed %d before completion", n)
	}
	got, err := c.Responses.Get(ctx(t), res.ID, responses.ResponseGetParams{})
	if err != nil || got.Status != "in_progress" || got.JSON.Usage.Raw() != "null" {
		t.Fatalf("GET 1: %v %s", err, got.Status)
	}
	if n := len(r.Ledger()); n != 0 {
		t.Fatalf("billed %d while in progress", n)
	}
	got, err = c.Responses.Get(ctx(t), res.ID, responses.ResponseGetParams{})
	reply := fakeopenai.EchoReply("run in the background")
	if err != nil || got.Status != "completed" || got.OutputText() != reply || got.Usage.OutputTokens != int64(fakeopenai.CountWords(reply)) {
		t.Fatalf("GET 2: %v %s %q", err, got.Status, got.OutputText())
	}
	for range 2 { // later GETs neither change nor bill it
		if got, err = c.Responses.Get(ctx(t), res.ID, responses.ResponseGetParams{}); err != nil || got.Status != "completed" {
			t.Fatalf("GET again: %v %s", err, got.Status)
		}
	}
	want := fakeopenai.Charge{Key: testKey, Family: fakeopenai.FamilyResponses, Model: "gpt-4.1", Background: true,
		PromptTokens: int64(fakeopenai.PromptTokens("run in the background")), CompletionTokens: int64(fakeopenai.CountWords(reply))}
	if led := r.Ledger(); len(led) != 1 || led[0] != want {
		t.Errorf("ledger %+v, want one %+v", led, want)
	}
	// Cancelling a finished one answers it unchanged.
	if got, err = c.Responses.Cancel(ctx(t), res.ID); err != nil || got.Status != "completed" || got.OutputText() != reply {
		t.Errorf("cancel after completion: %v %s", err, got.Status)
	}

	// SetBackgroundPolls(3): two in_progress GETs, then completed.
	r.SetBackgroundPolls(3)
	res, err = c.Responses.New(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"in_progress", "in_progress", "completed"} {
		if got, err = c.Responses.Get(ctx(t), res.ID, responses.ResponseGetParams{}); err != nil || string(got.Status) != want {
			t.Fatalf("GET %d: %v %s, want %s", i+1, err, got.Status, want)
		}
	}
	if n := len(r.Ledger()); n != 2 {
		t.Errorf("%d charges, want 2", n)
	}
}

func TestResponsesCancelAndDelete(t *testing.T) {
	r := start(t)
	c := sdk(r)
	p := respParams("cancel me")
	p.Background = openai.Bool(true)
	res, err := c.Responses.New(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Responses.Get(ctx(t), res.ID, responses.ResponseGetParams{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Responses.Cancel(ctx(t), res.ID)
	if err != nil || got.Status != "cancelled" || len(got.Output) != 0 || got.JSON.Usage.Raw() != "null" {
		t.Fatalf("cancel: %v %+v", err, got)
	}
	for range 3 {
		if got, err = c.Responses.Get(ctx(t), res.ID, responses.ResponseGetParams{}); err != nil || got.Status != "cancelled" {
			t.Fatalf("GET after cancel: %v %s", err, got.Status)
		}
	}
	if n := len(r.Ledger()); n != 0 {
		t.Errorf("cancelled response billed: %+v", r.Ledger())
	}

	// A synchronous response cannot be cancelled.
	sync, err := c.Responses.New(ctx(t), respParams("sync"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Responses.Cancel(ctx(t), sync.ID); err == nil {
		t.Error("cancelled a synchronous response")
	}

	// DELETE answers OpenAI's shape; the response is gone; a deleted
	// queued background response is never billed.
	queued, err := c.Responses.New(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	r.ResetLedger()
	for _, id := range []string{sync.ID, queued.ID} {
		status, _, b := do(t, r, "DELETE", "/v1/responses/"+id, "")
		if status != 200 || string(b) != `{"id":"`+id+`","object":"response","deleted":true}`+"\n" {
			t.Errorf("DELETE %s: %d %s", id, status, b)
		}
		if status, _, _ := do(t, r, "GET", "/v1/responses/"+id, ""); status != 404 {
			t.Errorf("GET after DELETE: %d", status)
		}
	}
	if status, _, _ := do(t, r, "DELETE", "/v1/responses/resp_nope", ""); status != 404 {
		t.Errorf("DELETE unknown: %d", status)
	}
	if status, _, _ := do(t, r, "POST", "/v1/responses/resp_nope/cancel", ""); status != 404 {
		t.Errorf("cancel unknown: %d", status)
	}
	if n := len(r.Ledger()); n != 0 {
		t.Errorf("deleted work billed: %+v", r.Ledger())
	}
}
