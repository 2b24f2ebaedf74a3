package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// lunaryRuns is a fake Lunary ingest endpoint that checks each run event
// against Lunary's Event schema (checkLunaryEvent) and keeps them by runId
// and event ("start", "end", "error").
func lunaryRuns(t *testing.T) (*receiver, func(runID, event string) map[string]any) {
	events := map[string]map[string]any{}
	rc := newReceiver(t, func(r *http.Request, body []byte, problem func(string, ...any)) int {
		if r.URL.Path != "/v1/runs/ingest" || r.Header.Get("Authorization") != "Bearer lunary-project-key" {
			problem("%s %s with %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
			return 401
		}
		var b struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			problem("body: %v", err)
			return 400
		}
		for _, ev := range b.Events {
			checkLunaryEvent(t, ev)
			events[fmt.Sprint(ev["runId"], "/", ev["event"])] = ev
		}
		return 200
	})
	return rc, func(runID, event string) map[string]any {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return events[runID+"/"+event]
	}
}

// TestLunaryRunsCarryTheConversation checks every field of the run events
// Lunary gets for captured requests: the conversation in Lunary's message
// format as input, the request's settings as params, the assistant's
// message as output, tags, the end user and the metadata.
func TestLunaryRunsCarryTheConversation(t *testing.T) {
	rc, run := lunaryRuns(t)
	l, err := NewLunary(LunaryOptions{URL: rc.URL, APIKey: "lunary-project-key"})
	if err != nil {
		t.Fatal(err)
	}
	failed := testEvent("failed")
	failed.Status, failed.Outcome, failed.ErrorCode, failed.Usage = 400, "error", "context_length_exceeded", nil
	failed.Capture = &llmproxyv1.Capture{
		Request:  `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"long"}]}`,
		Response: `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","code":"context_length_exceeded"}}`,
	}
	var entries []Entry
	for _, ev := range []*llmproxyv1.UsageEvent{chatEvent("chat"), responsesEvent("responses"), binaryEvent("binary"), truncatedEvent("truncated"), failed} {
		entries = append(entries, Entry{ID: ev.Id, JSON: []byte(marshal(ev))})
	}
	if err := l.Deliver(context.Background(), entries); err != nil {
		t.Fatal(err)
	}

	chatReqBytes := strconv.Itoa(len(chatRequestJSON))
	sameJSON(t, "chat start", run(RunID("chat"), "start"), `{
	  "type": "llm", "event": "start", "runId": "`+RunID("chat")+`", "timestamp": "2025-01-02T03:04:05.678Z",
	  "name": "gpt-4.1-mini", "userId": "u-42", "runtime": "llm-proxy-dispatch",
	  "tags": ["project:p1", "token:tok_pub"],
	  "metadata": {"event_id": "chat", "request_id": "req-chat", "project_id": "p1", "token_id": "tok_pub",
	    "method": "POST", "path": "/v1/chat/completions", "status": 200, "stream": true, "cache_status": "miss",
	    "outcome": "forwarded", "usage_source": "provider", "cost_usd": 0.0001, "price_version": "2025-01",
	    "ttfb_ms": 80, "response_model": "gpt-4.1-mini-2025-04-14", "finish_reasons": ["stop"], "end_user": "u-42",
	    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "limit_decision": "allowed",
	    "request_truncated": false, "response_truncated": false, "request_bytes": `+chatReqBytes+`, "response_bytes": 2048,
	    "request_content_type": "application/json", "response_content_type": "text/event-stream"},
	  "input": [
	    {"role": "system", "content": "You are terse."},
	    {"role": "user", "content": "Weather in Paris?"},
	    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
	      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
	    {"role": "tool", "content": "rainy, 14C", "tool_call_id": "call_1"}
	  ],
	  "params": {"temperature": 0.2, "max_tokens": 100, "stop": ["END"], "seed": 7, "n": 1,
	    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
	}`)
	sameJSON(t, "chat end", run(RunID("chat"), "end"), `{
	  "type": "llm", "event": "end", "runId": "`+RunID("chat")+`", "timestamp": "2025-01-02T03:04:05.928Z",
	  "name": "gpt-4.1-mini", "tokensUsage": {"prompt": 12, "completion": 5, "promptCached": 4},
	  "output": {"role": "assistant", "content": "Rainy, 14°C."}
	}`)

	start := run(RunID("responses"), "start")
	sameJSON(t, "responses input", start["input"], `[
	  {"role": "system", "content": "Answer in French."},
	  {"role": "user", "content": "Say hi"},
	  {"role": "assistant", "tool_calls": [{"id": "fc_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]},
	  {"role": "tool", "content": "42", "tool_call_id": "fc_1"}
	]`)
	sameJSON(t, "responses params", start["params"], `{"max_output_tokens": 50}`)
	sameJSON(t, "responses output", run(RunID("responses"), "end")["output"], `{"role": "assistant", "content": "Bonjour"}`)

	// A multipart request is metadata only; its JSON answer is the output.
	start = run(RunID("binary"), "start")
	if _, ok := start["input"]; ok {
		t.Errorf("binary request sent as input: %v", start["input"])
	}
	if _, ok := start["params"]; ok {
		t.Errorf("binary request sent params: %v", start["params"])
	}
	md := obj(start["metadata"])
	if md["request_content_type"] != "multipart/form-data; boundary=x" || md["request_bytes"] != 48213.0 ||
		md["response_content_type"] != "application/json" || md["response_bytes"] != 17.0 || start["name"] != "whisper-1" {
		t.Errorf("binary start = %v", start)
	}
	sameJSON(t, "binary output", run(RunID("binary"), "end")["output"], `{"text": "hello"}`)

	// A request cut mid-document is not sent; the flag says why.
	start = run(RunID("truncated"), "start")
	if _, ok := start["input"]; ok || obj(start["metadata"])["request_truncated"] != true || obj(start["metadata"])["request_bytes"] != 70000.0 {
		t.Errorf("truncated start = %v", start)
	}
	if _, ok := run(RunID("truncated"), "end")["output"]; ok {
		t.Error("output without a captured response")
	}

	sameJSON(t, "error", run(RunID("failed"), "error"), `{
	  "type": "llm", "event": "error", "runId": "`+RunID("failed")+`", "timestamp": "2025-01-02T03:04:05.928Z",
	  "name": "gpt-4.1-mini",
	  "error": {"message": "HTTP 400: context_length_exceeded: This model's maximum context length is 8192 tokens."}
	}`)
	sameJSON(t, "error start input", run(RunID("failed"), "start")["input"], `[{"role": "user", "content": "long"}]`)
}
