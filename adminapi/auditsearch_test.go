package adminapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/llm-proxy/llm-proxy/store"
)

// The harness validates every response against openapi.yaml; the JSON lines
// export is documented as a string body.
func init() { openapi3filter.RegisterBodyDecoder(ndjson, openapi3filter.FileBodyDecoder) }

// TestAuditSearch filters the audit log by token, outcome and client
// address, alone and with the other filters.
func TestAuditSearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.createProject("A", rawKey1)
	tok := h.createToken(map[string]any{"project_id": a}).body["id"].(string)
	h.now = h.now.Add(time.Second) // the revocation sorts before the creation
	wantStatus(t, h.do(req{method: "DELETE", path: "/manage/tokens/" + tok}), 200)
	later := func(m int) time.Time { return h.now.Add(time.Duration(m) * time.Minute) }
	err := h.store.AddAudit(context.Background(), []store.AuditEvent{
		{ID: "aud_s1", Time: later(1), Action: store.AuditAuthRevokedToken, ProjectID: a,
			TargetType: store.AuditTargetToken, TargetID: tok, ClientAddress: "2001:db8::7", Outcome: store.AuditOutcomeDenied},
		{ID: "aud_s2", Time: later(2), Action: store.AuditAuthUnknownToken, ClientAddress: "203.0.113.9", Outcome: store.AuditOutcomeDenied},
		// A project event whose target id happens to be the token's.
		{ID: "aud_s3", Time: later(3), Action: store.AuditProjectUpdate, ProjectID: a,
			TargetType: store.AuditTargetProject, TargetID: tok, ClientAddress: "203.0.113.9"},
	})
	if err != nil {
		t.Fatal(err)
	}
	actions := func(events []map[string]any) []string {
		var out []string
		for _, e := range events {
			out = append(out, e["action"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"token_id=" + tok, []string{"auth.revoked_token", "token.revoke", "token.create"}},
		{"token_id=" + tok + "&outcome=success", []string{"token.revoke", "token.create"}},
		{"token_id=tok_nothing", nil},
		{"outcome=denied", []string{"auth.unknown_token", "auth.revoked_token"}},
		{"outcome=denied&project_id=" + a, []string{"auth.revoked_token"}},
		{"client_address=" + url.QueryEscape("2001:DB8:0::7"), []string{"auth.revoked_token"}},
		{"client_address=203.0.113.9", []string{"project.update", "auth.unknown_token"}},
		{"client_address=203.0.113.9&outcome=denied&from=" + url.QueryEscape(later(2).Format(time.RFC3339)), []string{"auth.unknown_token"}},
		{"client_address=" + url.QueryEscape("::ffff:203.0.113.9") + "&action=project.update", []string{"project.update"}},
		{"outcome=&token_id=&client_address=&from=" + url.QueryEscape(later(1).Format(time.RFC3339)),
			[]string{"project.update", "auth.unknown_token", "auth.revoked_token"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			if got := actions(h.auditAll(tc.query, nil)); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ query, param string }{
		{"outcome=maybe", "outcome"},
		{"outcome=DENIED", "outcome"},
		{"client_address=localhost", "client_address"},
		{"client_address=203.0.113.9:443", "client_address"},
		{"token_id=%00", "token_id"},
		{"token_id=" + url.QueryEscape("tok x"), "token_id"},
		{"format=csv", "format"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			wantError(t, h.do(req{method: "GET", path: "/manage/audit?" + tc.query}), 400, "invalid_request_error", "invalid_value", tc.param)
		})
	}
}

// TestAuditExportJSONL exports the audit log as JSON lines, asked by format
// or by Accept: every event the filters select, across store pages, newest
// first, each line the object the paged listing returns.
func TestAuditExportJSONL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.createProject("A", rawKey1)
	many := make([]store.AuditEvent, 2*store.MaxAuditLimit+345)
	for i := range many {
		many[i] = store.AuditEvent{ID: fmt.Sprintf("aud_e%05d", i), Time: h.now.Add(-time.Duration(i%700) * time.Second),
			Action: store.AuditAuthMissingToken, ClientAddress: "198.51.100.1"}
	}
	if err := h.store.AddAudit(context.Background(), many); err != nil {
		t.Fatal(err)
	}
	lines := func(out resp) []map[string]any {
		t.Helper()
		wantStatus(t, out, 200)
		if ct := out.header.Get("Content-Type"); ct != ndjson {
			t.Fatalf("content-type %q, want %s", ct, ndjson)
		}
		var events []map[string]any
		sc := bufio.NewScanner(bytes.NewReader(out.raw))
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %d %q: %v", len(events)+1, sc.Text(), err)
			}
			events = append(events, e)
		}
		if len(out.raw) > 0 && out.raw[len(out.raw)-1] != '\n' {
			t.Error("the export does not end with a newline")
		}
		return events
	}
	for _, tc := range []struct {
		name   string
		query  string
		header map[string]string
	}{
		{"format=jsonl", "format=jsonl&action=auth.missing_token", nil},
		{"Accept", "action=auth.missing_token&limit=3", map[string]string{"Accept": "text/plain;q=0.5, application/x-ndjson"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lines(h.do(req{method: "GET", path: "/manage/audit?" + tc.query, header: tc.header}))
			want := h.auditAll("action=auth.missing_token&limit=1000", nil)
			if len(got) != len(many) || !slices.Equal(eventIDs(got), eventIDs(want)) {
				t.Fatalf("exported %d events, want the %d listed, in order", len(got), len(want))
			}
			for i := range got {
				if !sameJSON(got[i], want[i]) {
					t.Fatalf("line %d = %v, listed as %v", i+1, got[i], want[i])
				}
			}
		})
	}
	// Filters apply; an empty selection is an empty body.
	if got := lines(h.do(req{method: "GET", path: "/manage/audit?format=jsonl&action=project.create"})); len(got) != 1 || got[0]["action"] != "project.create" {
		t.Errorf("project.create export: %v", got)
	}
	if got := lines(h.do(req{method: "GET", path: "/manage/audit?format=jsonl&client_address=192.0.2.99"})); len(got) != 0 {
		t.Errorf("export of nothing: %v", got)
	}
	// format=json wins over Accept.
	out := h.do(req{method: "GET", path: "/manage/audit?format=json&limit=2", header: map[string]string{"Accept": ndjson}})
	if out.body["object"] != "list" || len(out.body["data"].([]any)) != 2 {
		t.Errorf("format=json: %s", out.raw)
	}
}

func sameJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestAuditVerify: the chain of what the API recorded holds, and the walk
// says how far it checked (the store's tests tamper with rows).
func TestAuditVerify(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	out := h.do(req{method: "GET", path: "/manage/audit/verify"})
	wantStatus(t, out, 200)
	if string(out.raw) != `{"object":"audit.verification","intact":true,"checked":0,"unchained":0,"head":"","first_broken":null}`+"\n" {
		t.Errorf("empty log: %s", out.raw)
	}
	a := h.createProject("A", rawKey1)
	h.createToken(map[string]any{"project_id": a})
	out = h.do(req{method: "GET", path: "/manage/audit/verify"})
	wantStatus(t, out, 200)
	events := h.auditAll("", nil)
	if len(events) != 2 || out.body["intact"] != true || out.body["checked"] != float64(2) ||
		out.body["first_broken"] != nil || len(out.body["head"].(string)) != 64 {
		t.Errorf("after %d events: %s", len(events), out.raw)
	}
}
