package extproc

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/policy"
)

const tokCapture = "llmp_capture"

// withCapture adds tokCapture, whose project captures bodies with the given
// settings.
func withCapture(c policy.Capture) func(*harness, *Options) {
	return func(h *harness, _ *Options) {
		p := h.auth.principals[tokFree]
		p.TokenID, p.Capture = "tok_capture", c
		h.auth.principals[tokCapture] = p
	}
}

// A secret split across the client's JSON escapes and a project pattern.
const (
	secretKey   = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789"
	captureBody = `{"model":"gpt-4o-mini","user":"u-7","messages":[{"role":"user","content":"mail bob@example.com, key sk-pro\u006a-Abcdefghijklmnopqrstuvwxyz0123456789"}]}`
)

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, s)
	}
	return m
}

// A non-streamed chat: both bodies land in the event, redacted (the key the
// client wrote with a JSON escape, and the project's e-mail pattern), with
// the end user, the answering model and the finish reason.
func TestCaptureChat(t *testing.T) {
	h := newHarness(t, withCapture(policy.Capture{Enabled: true, Redact: []string{"email"}}))
	c := h.open()
	c.send(reqHeaders("POST", "/v1/chat/completions", tokCapture, "content-length", "150"))
	c.send(reqBody(captureBody))
	resp := c.send(respHeaders(200, "content-type", "application/json", "content-length", "300"))
	if got := modeString(resp.GetModeOverride()); got != "req_body=NONE resp_headers=SEND resp_body=BUFFERED" {
		t.Errorf("response mode %q", got)
	}
	answer := `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"reply to carol@example.org"},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":5,"total_tokens":25}}`
	c.send(respBody(answer, true))
	ev := c.end()

	cp := ev.GetCapture()
	if cp == nil {
		t.Fatal("no capture in the event")
	}
	if strings.Contains(cp.Request, "Abcdefghijklmnopqrstuvwxyz") || strings.Contains(cp.Request, "bob@example.com") {
		t.Errorf("secret or e-mail left in the captured request: %s", cp.Request)
	}
	req := decodeJSON(t, cp.Request)
	msg := req["messages"].([]any)[0].(map[string]any)["content"]
	if msg != "mail [REDACTED], key [REDACTED]" {
		t.Errorf("captured message %q", msg)
	}
	got := decodeJSON(t, cp.Response)
	if got["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"] != "reply to [REDACTED]" {
		t.Errorf("captured response %s", cp.Response)
	}
	if cp.RequestTruncated || cp.ResponseTruncated || cp.RequestBytes != int64(len(captureBody)) || cp.ResponseBytes != int64(len(answer)) ||
		cp.RequestContentType != "application/json" || cp.ResponseContentType != "application/json" {
		t.Errorf("capture metadata %+v", cp)
	}
	if ev.EndUser != "u-7" || ev.ResponseModel != "gpt-4o-mini-2024-07-18" || !reflect.DeepEqual(ev.FinishReasons, []string{"stop"}) {
		t.Errorf("end user %q, response model %q, finish reasons %q", ev.EndUser, ev.ResponseModel, ev.FinishReasons)
	}
}

// A stream is merged into one chat.completion as it passes: content split
// across chunks (a secret too), a tool call whose arguments arrive in
// pieces, and the finish reason.
func TestCaptureStreamMerged(t *testing.T) {
	h := newHarness(t, withCapture(policy.Capture{Enabled: true}))
	c := h.open()
	c.send(reqHeaders("POST", "/v1/chat/completions", tokCapture))
	c.send(reqBody(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	resp := c.send(respHeaders(200, "content-type", "text/event-stream"))
	if got := modeString(resp.GetModeOverride()); got != "req_body=NONE resp_headers=SEND resp_body=STREAMED" {
		t.Errorf("response mode %q", got)
	}
	chunk := func(delta, finish string) string {
		f := "null"
		if finish != "" {
			f = `"` + finish + `"`
		}
		return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + f + "}]}\n\n"
	}
	stream := chunk(`{"role":"assistant","content":"key "}`, "") +
		chunk(`{"content":"sk-proj-Abcdefghij"}`, "") +
		chunk(`{"content":"klmnopqrstuvwxyz0123456789 done"}`, "") +
		chunk(`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":"}}]}`, "") +
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"\"x\"}"}}]}`, "") +
		chunk(`{}`, "tool_calls") + "data: [DONE]\n\n"
	// Split at odd places, mid-event and mid-secret.
	for i, part := range []string{stream[:37], stream[37:400], stream[400:401], stream[401:]} {
		c.send(respBody(part, i == 3))
	}
	ev := c.end()
	cp := ev.GetCapture()
	got := decodeJSON(t, cp.GetResponse())
	msg := got["choices"].([]any)[0].(map[string]any)
	m := msg["message"].(map[string]any)
	if m["content"] != "key [REDACTED] done" || msg["finish_reason"] != "tool_calls" || got["object"] != "chat.completion" {
		t.Errorf("merged response %s", cp.GetResponse())
	}
	calls, _ := m["tool_calls"].([]any)
	if len(calls) != 1 || calls[0].(map[string]any)["function"].(map[string]any)["arguments"] != `{"q":"x"}` {
		t.Errorf("tool calls %v", m["tool_calls"])
	}
	if cp.ResponseTruncated || cp.ResponseBytes != int64(len(stream)) || cp.ResponseContentType != "text/event-stream" {
		t.Errorf("capture metadata %+v", cp)
	}
	if ev.ResponseModel != "gpt-4o-mini-2024-07-18" || !reflect.DeepEqual(ev.FinishReasons, []string{"tool_calls"}) {
		t.Errorf("response model %q, finish reasons %q", ev.ResponseModel, ev.FinishReasons)
	}
}

// Bodies over the caps are cut and marked; a binary response is recorded by
// type and size only, and its body is not asked for.
func TestCaptureCapsAndBinary(t *testing.T) {
	h := newHarness(t, withCapture(policy.Capture{Enabled: true, RequestMaxBytes: 40}))
	body := `{"model":"tts-1","input":"` + strings.Repeat("a", 100) + `","voice":"alloy"}`
	c := h.open()
	c.send(reqHeaders("POST", "/v1/audio/speech", tokCapture))
	c.send(reqBody(body))
	resp := c.send(respHeaders(200, "content-type", "audio/mpeg", "content-length", "4096"))
	if got := modeString(resp.GetModeOverride()); got != "" {
		t.Errorf("response mode %q: an audio body is not read for capture", got)
	}
	ev := c.end()
	cp := ev.GetCapture()
	if !cp.RequestTruncated || len(cp.Request) > 40 || !strings.HasPrefix(body, cp.Request) || cp.RequestBytes != int64(len(body)) {
		t.Errorf("request capture %q truncated=%t bytes=%d", cp.Request, cp.RequestTruncated, cp.RequestBytes)
	}
	if cp.Response != "" || cp.ResponseContentType != "audio/mpeg" || cp.ResponseBytes != 4096 {
		t.Errorf("response capture %+v", cp)
	}
}

// Without capture nothing is kept and the event has no capture.
func TestNoCaptureByDefault(t *testing.T) {
	h := newHarness(t)
	c := h.open()
	c.send(reqHeaders("POST", "/v1/chat/completions", tokFree))
	c.send(reqBody(captureBody))
	c.send(respHeaders(200, "content-type", "application/json"))
	c.send(respBody(`{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, true))
	ev := c.end()
	if ev.Capture != nil || ev.ResponseModel != "" || ev.FinishReasons != nil {
		t.Errorf("capture %v, response model %q, finish reasons %q without capture or tracing", ev.Capture, ev.ResponseModel, ev.FinishReasons)
	}
	if ev.EndUser != "u-7" {
		t.Errorf("end user %q", ev.EndUser)
	}
}

// A Responses API stream is captured as the final response object the
// stream ends with, its status as the finish reason; a key the model
// echoes is redacted in it too.
func TestCaptureResponsesStream(t *testing.T) {
	h := newHarness(t, withCapture(policy.Capture{Enabled: true}))
	c := h.open()
	c.send(reqHeaders("POST", "/v1/responses", tokCapture))
	c.send(reqBody(`{"model":"gpt-4.1-mini","stream":true,"input":"say hi"}`))
	c.send(respHeaders(200, "content-type", "text/event-stream"))
	event := func(typ, data string) string { return "event: " + typ + "\ndata: " + data + "\n\n" }
	final := `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-4.1-mini-2025-04-14",` +
		`"output":[{"id":"msg_1","type":"message","role":"assistant","status":"completed","content":[{"type":"output_text","text":"hi ` + secretKey + `","annotations":[]}]}],` +
		`"usage":{"input_tokens":5,"output_tokens":3,"total_tokens":8}}`
	stream := event("response.created", `{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1,"status":"in_progress","model":"gpt-4.1-mini-2025-04-14","output":[]}}`) +
		event("response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"hi "}`) +
		event("response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"`+secretKey+`"}`) +
		event("response.completed", `{"type":"response.completed","sequence_number":3,"response":`+final+`}`)
	c.send(respBody(stream[:100], false))
	c.send(respBody(stream[100:], true))
	ev := c.end()
	got := decodeJSON(t, ev.GetCapture().GetResponse())
	text := got["output"].([]any)[0].(map[string]any)["content"].([]any)[0].(map[string]any)["text"]
	if got["id"] != "resp_1" || got["status"] != "completed" || text != "hi [REDACTED]" {
		t.Errorf("captured response %s", ev.GetCapture().GetResponse())
	}
	if ev.ResponseModel != "gpt-4.1-mini-2025-04-14" || !reflect.DeepEqual(ev.FinishReasons, []string{"completed"}) {
		t.Errorf("response model %q, finish reasons %q", ev.ResponseModel, ev.FinishReasons)
	}
}
