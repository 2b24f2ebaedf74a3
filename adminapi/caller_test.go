package adminapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCallerAuditsInProcessCalls: a request handed to ServeHTTP in process
// under WithCaller is audited with the caller's actor and client address,
// not the server's own actor or the request's peer and X-Forwarded-For; a
// wrong token under a Caller is a failed login of the caller's address.
func TestCallerAuditsInProcessCalls(t *testing.T) {
	t.Parallel()
	limit := 2
	h := newHarnessWith(t, harnessOptions{loginLimit: limit})
	srv := h.srv.Config.Handler
	call := func(token, body string) int {
		r := httptest.NewRequest("POST", "/manage/projects", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("X-Forwarded-For", "6.6.6.6")
		r = r.WithContext(WithCaller(r.Context(), Caller{Actor: "admin-ui", ClientAddress: "198.51.100.7"}))
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		return w.Code
	}
	if got := call(testManagementToken, `{"name":"T","openai_api_key":"sk-x"}`); got != http.StatusCreated {
		t.Fatalf("create: status %d", got)
	}
	events, _ := h.auditPage("action=project.create")
	if len(events) != 1 || events[0]["actor"] != "admin-ui" || events[0]["client_address"] != "198.51.100.7" {
		t.Fatalf("events = %v, want one by admin-ui from 198.51.100.7", events)
	}

	for range limit {
		if got := call("wrong-token", `{}`); got != http.StatusUnauthorized {
			t.Fatalf("wrong token: status %d", got)
		}
	}
	// The caller's address is throttled, even with the right token…
	if got := call(testManagementToken, `{}`); got != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: status %d, want 429", limit, got)
	}
	// …and the request's own address is not.
	if got := h.do(req{method: "GET", path: "/manage/projects"}); got.status != http.StatusOK {
		t.Fatalf("direct client: status %d", got.status)
	}
	events, _ = h.auditPage("action=auth.management_token")
	for _, e := range events {
		if e["client_address"] != "198.51.100.7" {
			t.Errorf("failed login audited from %v, want 198.51.100.7", e["client_address"])
		}
	}
	if len(events) != limit+1 { // each failure, and the throttling
		t.Errorf("%d failed-login events, want %d: %v", len(events), limit+1, events)
	}
}

// managementActor is the audit actor of requests with testManagementToken.
func managementActor() string {
	sum := sha256.Sum256([]byte(testManagementToken))
	return "management:" + hex.EncodeToString(sum[:4])
}
