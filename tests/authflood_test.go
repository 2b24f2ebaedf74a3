package tests

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// A flood of invalid proxy tokens from one address costs a bounded number of
// store queries and audit rows: after 20 failures a minute the address gets
// a 429 with retry-after before the store is asked, unknown tokens are
// remembered for a few seconds, and denials beyond a burst are aggregated. A
// valid token this replica already validated keeps working from the same
// address (clients behind one NAT).
func TestInvalidTokenFloodIsCheap(t *testing.T) {
	s := startStack(t, stackOptions{})
	p := s.createProject("flood", realKey)
	good := s.createToken(map[string]any{"project_id": p.ID})
	if r := call(t, s, "GET", "/v1/models", good.Token, "", nil); r.status != 200 {
		t.Fatalf("valid token: %d %s", r.status, r.body)
	}
	loadsBefore := s.metric(t, "llm_proxy_authz_token_loads_total")
	unauthorized, limited := 0, 0
	for i := range 200 {
		var b [32]byte
		rand.Read(b[:])
		tok := "llmp_" + strings.TrimRight(hex.EncodeToString(b[:]), "=")[:43]
		if i%2 == 1 {
			tok = "llmp_the-same-unknown-token-sent-again-and-again-xx"[:len(tok)]
		}
		r := call(t, s, "GET", "/v1/models", tok, "", nil)
		switch {
		case r.status == 401:
			unauthorized++
		case r.status == 429 && strings.Contains(string(r.body), `"code":"too_many_failed_authentications"`) && r.header.Get("Retry-After") != "":
			limited++
		default:
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if unauthorized != 20 || limited != 180 {
		t.Errorf("%d × 401 and %d × 429, want 20 and 180", unauthorized, limited)
	}
	// At most one store query per failure let through (fewer: the repeated
	// unknown token is remembered).
	if loads := s.metric(t, "llm_proxy_authz_token_loads_total") - loadsBefore; loads > 20 || loads < 10 {
		t.Errorf("%d token loads from the store for 200 invalid tokens, want between 10 and 20", loads)
	}
	if r := call(t, s, "GET", "/v1/models", good.Token, "", nil); r.status != 200 {
		t.Errorf("a validated token from the flooding address: %d %s", r.status, r.body)
	}
	// The first 10 denials are audited one by one; the rest are counted for
	// a summary row when the minute ends.
	var audit struct {
		Data []struct {
			Action string `json:"action"`
		} `json:"data"`
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mustManage("GET", "/manage/audit?action=auth.unknown_token&limit=100", nil, 200, &audit)
		if len(audit.Data) >= 10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(audit.Data) != 10 {
		t.Errorf("%d audit rows for 200 invalid tokens, want 10 (and a summary when the minute ends)", len(audit.Data))
	}
}
