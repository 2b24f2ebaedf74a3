package tests

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/store"
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
	rr := send(t, "GET", s.envoyURL+"/v1/models", revoked.Token, "")
	if rr.status != 401 {
		t.Fatalf("revoked: %d", rr.status)
	}
	revokedID := rr.header.Get("X-Request-Id")
	if chatID == "" || abortedID == "" || unknownID == "" || revokedID == "" {
		t.Fatalf("request ids %q %q %q %q", chatID, abortedID, unknownID, revokedID)
	}

	// Audit: through the API, once each, with the real peer address (not the
	// spoofed 6.6.6.6). Denials are flushed in batches, in the background:
	// poll until each action's records are exactly the expected ones.
	from := func(e auditRecord) string { return e.RequestID + " from " + e.ClientAddress }
	target := func(e auditRecord) string { return e.TargetID }
	want := []auditExpectation{
		{"auth.unknown_token", from, []string{unknownID + " from 127.0.0.1"}},
		{"auth.revoked_token", func(e auditRecord) string { return e.TargetID + " " + from(e) }, []string{revoked.ID + " " + revokedID + " from 127.0.0.1"}},
		{"project.create", target, []string{p.ID}},
		{"token.create", target, []string{tok.ID, revoked.ID}},
		{"token.revoke", target, []string{revoked.ID}},
	}
	waitAudit(t, want, func(action string) []auditRecord {
		var l struct {
			Data []auditRecord `json:"data"`
		}
		s.mustManage("GET", "/manage/audit?action="+action, nil, 200, &l)
		return l.Data
	})

	// Stopping llm-proxy drains both logs. The audit log's last flush is
	// then behind us, so its records being still exactly the expected ones
	// means none came twice.
	s.stop()
	st, err := store.Open(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkAudit(t, want, func(action string) []auditRecord {
		rows, next, err := st.ListAudit(ctx, store.AuditQuery{Action: action, Limit: store.MaxAuditLimit})
		if err != nil || next != "" {
			t.Fatalf("audit %s from the store: %v (next page %q)", action, err, next)
		}
		var out []auditRecord
		for _, r := range rows {
			out = append(out, auditRecord{TargetID: r.TargetID, RequestID: r.RequestID, ClientAddress: r.ClientAddress})
		}
		return out
	})

	// Events: read the JSONL file.
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

// auditRecord is what these tests check of an audit event.
type auditRecord struct {
	TargetID      string `json:"target_id"`
	RequestID     string `json:"request_id"`
	ClientAddress string `json:"client_address"`
}

// auditExpectation is the exact set of records, in any order and each as
// key renders it, that the audit log must hold for action.
type auditExpectation struct {
	action string
	key    func(auditRecord) string
	want   []string
}

// auditMismatches lists, one per action, where list's records differ from
// the expectations.
func auditMismatches(want []auditExpectation, list func(action string) []auditRecord) []string {
	var out []string
	for _, w := range want {
		var got []string
		for _, r := range list(w.action) {
			got = append(got, w.key(r))
		}
		slices.Sort(got)
		exp := slices.Sorted(slices.Values(w.want))
		if !slices.Equal(got, exp) {
			out = append(out, fmt.Sprintf("%s: got %q, want %q", w.action, got, exp))
		}
	}
	return out
}

// waitAudit polls list until the audit log holds exactly the expected
// records; the deadline only catches a flush that never comes.
func waitAudit(t *testing.T, want []auditExpectation, list func(action string) []auditRecord) {
	t.Helper()
	deadline := time.Now().Add(hangBound)
	for {
		diff := auditMismatches(want, list)
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log after %v:\n%s", hangBound, strings.Join(diff, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkAudit fails t unless the audit log holds exactly the expected records.
func checkAudit(t *testing.T, want []auditExpectation, list func(action string) []auditRecord) {
	t.Helper()
	if diff := auditMismatches(want, list); len(diff) > 0 {
		t.Fatalf("audit log:\n%s", strings.Join(diff, "\n"))
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
