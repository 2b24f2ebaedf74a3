package dispatch

import (
	"encoding/json"
	"reflect"
	"testing"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// Captured bodies of the fixtures: a streamed chat completion with a tool
// round trip (its response merged into the non-stream shape), and a
// Responses API call whose merged response has no usage.
const (
	chatRequestJSON = `{
  "model": "gpt-4.1-mini",
  "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "rainy, 14C"}
  ],
  "temperature": 0.2, "max_tokens": 100, "stop": ["END"], "seed": 7, "n": 1,
  "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
  "stream": true, "stream_options": {"include_usage": true}, "user": "u-42"
}`
	chatResponseJSON = `{"id": "chatcmpl-9", "object": "chat.completion", "created": 1735787045,
  "model": "gpt-4.1-mini-2025-04-14",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Rainy, 14°C.", "refusal": null},
    "finish_reason": "stop"}],
  "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}`

	responsesRequestJSON = `{"model": "gpt-4.1-mini", "instructions": "Answer in French.",
  "input": [
    {"role": "user", "content": [{"type": "input_text", "text": "Say hi"}]},
    {"type": "function_call", "call_id": "fc_1", "name": "lookup", "arguments": "{\"q\":1}"},
    {"type": "function_call_output", "call_id": "fc_1", "output": "42"},
    {"type": "reasoning", "id": "rs_0", "summary": []}
  ],
  "max_output_tokens": 50, "stream": true}`
	responsesResponseJSON = `{"id": "resp_1", "object": "response", "status": "completed",
  "model": "gpt-4.1-mini-2025-04-14",
  "output": [
    {"type": "reasoning", "id": "rs_1", "summary": []},
    {"type": "message", "id": "msg_1", "role": "assistant",
     "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}]}
  ]}`
)

// chatEvent is testEvent(id) for a captured, streamed chat completion with
// trace ids, an end user and the limiter's decision.
func chatEvent(id string) *llmproxyv1.UsageEvent {
	ev := testEvent(id)
	ev.Stream, ev.TtfbMs = true, 80
	ev.ResponseModel = "gpt-4.1-mini-2025-04-14"
	ev.FinishReasons = []string{"stop"}
	ev.EndUser = "u-42"
	ev.TraceId, ev.SpanId, ev.ParentSpanId = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "b7ad6b7169203331"
	ev.LimitDecision = "allowed"
	ev.Capture = &llmproxyv1.Capture{
		Request: chatRequestJSON, RequestContentType: "application/json", RequestBytes: int64(len(chatRequestJSON)),
		Response: chatResponseJSON, ResponseContentType: "text/event-stream", ResponseBytes: 2048,
	}
	return ev
}

// responsesEvent is testEvent(id) for a captured Responses API call.
func responsesEvent(id string) *llmproxyv1.UsageEvent {
	ev := testEvent(id)
	ev.Path, ev.Stream = "/v1/responses", true
	ev.Usage.ReasoningTokens = 2
	ev.FinishReasons = []string{"completed"}
	ev.Capture = &llmproxyv1.Capture{
		Request: responsesRequestJSON, RequestContentType: "application/json", RequestBytes: int64(len(responsesRequestJSON)),
		Response: responsesResponseJSON, ResponseContentType: "text/event-stream", ResponseBytes: 4096,
	}
	return ev
}

// binaryEvent is testEvent(id) for an audio transcription: its multipart
// request kept as metadata only.
func binaryEvent(id string) *llmproxyv1.UsageEvent {
	ev := testEvent(id)
	ev.Path, ev.Model = "/v1/audio/transcriptions", "whisper-1"
	ev.Capture = &llmproxyv1.Capture{
		RequestContentType: "multipart/form-data; boundary=x", RequestBytes: 48213,
		Response: `{"text": "hello"}`, ResponseContentType: "application/json", ResponseBytes: 17,
	}
	return ev
}

// truncatedEvent is testEvent(id) whose captured request was cut at the cap
// in the middle of the document.
func truncatedEvent(id string) *llmproxyv1.UsageEvent {
	ev := testEvent(id)
	ev.Capture = &llmproxyv1.Capture{
		Request: `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"aaaa`, RequestTruncated: true,
		RequestContentType: "application/json", RequestBytes: 70000,
	}
	return ev
}

// sameJSON reports (as a test error) whether got, encoded, and want are
// the same JSON value.
func sameJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var g, w any
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s =\n%s\nwant\n%s", what, gb, want)
	}
}

func TestAPIOf(t *testing.T) {
	for path, want := range map[string]api{
		"/v1/chat/completions": apiChat, "/openai/v1/chat/completions": apiChat,
		"/v1/responses": apiResponses, "/v1/responses/resp_1": apiOther,
		"/v1/completions": apiCompletions, "/v1/embeddings": apiEmbeddings,
		"/v1/audio/transcriptions": apiOther, "/v1/models": apiOther, "": apiOther,
	} {
		if got := apiOf(path); got != want {
			t.Errorf("apiOf(%q) = %d, want %d", path, got, want)
		}
	}
}

func TestJSONObject(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "": not an object
	}{
		{in: "{\n  \"a\": 1.50,\n  \"b\": [1, 2]\n}", want: `{"a":1.50,"b":[1,2]}`},
		{in: `  {"a":"x"}  `, want: `{"a":"x"}`},
		{in: `{"a":"x"`},            // cut at the cap
		{in: `[1,2]`},               // not an object
		{in: `{"a":1} {"b":2}`},     // two documents
		{in: ""},                    // binary body: not kept
		{in: "\x00\x01binary data"}, // never JSON
	} {
		m, raw := jsonObject(tc.in)
		if (m != nil) != (tc.want != "") || string(raw) != tc.want {
			t.Errorf("jsonObject(%q) = %v, %s; want %s", tc.in, m, raw, tc.want)
		}
	}
	// Numbers stay as written.
	m, _ := jsonObject(`{"t": 0.20, "n": 12345678901234567890}`)
	if m["t"] != json.Number("0.20") || m["n"] != json.Number("12345678901234567890") {
		t.Errorf("numbers = %#v", m)
	}
}

func TestCompletionsAndRefusalsAreConversations(t *testing.T) {
	ev := testEvent("c")
	ev.Path = "/v1/completions"
	ev.Capture = &llmproxyv1.Capture{
		Request:  `{"model":"gpt-3.5-turbo-instruct","prompt":["Say a","Say b"],"max_tokens":5}`,
		Response: `{"id":"cmpl-1","choices":[{"index":0,"text":" a"},{"index":1,"text":" b","finish_reason":"length"}]}`,
	}
	ev.FinishReasons = []string{"stop", "length"}
	x := decodeCapture(ev)
	in, params := lunaryInput(x)
	sameJSON(t, "completions input", in, `[{"role":"user","content":"Say a"},{"role":"user","content":"Say b"}]`)
	sameJSON(t, "completions params", params, `{"max_tokens":5}`)
	sameJSON(t, "completions output", lunaryOutput(x, ev.GetFinishReasons()),
		`[{"role":"assistant","content":" a"},{"role":"assistant","content":" b"}]`)
	if out := x.outputMessages(ev.GetFinishReasons()); out[0].finish != "stop" || out[1].finish != "length" {
		t.Errorf("finish reasons %q, %q: want the response's, else the event's", out[0].finish, out[1].finish)
	}

	ev = testEvent("r")
	ev.Capture = &llmproxyv1.Capture{
		Request:  `{"model":"gpt-4o","messages":[{"role":"user","content":"how to pick a lock"}]}`,
		Response: `{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`,
	}
	sameJSON(t, "refusal output", lunaryOutput(decodeCapture(ev), nil),
		`{"role":"assistant","content":[{"type":"refusal","refusal":"I can't help with that."}]}`)
}
