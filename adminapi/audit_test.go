package adminapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

// wantActor is the audit actor of testManagementToken.
func wantActor() string {
	sum := sha256.Sum256([]byte(testManagementToken))
	return "management:" + hex.EncodeToString(sum[:])[:8]
}

// auditPage gets one page of GET /manage/audit with the given query.
func (h *harness) auditPage(query string) (events []map[string]any, next string) {
	h.t.Helper()
	out := h.do(req{method: "GET", path: "/manage/audit?" + query})
	wantStatus(h.t, out, http.StatusOK)
	if out.body["object"] != "list" {
		h.t.Errorf("object = %v, want list", out.body["object"])
	}
	for _, e := range out.body["data"].([]any) {
		events = append(events, e.(map[string]any))
	}
	if c, ok := out.body["next_cursor"].(string); ok {
		next = c
	} else if out.body["next_cursor"] != nil {
		h.t.Fatalf("next_cursor = %v", out.body["next_cursor"])
	}
	return events, next
}

// auditAll walks every page of the query, calling between (if set) after
// each page but the last, and returns the events in the order listed.
func (h *harness) auditAll(query string, between func()) []map[string]any {
	h.t.Helper()
	var all []map[string]any
	cursor := ""
	for range 10_000 {
		q := query
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		events, next := h.auditPage(q)
		all = append(all, events...)
		if next == "" {
			return all
		}
		cursor = next
		if between != nil {
			between()
		}
	}
	h.t.Fatal("the walk does not end")
	return nil
}

func eventIDs(events []map[string]any) []string {
	var ids []string
	for _, e := range events {
		ids = append(ids, e["id"].(string))
	}
	return ids
}

// TestAuditRecordsEachOperationOnce runs every kind of management operation,
// successful and failed, then counts the audit log by action: each success
// once, with who, what, where and which request; no failure, no read.
func TestAuditRecordsEachOperationOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	type want struct{ action, targetType, target, project, detail string }
	wants := map[string]want{} // by request id
	n := 0
	call := func(method, path, body string, status int) resp {
		t.Helper()
		n++
		id := fmt.Sprintf("req-audit-%02d", n)
		out := h.do(req{method: method, path: path, body: body, header: map[string]string{"X-Request-Id": id}})
		wantStatus(t, out, status)
		return out
	}
	expect := func(w want) { wants[fmt.Sprintf("req-audit-%02d", n)] = w }

	a := call("POST", "/manage/projects", `{"name":"A","openai_api_key":"`+rawKey1+`","limits":{"max_concurrent":2}}`, 201).body["id"].(string)
	expect(want{store.AuditProjectCreate, "project", a, a, "fields: name, openai_api_key, limits"})
	b := call("POST", "/manage/projects", `{"name":"B","openai_api_key":"`+rawKey2+`","active":false}`, 201).body["id"].(string)
	expect(want{store.AuditProjectCreate, "project", b, b, "fields: name, openai_api_key, active=false"})
	call("PATCH", "/manage/projects/"+a, `{"name":"A2","active":false,"openai_api_key":"`+rawKey2+`"}`, 200)
	expect(want{store.AuditProjectUpdate, "project", a, a, "fields: name, openai_api_key, active=false"})
	call("PATCH", "/manage/projects/"+a, `{"active":true,"monthly_budget_usd":5}`, 200)
	expect(want{store.AuditProjectUpdate, "project", a, a, "fields: active=true, monthly_budget_usd"})
	call("PATCH", "/manage/projects/"+a, `{}`, 200)                     // changes nothing
	call("PATCH", "/manage/projects/proj_missing", `{"name":"x"}`, 404) // fails
	call("POST", "/manage/projects", `{"name":""}`, 400)                // fails
	c := call("POST", "/manage/projects", `{"name":"C","openai_api_key":"`+rawKey1+`","cache_post":true,"allow_batches":false}`, 201).body["id"].(string)
	expect(want{store.AuditProjectCreate, "project", c, c, "fields: name, openai_api_key, cache_post, allow_batches=false"})
	call("PATCH", "/manage/projects/"+c, `{"cache_post":false,"allow_background":false,"allow_batches":true}`, 200)
	expect(want{store.AuditProjectUpdate, "project", c, c, "fields: cache_post, allow_background=false, allow_batches=true"})
	call("PATCH", "/manage/projects/"+c, `{"allow_background":null}`, 400) // fails
	t1 := call("POST", "/manage/tokens", `{"project_id":"`+a+`","name":"ci"}`, 201).body["id"].(string)
	expect(want{store.AuditTokenCreate, "token", t1, a, "fields: name"})
	t2 := call("POST", "/manage/tokens", `{"project_id":"`+a+`","expires_in":"1h","max_requests":5}`, 201).body["id"].(string)
	expect(want{store.AuditTokenCreate, "token", t2, a, "fields: expires_at, max_requests"})
	call("POST", "/manage/tokens", `{"project_id":"proj_missing"}`, 400) // fails
	call("PATCH", "/manage/tokens/"+t1, `{"active":false,"limits":{"requests_per_minute":9}}`, 200)
	expect(want{store.AuditTokenUpdate, "token", t1, a, "fields: active=false, limits"})
	call("PATCH", "/manage/tokens/"+t1, `{"limits":{}}`, 200) // changes nothing
	call("DELETE", "/manage/tokens/"+t1, "", 200)
	expect(want{store.AuditTokenRevoke, "token", t1, a, ""})
	call("PATCH", "/manage/tokens/"+t1, `{"active":true}`, 400) // revoked: refused
	call("DELETE", "/manage/tokens/tok_missing", "", 404)       // fails
	call("POST", "/manage/projects/"+a+"/tokens/revoke", "", 200)
	expect(want{store.AuditProjectTokensRevoke, "project", a, a, "revoked: 1"})
	call("DELETE", "/manage/projects/"+b, "", 204)
	expect(want{store.AuditProjectDelete, "project", b, b, ""})
	call("DELETE", "/manage/projects/"+b, "", 404)                // already gone
	call("POST", "/manage/projects/"+b+"/tokens/revoke", "", 404) // fails
	call("GET", "/manage/projects/"+a, "", 200)                   // reads are not audited
	call("GET", "/manage/tokens?project_id="+a, "", 200)          // reads are not audited
	call("GET", "/manage/projects/"+a+"/usage", "", 200)          // reads are not audited

	events := h.auditAll("limit=1000", nil)
	counts := map[string]int{}
	seen := map[string]int{}
	for _, e := range events {
		counts[e["action"].(string)]++
		rid := e["request_id"].(string)
		seen[rid]++
		w, ok := wants[rid]
		if !ok {
			t.Errorf("event for request %s, which should not be audited: %v", rid, e)
			continue
		}
		got := want{e["action"].(string), e["target_type"].(string), e["target_id"].(string), fmt.Sprint(e["project_id"]), e["detail"].(string)}
		if got != w {
			t.Errorf("request %s: event %+v, want %+v", rid, got, w)
		}
		if e["actor"] != wantActor() || e["client_address"] != "127.0.0.1" || e["outcome"] != "success" {
			t.Errorf("request %s: actor %v, client_address %v, outcome %v; want %s, 127.0.0.1, success",
				rid, e["actor"], e["client_address"], e["outcome"], wantActor())
		}
		if ts, err := time.Parse(time.RFC3339Nano, e["time"].(string)); err != nil || !ts.Equal(h.now) {
			t.Errorf("request %s: time %v, want %s", rid, e["time"], h.now.Format(time.RFC3339))
		}
	}
	for rid := range wants {
		if seen[rid] != 1 {
			t.Errorf("request %s recorded %d times, want once", rid, seen[rid])
		}
	}
	wantCounts := map[string]int{
		store.AuditProjectCreate: 3, store.AuditProjectUpdate: 3, store.AuditProjectDelete: 1, store.AuditProjectTokensRevoke: 1,
		store.AuditTokenCreate: 2, store.AuditTokenUpdate: 1, store.AuditTokenRevoke: 1,
	}
	for _, action := range store.AuditActions() {
		if counts[action] != wantCounts[action] {
			t.Errorf("%d %s events, want %d", counts[action], action, wantCounts[action])
		}
	}
	if len(events) != len(wants) {
		t.Errorf("%d events, want %d", len(events), len(wants))
	}
	for _, secret := range []string{rawKey1, rawKey2, testManagementToken} {
		if h.responsesContaining(secret) != 0 {
			t.Error("a response contains a secret")
		}
	}
}

// TestAuditClientAddress sends a spoofed X-Forwarded-For behind a trusted
// proxy: the recorded address is the one the proxy appended, never the
// client's own entry.
func TestAuditClientAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		hops int
		xff  []string // header lines, as received from the nearest proxy
		want string
	}{
		// Envoy appended the real peer (here the test's own 127.0.0.1) to
		// the client's spoofed entry.
		{"one trusted proxy, spoofed entry", 1, []string{"6.6.6.6, 127.0.0.1"}, "127.0.0.1"},
		{"one trusted proxy, other peer", 1, []string{"6.6.6.6, 203.0.113.7"}, "203.0.113.7"},
		{"one trusted proxy, several spoofed entries", 1, []string{"6.6.6.6, 7.7.7.7,8.8.8.8 ,203.0.113.7"}, "203.0.113.7"},
		{"one trusted proxy, header split over lines", 1, []string{"6.6.6.6", "203.0.113.7"}, "203.0.113.7"},
		{"one trusted proxy, no header", 1, nil, "127.0.0.1"},
		{"two trusted proxies", 2, []string{"6.6.6.6, 203.0.113.7, 10.0.0.2"}, "203.0.113.7"},
		{"two trusted proxies, too few entries", 2, []string{"203.0.113.7"}, "127.0.0.1"},
		{"trusted entry not an address", 1, []string{"6.6.6.6, unknown"}, "127.0.0.1"},
		{"IPv6 entry", 1, []string{"6.6.6.6, 2001:DB8::1"}, "2001:db8::1"},
		{"entry with port", 1, []string{"6.6.6.6, [2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv4-mapped entry", 1, []string{"::ffff:203.0.113.7"}, "203.0.113.7"},
		{"no trusted proxy: the peer", 0, []string{"6.6.6.6, 203.0.113.7"}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarnessWith(t, harnessOptions{trustedHops: &tc.hops})
			r := h.newRequest(req{method: "POST", path: "/manage/projects", body: `{"name":"T","openai_api_key":"sk-x"}`})
			r.Header.Set("X-Request-Id", "req-xff")
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			res, err := h.srv.Client().Do(r)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusCreated {
				t.Fatalf("status %d", res.StatusCode)
			}
			events, _ := h.auditPage("action=project.create")
			if len(events) != 1 || events[0]["request_id"] != "req-xff" {
				t.Fatalf("events = %v", events)
			}
			if got := events[0]["client_address"]; got != tc.want {
				t.Errorf("client_address = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestAuditClientAddressThroughProxy puts a real reverse proxy (which, like
// Envoy with use_remote_address, appends its peer to X-Forwarded-For) in
// front of the server. The client connects from 127.0.0.2 and claims
// 6.6.6.6; the server's own peer is the proxy, 127.0.0.1.
func TestAuditClientAddressThroughProxy(t *testing.T) {
	t.Parallel()
	h := newHarness(t) // TrustedHops 1
	target, err := url.Parse(h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(proxy.Close)
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	if c, err := dialer.Dial("tcp", proxy.Listener.Addr().String()); err != nil {
		t.Fatalf("cannot connect from 127.0.0.2 (Linux routes all of 127/8 to loopback): %v", err)
	} else {
		c.Close()
	}

	r, err := http.NewRequest("POST", proxy.URL+"/manage/projects", strings.NewReader(`{"name":"T","openai_api_key":"sk-x"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+testManagementToken)
	r.Header.Set("X-Forwarded-For", "6.6.6.6")
	res, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", res.StatusCode)
	}
	events, _ := h.auditPage("")
	if len(events) != 1 || events[0]["client_address"] != "127.0.0.2" {
		t.Errorf("events = %v, want one with client_address 127.0.0.2", events)
	}
}

// TestAuditPaging walks the audit log through the API while events are
// added between the pages: every event that was there at the start is seen
// once, in order, and nothing is seen twice.
func TestAuditPaging(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	base := h.now.Add(-time.Hour)
	var before []store.AuditEvent
	for i := range 95 {
		before = append(before, store.AuditEvent{
			ID:     fmt.Sprintf("aud_%03d", i),
			Time:   base.Add(time.Duration(i/4) * time.Second), // ties of four
			Action: store.AuditAuthUnknownToken, Outcome: store.AuditOutcomeDenied, RequestID: fmt.Sprint(i),
		})
	}
	if err := h.store.AddAudit(ctx, before); err != nil {
		t.Fatal(err)
	}
	projectID := h.createProject("Team", rawKey1)
	var wantOrder []string
	for i := len(before) - 1; i >= 0; i-- {
		wantOrder = append(wantOrder, before[i].ID)
	}
	existing := append([]string{}, eventIDs(h.auditAll("", nil))...)
	if len(existing) != len(before)+1 {
		t.Fatalf("%d events, want %d", len(existing), len(before)+1)
	}

	// Between pages: a management change (stamped h.now, newer than the
	// walk's position) and a denial recorded now.
	added := 0
	walk := h.auditAll("limit=7", func() {
		added++
		wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: fmt.Sprintf(`{"name":"n%d"}`, added)}), 200)
		err := h.store.AddAudit(ctx, []store.AuditEvent{{ID: fmt.Sprintf("aud_new%02d", added), Action: store.AuditAuthRevokedToken, Outcome: store.AuditOutcomeDenied}})
		if err != nil {
			t.Fatal(err)
		}
	})
	got := eventIDs(walk)
	if !slices.Equal(got, existing) {
		t.Errorf("walk with inserts:\n got %v\nwant %v", got, existing)
	}
	if !slices.Equal(existing[1:], wantOrder) {
		t.Errorf("order: got %v\nwant %v", existing[1:], wantOrder)
	}
	if added < 10 {
		t.Errorf("only %d pages", added+1)
	}
	// A fresh walk sees what was added.
	if n := len(h.auditAll("limit=1000", nil)); n != len(existing)+2*added {
		t.Errorf("fresh walk: %d events, want %d", n, len(existing)+2*added)
	}
}

func TestAuditFilters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := h.createProject("A", rawKey1)
	b := h.createProject("B", rawKey2)
	tok := h.createToken(map[string]any{"project_id": a}).body["id"].(string)
	wantStatus(t, h.do(req{method: "DELETE", path: "/manage/tokens/" + tok}), 200)
	at := func(m int) time.Time {
		return time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC).Add(time.Duration(m) * time.Minute)
	}
	err := h.store.AddAudit(context.Background(), []store.AuditEvent{
		{ID: "aud_d1", Time: at(0), Action: store.AuditAuthUnknownToken, Outcome: store.AuditOutcomeDenied},
		{ID: "aud_d2", Time: at(1), Action: store.AuditAuthExpiredToken, ProjectID: b, Outcome: store.AuditOutcomeDenied},
		{ID: "aud_d3", Time: at(2), Action: store.AuditAuthUnknownToken, Outcome: store.AuditOutcomeDenied},
		{ID: "aud_d4", Time: at(3).Add(123456 * time.Microsecond), Action: store.AuditAuthQuotaExhausted, ProjectID: a, Outcome: store.AuditOutcomeDenied},
	})
	if err != nil {
		t.Fatal(err)
	}
	// actions renders events as action@project, those sharing a time (the
	// management events, all at h.now, ordered by random ids) sorted.
	actions := func(events []map[string]any) []string {
		var out []string
		for i := 0; i < len(events); {
			j := i
			var tie []string
			for ; j < len(events) && events[j]["time"] == events[i]["time"]; j++ {
				tie = append(tie, events[j]["action"].(string)+"@"+fmt.Sprint(events[j]["project_id"]))
			}
			slices.Sort(tie)
			out = append(out, tie...)
			i = j
		}
		return out
	}
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"project", "project_id=" + a, []string{"project.create@" + a, "token.create@" + a, "token.revoke@" + a, "auth.quota_exhausted@" + a}},
		{"action", "action=auth.unknown_token", []string{"auth.unknown_token@<nil>", "auth.unknown_token@<nil>"}},
		{"project and action", "project_id=" + b + "&action=project.create", []string{"project.create@" + b}},
		{"empty filters", "project_id=&action=&from=2025-03-04T05:02:00Z", nil}, // filled in below
		{"from inclusive, to exclusive", "from=2025-03-04T05:01:00Z&to=2025-03-04T05:03:00.123456Z", []string{"auth.unknown_token@<nil>", "auth.expired_token@" + b}},
		{"to includes what is before it", "to=2025-03-04T05:03:00.123457Z&from=2025-03-04T05:03:00Z", []string{"auth.quota_exhausted@" + a}},
		{"offset", "from=" + url.QueryEscape("2025-03-04T07:01:00+02:00") + "&to=2025-03-04T05:02:00Z", []string{"auth.expired_token@" + b}},
		{"from equals to", "from=2025-03-04T05:01:00Z&to=2025-03-04T05:01:00Z", nil},
		{"unknown project", "project_id=proj_nope", nil},
		{"actor", "actor=" + url.QueryEscape("management:") + "&action=token.revoke", nil}, // actors match exactly
		{"actor and project", "project_id=" + b + "&actor=" + url.QueryEscape(managementActor()), []string{"project.create@" + b}},
		{"empty actor", "actor=&project_id=" + b, []string{"project.create@" + b, "auth.expired_token@" + b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if tc.name == "empty filters" {
				// Every management event (at h.now) plus the two latest denials.
				want = append(actions(h.auditAll("from="+url.QueryEscape(h.now.Format(time.RFC3339)), nil)),
					"auth.quota_exhausted@"+a, "auth.unknown_token@<nil>")
			}
			if got := actions(h.auditAll(tc.query, nil)); !slices.Equal(got, want) {
				t.Errorf("%s:\n got %v\nwant %v", tc.query, got, want)
			}
			// One per page gives the same events.
			if got := actions(h.auditAll(tc.query+"&limit=1", nil)); !slices.Equal(got, want) {
				t.Errorf("%s one per page:\n got %v\nwant %v", tc.query, got, want)
			}
		})
	}

	// The default page is 100 events.
	many := make([]store.AuditEvent, 150)
	for i := range many {
		many[i] = store.AuditEvent{ID: fmt.Sprintf("aud_m%03d", i), Time: at(-10), Action: store.AuditAuthMissingToken}
	}
	if err := h.store.AddAudit(context.Background(), many); err != nil {
		t.Fatal(err)
	}
	events, next := h.auditPage("action=auth.missing_token&cursor=") // an empty cursor: the first page
	if len(events) != 100 || next == "" {
		t.Errorf("default page: %d events, next %q; want 100 and a cursor", len(events), next)
	}
	events, next = h.auditPage("action=auth.missing_token&cursor=" + url.QueryEscape(next))
	if len(events) != 50 || next != "" {
		t.Errorf("second page: %d events, next %q; want 50 and none", len(events), next)
	}
}

func TestAuditBadRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct{ query, param string }{
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=-5", "limit"},
		{"limit=ten", "limit"},
		{"limit=", "limit"},
		{"limit=1.5", "limit"},
		{"from=yesterday", "from"},
		{"from=2025-03-04", "from"},
		{"from=", "from"},
		{"to=2025-13-01T00:00:00Z", "to"},
		{"to=2025-03-04T05:00:00+02:00", "to"}, // an unescaped + is a space
		{"from=2025-03-05T00:00:00Z&to=2025-03-04T00:00:00Z", "from"},
		{"action=project.explode", "action"},
		{"action=PROJECT.CREATE", "action"},
		{"cursor=not-a-cursor", "cursor"},
		{"cursor=" + url.QueryEscape("MTIzLGE="), "cursor"},
		// A position the store would take, forged: cursors are signed.
		{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte("1741064767000000,aud_000")), "cursor"},
		{"cursor=MTIzLGE.AAAAAAAAAAAAAAAAAAAAAA", "cursor"}, // a wrong MAC
		{"cursor=MTIzLGE.", "cursor"},
		{"cursor=%00", "cursor"},
		{"cursor=%FF%FE", "cursor"},
		{"project_id=%00", "project_id"},
		{"actor=%00", "actor"},
		{"actor=%FF%FE", "actor"},
		{"actor=" + strings.Repeat("a", 129), "actor"},
		{"project_id=" + url.QueryEscape("proj x"), "project_id"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			out := h.do(req{method: "GET", path: "/manage/audit?" + tc.query})
			wantError(t, out, 400, "invalid_request_error", "invalid_value", tc.param)
		})
	}
}

// TestAuditWriteFailure has the audit store fail: the operation still
// succeeds (it happened), and the failure is logged at error with the
// request id.
func TestAuditWriteFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.audit.fail.Store(true)
	out := h.do(req{method: "POST", path: "/manage/projects", body: `{"name":"T","openai_api_key":"sk-x"}`,
		header: map[string]string{"X-Request-Id": "req-audit-down"}})
	wantStatus(t, out, 201)
	id := out.body["id"].(string)
	if _, err := h.store.GetProject(context.Background(), id); err != nil {
		t.Errorf("the project was not created: %v", err)
	}
	wantStatus(t, h.do(req{method: "DELETE", path: "/manage/projects/" + id}), 204)
	if n := h.audit.writes.Load(); n != 2 {
		t.Errorf("%d audit writes, want 2", n)
	}
	h.srv.Close()
	var errorLines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["level"] == "error" {
			errorLines = append(errorLines, m)
		}
	}
	if len(errorLines) != 2 {
		t.Fatalf("%d error lines, want one per failed audit write: %v", len(errorLines), errorLines)
	}
	if m := errorLines[0]; m["request_id"] != "req-audit-down" || m["audit_action"] != "project.create" ||
		m["audit_target_id"] != id || m["error"] == nil {
		t.Errorf("error line = %v", m)
	}
}

func TestAuditOptional(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{noAudit: true})
	h.createProject("T", rawKey1)
	if events, _ := h.auditPage(""); len(events) != 0 {
		t.Errorf("events without an audit writer: %v", events)
	}
	if h.audit.writes.Load() != 0 {
		t.Error("the unset writer was called")
	}
}

// TestAuditActionsDocumented keeps openapi.yaml's action list and the
// store's in step.
func TestAuditActionsDocumented(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var documented []string
	for _, v := range h.doc.Components.Schemas["AuditAction"].Value.Enum {
		documented = append(documented, v.(string))
	}
	if !slices.Equal(documented, store.AuditActions()) {
		t.Errorf("openapi.yaml AuditAction enum = %v\nstore.AuditActions() = %v", documented, store.AuditActions())
	}
}

func TestNewRejectsNegativeTrustedHops(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, err := New(Options{Store: h.store, Keyring: h.keys, Invalidator: h.inv, ManagementToken: "x", TrustedHops: -1})
	if err == nil || !strings.Contains(err.Error(), "TrustedHops") {
		t.Errorf("New with TrustedHops -1: %v", err)
	}
}

// GET /manage/audit/{id} answers one event as the listing shows it.
func TestAuditGet(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	projectID := h.createProject("Team", rawKey1)
	listed := h.auditAll("project_id="+projectID, nil)
	if len(listed) != 1 {
		t.Fatalf("events of the new project: %v", listed)
	}
	id, _ := listed[0]["id"].(string)
	out := h.do(req{method: "GET", path: "/manage/audit/" + id})
	wantStatus(t, out, 200)
	if !reflect.DeepEqual(out.body, listed[0]) {
		t.Errorf("get %s = %v, listed as %v", id, out.body, listed[0])
	}
	wantError(t, h.do(req{method: "GET", path: "/manage/audit/aud_nothing"}), 404, "invalid_request_error", "not_found", "")
	wantError(t, h.do(req{method: "GET", path: "/manage/audit/no%20such"}), 404, "invalid_request_error", "not_found", "")
}
