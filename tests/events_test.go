package tests

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// TestUsageEventsAndAudit: one usage event per request — forwarded, streamed,
// aborted, denied — carrying the request id the client saw; security denials
// and management operations in the audit log, once each, with Envoy's view of
// the client address whatever X-Forwarded-For says.
func TestUsageEventsAndAudit(t *testing.T) {
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	p := s.createProject("events", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	revoked := s.createToken(map[string]any{"project_id": p.ID})
	s.mustManage("DELETE", "/manage/tokens/"+revoked.ID, nil, 200, nil)

	// A plain chat: the event's request id is the one the client received.
	var httpResp *http.Response
	if _, err := s.client(tok.Token).Chat.Completions.New(ctx, chatParams("hello events"), option.WithResponseInto(&httpResp)); err != nil {
		t.Fatal(err)
	}
	chatID := httpResp.Header.Get("X-Request-Id")

	// A long, slow stream the client abandons after three chunks.
	actx, cancel := context.WithCancel(ctx)
	stream := s.client(tok.Token).Chat.Completions.NewStreaming(actx, chatParams("go on"),
		option.WithHeader("x-fake-words", "200"), option.WithHeader("x-fake-chunk-delay", "50ms"), option.WithResponseInto(&httpResp))
	for i := range 3 {
		if !stream.Next() {
			t.Fatalf("chunk %d: %v", i, stream.Err())
		}
	}
	abortedID := httpResp.Header.Get("X-Request-Id")
	cancel()
	stream.Close()

	// Denials, one with a spoofed X-Forwarded-For.
	req, _ := http.NewRequest("GET", s.envoyURL+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer llmp_"+strings.Repeat("Z", 43))
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	unknownID := resp.Header.Get("X-Request-Id")
	if r := send(t, "GET", s.envoyURL+"/v1/models", revoked.Token, ""); r.status != 401 {
		t.Fatalf("revoked: %d", r.status)
	}
	if chatID == "" || abortedID == "" || unknownID == "" {
		t.Fatalf("request ids %q %q %q", chatID, abortedID, unknownID)
	}

	// Audit: through the API, once each, with the real peer address.
	type auditList struct {
		Data []struct {
			Action        string `json:"action"`
			TargetID      string `json:"target_id"`
			RequestID     string `json:"request_id"`
			ClientAddress string `json:"client_address"`
		} `json:"data"`
	}
	deadline := time.Now().Add(5 * time.Second)
	var denials auditList
	for {
		s.mustManage("GET", "/manage/audit?action=auth.unknown_token", nil, 200, &denials)
		if len(denials.Data) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(denials.Data) != 1 || denials.Data[0].RequestID != unknownID || denials.Data[0].ClientAddress != "127.0.0.1" {
		t.Fatalf("unknown-token audit: %+v (want one, request %s, from 127.0.0.1 — not the spoofed 6.6.6.6)", denials.Data, unknownID)
	}
	var rev auditList
	s.mustManage("GET", "/manage/audit?action=auth.revoked_token", nil, 200, &rev)
	if len(rev.Data) != 1 || rev.Data[0].TargetID != revoked.ID {
		t.Fatalf("revoked-token audit: %+v", rev.Data)
	}
	for action, want := range map[string]int{"project.create": 1, "token.create": 2, "token.revoke": 1} {
		var l auditList
		s.mustManage("GET", "/manage/audit?action="+action, nil, 200, &l)
		if len(l.Data) != want {
			t.Errorf("%s recorded %d times, want %d", action, len(l.Data), want)
		}
	}

	// Events: drain by stopping llm-proxy, then read the JSONL file.
	s.stop()
	events := readEvents(t, s.dataDir+"/events.jsonl")
	byID := map[string][]*llmproxyv1.UsageEvent{}
	for _, ev := range events {
		byID[ev.GetRequestId()] = append(byID[ev.GetRequestId()], ev)
	}
	one := func(id string) *llmproxyv1.UsageEvent {
		t.Helper()
		if len(byID[id]) != 1 {
			t.Fatalf("request %s has %d events, want 1", id, len(byID[id]))
		}
		return byID[id][0]
	}
	chat := one(chatID)
	if chat.GetStatus() != 200 || chat.GetProjectId() != p.ID || chat.GetTokenId() != tok.ID || chat.GetUsageSource() != "provider" ||
		chat.GetUsage().GetTotalTokens() == 0 || chat.GetCostMicroUsd() == 0 || chat.GetPriceVersion() == "" || chat.GetModel() != "gpt-4.1-mini" ||
		chat.GetClientAddress() != "127.0.0.1" || chat.GetLatencyMs() <= 0 {
		t.Fatalf("chat event %v", chat)
	}
	aborted := one(abortedID)
	if !aborted.GetAborted() || !aborted.GetStream() || aborted.GetUsageSource() != "tokenizer" || aborted.GetUsage().GetCompletionTokens() == 0 {
		t.Fatalf("aborted stream event %v", aborted)
	}
	denied := one(unknownID)
	if denied.GetStatus() != 401 || denied.GetErrorCode() != "invalid_api_key" || denied.GetOutcome() != "denied" {
		t.Fatalf("denial event %v", denied)
	}
	for _, ev := range events {
		if strings.Contains(ev.String(), tok.Token) || strings.Contains(ev.String(), realKey) {
			t.Fatal("a secret in an event")
		}
	}
}

func readEvents(t *testing.T, path string) []*llmproxyv1.UsageEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*llmproxyv1.UsageEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ev, err := eventsink.UnmarshalEvent(sc.Bytes())
		if err != nil {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}
