package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// heliconeLogged is what a fake Helicone received for one event: the path
// it was POSTed to and the body, raw and decoded.
type heliconeLogged struct {
	path string
	raw  []byte
	body map[string]any
}

// heliconeLogs is a fake Helicone logging API (both the OpenAI and the
// custom route) that checks the body against HeliconeAsyncLogRequest and
// keeps each log by event id.
func heliconeLogs(t *testing.T) (*receiver, func(id string) heliconeLogged) {
	logs := map[string]heliconeLogged{}
	var rc *receiver
	rc = newReceiver(t, func(r *http.Request, body []byte, problem func(string, ...any)) int {
		if r.Method != http.MethodPost || (r.URL.Path != "/oai/v1/log" && r.URL.Path != "/custom/v1/log") {
			problem("%s %s, want POST /oai/v1/log or /custom/v1/log", r.Method, r.URL.Path)
			return 404
		}
		if r.Header.Get("Authorization") != "Bearer sk-helicone-test" {
			return 401
		}
		var typed heliconeAsyncLogRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&typed); err != nil {
			problem("body does not match HeliconeAsyncLogRequest: %v: %s", err, body)
			return 400
		}
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		id := r.Header.Get(IdempotencyHeader)
		if rid := r.Header.Get("Helicone-Request-Id"); rid != RunID(id) {
			problem("Helicone-Request-Id %q for event %q", rid, id)
		}
		rc.mu.Lock()
		logs[id] = heliconeLogged{path: r.URL.Path, raw: body, body: m}
		rc.mu.Unlock()
		return 200
	})
	return rc, func(id string) heliconeLogged {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return logs[id]
	}
}

// TestHeliconeLogsCapturedRequestsAsOpenAI checks every field Helicone gets
// for captured requests: the OpenAI route, the request body as the client
// sent it, the response body with usage (added when missing, in the API's
// shape), the properties and the timing.
func TestHeliconeLogsCapturedRequestsAsOpenAI(t *testing.T) {
	rc, logged := heliconeLogs(t)
	h, err := NewHelicone(HeliconeOptions{URL: rc.URL, APIKey: "sk-helicone-test", UpstreamURL: "https://openai.internal:8443/", HTTPOptions: HTTPOptions{Concurrency: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for _, ev := range []*llmproxyv1.UsageEvent{chatEvent("chat"), responsesEvent("responses"), binaryEvent("binary"), truncatedEvent("truncated")} {
		entries = append(entries, Entry{ID: ev.Id, JSON: []byte(marshal(ev))})
	}
	if err := h.Deliver(context.Background(), entries); err != nil {
		t.Fatal(err)
	}

	chat := logged("chat")
	if chat.path != "/oai/v1/log" {
		t.Errorf("captured chat logged to %s, want the OpenAI route", chat.path)
	}
	chatReqBytes := strconv.Itoa(len(chatRequestJSON))
	sameJSON(t, "chat log", chat.body, `{
	  "providerRequest": {
	    "url": "https://openai.internal:8443/v1/chat/completions",
	    "json": `+chatRequestJSON+`,
	    "meta": {
	      "Helicone-User-Id": "u-42",
	      "Helicone-Property-Project-Id": "p1", "Helicone-Property-Token-Id": "tok_pub",
	      "Helicone-Property-Request-Id": "req-chat", "Helicone-Property-Method": "POST",
	      "Helicone-Property-Path": "/v1/chat/completions", "Helicone-Property-Usage-Source": "provider",
	      "Helicone-Property-Cache-Status": "miss", "Helicone-Property-Outcome": "forwarded",
	      "Helicone-Property-Price-Version": "2025-01", "Helicone-Property-Event-Id": "chat",
	      "Helicone-Property-Cost-Usd": "0.0001", "Helicone-Property-Response-Model": "gpt-4.1-mini-2025-04-14",
	      "Helicone-Property-Finish-Reasons": "stop", "Helicone-Property-End-User": "u-42",
	      "Helicone-Property-Trace-Id": "4bf92f3577b34da6a3ce929d0e0e4736", "Helicone-Property-Limit-Decision": "allowed",
	      "Helicone-Property-Request-Truncated": "false", "Helicone-Property-Response-Truncated": "false",
	      "Helicone-Property-Request-Bytes": "`+chatReqBytes+`", "Helicone-Property-Response-Bytes": "2048",
	      "Helicone-Property-Request-Content-Type": "application/json",
	      "Helicone-Property-Response-Content-Type": "text/event-stream"
	    }
	  },
	  "providerResponse": {
	    "headers": {"content-type": "application/json", "x-request-id": "req-chat"},
	    "status": 200,
	    "json": `+chatResponseJSON+`
	  },
	  "timing": {"startTime": {"seconds": 1735787045, "milliseconds": 678},
	             "endTime": {"seconds": 1735787045, "milliseconds": 928}, "timeToFirstToken": 80}
	}`)
	// The response body travels on one line, which Helicone reads whether
	// or not it parses a streamed request's answer as server-sent events.
	var wire struct {
		ProviderResponse struct {
			JSON json.RawMessage `json:"json"`
		} `json:"providerResponse"`
	}
	if err := json.Unmarshal(chat.raw, &wire); err != nil || bytes.ContainsAny(wire.ProviderResponse.JSON, "\n\r") {
		t.Errorf("response json is not one line: %s (%v)", wire.ProviderResponse.JSON, err)
	}

	// The merged Responses API answer had no usage: the event's is added in
	// that API's shape.
	resp := logged("responses")
	if resp.path != "/oai/v1/log" {
		t.Errorf("responses logged to %s", resp.path)
	}
	pr := obj(resp.body["providerRequest"])
	sameJSON(t, "responses request", pr["json"], responsesRequestJSON)
	if pr["url"] != "https://openai.internal:8443/v1/responses" {
		t.Errorf("responses url %v", pr["url"])
	}
	sameJSON(t, "responses response", obj(resp.body["providerResponse"])["json"], `{"id": "resp_1", "object": "response", "status": "completed",
	  "model": "gpt-4.1-mini-2025-04-14",
	  "output": [
	    {"type": "reasoning", "id": "rs_1", "summary": []},
	    {"type": "message", "id": "msg_1", "role": "assistant",
	     "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}]}
	  ],
	  "usage": {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17,
	    "input_tokens_details": {"cached_tokens": 4}, "output_tokens_details": {"reasoning_tokens": 2}}}`)

	// A multipart request is metadata only: the custom route, usage only.
	bin := logged("binary")
	if bin.path != "/custom/v1/log" {
		t.Errorf("binary logged to %s, want the custom route", bin.path)
	}
	pr = obj(bin.body["providerRequest"])
	sameJSON(t, "binary request", pr["json"], `{"model": "whisper-1", "stream": false}`)
	sameJSON(t, "binary response", obj(bin.body["providerResponse"])["json"],
		`{"model": "whisper-1", "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "prompt_tokens_details": {"cached_tokens": 4}}}`)
	meta := obj(pr["meta"])
	if pr["url"] != "custom-model-nopath" || meta["Helicone-Property-Request-Content-Type"] != "multipart/form-data; boundary=x" ||
		meta["Helicone-Property-Request-Bytes"] != "48213" || meta["Helicone-User-Id"] != "tok_pub" {
		t.Errorf("binary request = %v", pr)
	}

	// A request cut mid-document is not sent either; the flag says why.
	tr := logged("truncated")
	pr = obj(tr.body["providerRequest"])
	if tr.path != "/custom/v1/log" || obj(pr["meta"])["Helicone-Property-Request-Truncated"] != "true" {
		t.Errorf("truncated: %s %v", tr.path, pr)
	}
	sameJSON(t, "truncated request", pr["json"], `{"model": "gpt-4.1-mini", "stream": false}`)
}
