package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// Through the real Envoy, a project that captures gets its SDK stream merged
// into one answer in the usage event, redacted (a key the user pasted and
// the project's e-mail pattern); with tracing on, OpenAI receives a
// traceparent in the client's trace whose parent is the span the event
// names.
func TestCaptureAndTraceThroughEnvoy(t *testing.T) {
	s := startStack(t, stackOptions{env: map[string]string{"LLM_PROXY_TRACING": "on"}})
	p := s.createProject("capture", "sk-proj-capture-0123456789abcdef")
	s.mustManage("PATCH", "/manage/projects/"+p.ID, map[string]any{"capture": map[string]any{"enabled": true, "redact": []string{"email"}}}, 200, nil)
	tok := s.createToken(map[string]any{"project_id": p.ID, "name": "app"})

	const clientTrace, clientSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	const secret = "sk-proj-PastedByMistake0123456789abcdefXYZ"
	msg := "write to alice@example.com about " + secret
	var resp *http.Response
	stream := s.client(tok.Token).Chat.Completions.NewStreaming(context.Background(), chatParams(msg),
		option.WithHeader("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01"), option.WithResponseInto(&resp))
	var got strings.Builder
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) > 0 {
			got.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	stream.Close()
	if !strings.Contains(got.String(), "alice@example.com") {
		t.Fatalf("the fake echoes the prompt; got %q", got.String())
	}

	ev := s.waitEvent(t, p.ID, resp.Header.Get("x-request-id"))
	// The trace: the upstream's parent is the event's span, in the client's trace.
	var upstreamTP string
	for _, r := range s.upstream.Requests() {
		if r.Path == "/v1/chat/completions" {
			upstreamTP = r.Header.Get("traceparent")
		}
	}
	if ev.TraceId != clientTrace || ev.ParentSpanId != clientSpan || len(ev.SpanId) != 16 ||
		upstreamTP != "00-"+clientTrace+"-"+ev.SpanId+"-01" {
		t.Errorf("event trace %s span %s parent %s; upstream traceparent %q", ev.TraceId, ev.SpanId, ev.ParentSpanId, upstreamTP)
	}

	cp := ev.GetCapture()
	if cp == nil {
		t.Fatal("no capture in the event")
	}
	for _, leak := range []string{"PastedByMistake", "alice@example.com"} {
		if strings.Contains(cp.Request, leak) || strings.Contains(cp.Response, leak) {
			t.Errorf("%q left in the capture:\nrequest %s\nresponse %s", leak, cp.Request, cp.Response)
		}
	}
	var req struct {
		Messages []struct{ Content string } `json:"messages"`
	}
	if err := json.Unmarshal([]byte(cp.Request), &req); err != nil || len(req.Messages) != 1 ||
		req.Messages[0].Content != "write to [REDACTED] about [REDACTED]" {
		t.Errorf("captured request %s (%v)", cp.Request, err)
	}
	var merged openai.ChatCompletion
	if err := json.Unmarshal([]byte(cp.Response), &merged); err != nil || len(merged.Choices) != 1 {
		t.Fatalf("captured response %s (%v)", cp.Response, err)
	}
	want := strings.NewReplacer("alice@example.com", "[REDACTED]", secret, "[REDACTED]").Replace(got.String())
	if merged.Choices[0].Message.Content != want || merged.Choices[0].FinishReason != "stop" || merged.Object != "chat.completion" {
		t.Errorf("merged answer %q (finish %q, object %q), want %q", merged.Choices[0].Message.Content, merged.Choices[0].FinishReason, merged.Object, want)
	}
	if cp.ResponseTruncated || cp.RequestTruncated || !strings.HasPrefix(cp.ResponseContentType, "text/event-stream") || ev.ResponseModel != "gpt-4.1-mini" ||
		len(ev.FinishReasons) != 1 || ev.FinishReasons[0] != "stop" {
		t.Errorf("capture %+v, response model %q, finish reasons %q", cp, ev.ResponseModel, ev.FinishReasons)
	}
}
