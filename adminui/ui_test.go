package adminui

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	b := h.browser()
	for _, path := range []string{"/admin/login", "/admin/", "/admin/static/app.css", "/admin/no-such-page"} {
		p := b.get(path)
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
			"Cache-Control":           "no-store",
		} {
			if got := p.header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
	}
	// No inline script anywhere: the only script is the static file.
	b.mustSignIn()
	for _, path := range []string{"/admin/", "/admin/projects", "/admin/tokens", "/admin/usage", "/admin/audit", "/admin/cache"} {
		p := b.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("%s: status %d\n%s", path, p.status, p.body)
		}
		scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(p.body, -1)
		if len(scripts) != 1 || scripts[0] != `<script src="/admin/static/app.js" defer>` {
			t.Errorf("%s: scripts %q", path, scripts)
		}
		if strings.Contains(p.body, "style=") || strings.Contains(p.body, "<style") || strings.Contains(p.body, " on") && regexp.MustCompile(` on[a-z]+=`).MatchString(p.body) {
			t.Errorf("%s has inline style or an event handler attribute", path)
		}
	}
}

func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	for _, tc := range []struct {
		name   string
		proto  string
		secure bool
	}{
		{"plain HTTP", "", false},
		{"TLS at Envoy", "https", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := h.browser()
			if tc.proto != "" {
				b.header.Set("X-Forwarded-Proto", tc.proto)
			}
			login := b.get("/admin/login")
			wantCookie(t, login.header, loginCookie, tc.secure)
			p := b.signIn(testToken)
			if p.status != http.StatusSeeOther {
				t.Fatalf("sign-in: %d", p.status)
			}
			c := wantCookie(t, p.header, sessionCookie, tc.secure)
			if strings.Contains(c.Value, testToken) || len(c.Value) != 43 { // 256 bits, base64url
				t.Errorf("session cookie value %q: want a 43-character random id, never the token", c.Value)
			}
			if c.MaxAge != 0 || !c.Expires.IsZero() {
				t.Errorf("session cookie outlives the browser: max-age %d, expires %v", c.MaxAge, c.Expires)
			}
		})
	}
}

// wantCookie finds the cookie name in header's Set-Cookie and checks the
// attributes every console cookie has.
func wantCookie(t *testing.T, header http.Header, name string, secure bool) *http.Cookie {
	t.Helper()
	for _, line := range header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != name {
			continue
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/admin" || c.Secure != secure {
			t.Errorf("cookie %s: %q; want HttpOnly, SameSite=Strict, Path=/admin, Secure=%v", name, line, secure)
		}
		return c
	}
	t.Fatalf("no %s cookie set: %q", name, header.Values("Set-Cookie"))
	return nil
}

func TestWrongCSRFTokenRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	b := h.browser()
	b.mustSignIn()
	create := url.Values{"name": {"team-a"}, "openai_api_key": {"sk-test-0123456789"}}
	for _, csrf := range []string{"", "wrong", csrfOf(t, b.get("/admin/projects")) + "x"} {
		form := url.Values{csrfField: {csrf}}
		for k, v := range create {
			form[k] = v
		}
		if p := b.do("POST", "/admin/projects", form); p.status != http.StatusForbidden ||
			!strings.Contains(p.body, "This form has expired or did not come from this console.") {
			t.Errorf("csrf %q: status %d\n%s", csrf, p.status, p.body)
		}
	}
	// Another browser's session token is not this one's.
	other := h.browser()
	other.mustSignIn()
	form := url.Values{csrfField: {csrfOf(t, other.get("/admin/projects"))}}
	for k, v := range create {
		form[k] = v
	}
	if p := b.do("POST", "/admin/projects", form); p.status != http.StatusForbidden {
		t.Errorf("another session's token: status %d", p.status)
	}
	// The sign-in form's token is bound to its cookie too.
	fresh := h.browser()
	fresh.get("/admin/login")
	if p := fresh.do("POST", "/admin/login", url.Values{"token": {testToken}, csrfField: {"forged"}}); p.status != http.StatusForbidden {
		t.Errorf("sign-in with a forged token: status %d", p.status)
	}
	if n := h.projectCount(); n != 0 {
		t.Errorf("%d projects created by refused forms", n)
	}
	// The right token works.
	if p := b.post("/admin/projects", "/admin/projects", create); p.status != http.StatusSeeOther {
		t.Fatalf("with the right token: status %d\n%s", p.status, p.body)
	}
	if n := h.projectCount(); n != 1 {
		t.Errorf("%d projects, want 1", n)
	}
}

func TestLoggedOutSessionReplayRefused(t *testing.T) {
	eachSessionStore(t, testLoggedOutSessionReplayRefused)
}

func testLoggedOutSessionReplayRefused(t *testing.T, o harnessOptions) {
	h := newHarness(t, o)
	b := h.browser()
	b.mustSignIn()
	u, _ := url.Parse(h.srv.URL + "/admin/")
	cookies := b.client.Jar.Cookies(u)
	csrf := csrfOf(t, b.get("/admin/projects"))
	if p := b.do("POST", "/admin/logout", url.Values{csrfField: {csrf}}); p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/login" {
		t.Fatalf("sign-out: %d %s", p.status, p.header.Get("Location"))
	}
	// An attacker who kept the cookie and the form's token replays them.
	replay := h.browser()
	replay.client.Jar.SetCookies(u, cookies)
	if p := replay.get("/admin/projects"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/admin/login") {
		t.Errorf("GET with the ended session: %d %s", p.status, p.header.Get("Location"))
	}
	p := replay.do("POST", "/admin/projects", url.Values{csrfField: {csrf}, "name": {"x"}, "openai_api_key": {"sk-test-0123456789"}})
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "Your session has ended. Sign in again.") {
		t.Errorf("POST with the ended session: %d\n%s", p.status, p.body)
	}
	if n := h.projectCount(); n != 0 {
		t.Errorf("%d projects created with an ended session", n)
	}
	if ev := h.auditEvents(store.AuditAdminSignOut); len(ev) != 1 || ev[0].Actor != "admin-ui" {
		t.Errorf("sign-out events: %+v", ev)
	}
}

func TestCrossOriginPostRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	b := h.browser()
	b.mustSignIn()
	for _, tc := range []struct {
		name   string
		header map[string]string
	}{
		{"Sec-Fetch-Site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		{"Sec-Fetch-Site same-site", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://other.127.0.0.1.nip.io"}},
		{"Origin only", map[string]string{"Origin": "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"name": {"x"}, "openai_api_key": {"sk-test-0123456789"}, csrfField: {csrfOf(t, b.get("/admin/projects"))}}
			for k, v := range tc.header {
				b.header.Set(k, v)
			}
			defer func() {
				for k := range tc.header {
					b.header.Del(k)
				}
			}()
			p := b.do("POST", "/admin/projects", form)
			if p.status != http.StatusForbidden || !strings.Contains(p.body, "This request came from another site and was refused.") {
				t.Errorf("status %d\n%s", p.status, p.body)
			}
			// Sign-in too.
			if p := b.do("POST", "/admin/login", url.Values{"token": {testToken}}); p.status != http.StatusForbidden {
				t.Errorf("cross-origin sign-in: status %d", p.status)
			}
		})
	}
	if n := h.projectCount(); n != 0 {
		t.Errorf("%d projects created cross-origin", n)
	}
	// A same-origin POST, as a browser sends it, goes through.
	b.header.Set("Sec-Fetch-Site", "same-origin")
	b.header.Set("Origin", h.srv.URL)
	if p := b.post("/admin/projects", "/admin/projects", url.Values{"name": {"x"}, "openai_api_key": {"sk-test-0123456789"}}); p.status != http.StatusSeeOther {
		t.Errorf("same-origin POST: status %d\n%s", p.status, p.body)
	}
}

// TestLoginThrottle: sign-in is the API's login, so its throttle and audit
// apply per client address, and the form shows the API's 429 message.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	const limit = 3
	h := newHarness(t, harnessOptions{loginLimit: limit})
	b := h.browser()
	b.header.Set("X-Forwarded-For", "203.0.113.5") // as Envoy appends it
	for i := range limit {
		p := b.signIn("not-the-token")
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "That is not the management token.") {
			t.Fatalf("attempt %d: status %d\n%s", i+1, p.status, p.body)
		}
	}
	p := b.signIn(testToken) // right, but the address is throttled
	if p.status != http.StatusTooManyRequests || !regexp.MustCompile(`Too many failed management logins from your address; try again in \d+ seconds\.`).MatchString(p.body) {
		t.Fatalf("throttled sign-in: status %d\n%s", p.status, p.body)
	}
	if strings.Contains(strings.Join(p.header.Values("Set-Cookie"), ";"), sessionCookie+"=") {
		t.Error("a throttled sign-in got a session")
	}
	events := h.auditEvents(store.AuditAuthManagementToken)
	if len(events) != limit+1 { // three failures one by one, then the throttling
		t.Fatalf("%d failed-login events, want %d: %+v", len(events), limit+1, events)
	}
	for _, e := range events {
		if e.ClientAddress != "203.0.113.5" {
			t.Errorf("failed login audited from %q, want 203.0.113.5", e.ClientAddress)
		}
	}
	// Another address signs in.
	other := h.browser()
	other.header.Set("X-Forwarded-For", "203.0.113.6")
	other.mustSignIn()
	if ev := h.auditEvents(store.AuditAdminSignIn); len(ev) != 1 || ev[0].ClientAddress != "203.0.113.6" || ev[0].Actor != "admin-ui" {
		t.Errorf("sign-in events: %+v", ev)
	}
}

// TestAPIRefusalShownVerbatim: the console shows what the API says, for
// the same input, and creates nothing.
func TestAPIRefusalShownVerbatim(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	b := h.browser()
	b.mustSignIn()
	for _, tc := range []struct {
		name string
		form url.Values
		json string
	}{
		{"limit not a number", url.Values{"name": {"a"}, "openai_api_key": {"sk-test-0123456789"}, "requests_per_minute": {"lots"}},
			`{"name":"a","openai_api_key":"sk-test-0123456789","limits":{"requests_per_minute":"lots"}}`},
		{"limit zero", url.Values{"name": {"a"}, "openai_api_key": {"sk-test-0123456789"}, "requests_per_minute": {"0"}},
			`{"name":"a","openai_api_key":"sk-test-0123456789","limits":{"requests_per_minute":0}}`},
		{"masked key", url.Values{"name": {"a"}, "openai_api_key": {"sk-p…wxyz"}},
			`{"name":"a","openai_api_key":"sk-p…wxyz"}`},
		{"budget with seven decimals", url.Values{"name": {"a"}, "openai_api_key": {"sk-test-0123456789"}, "monthly_budget_usd": {"1.0000001"}},
			`{"name":"a","openai_api_key":"sk-test-0123456789","monthly_budget_usd":1.0000001}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := apiMessage(t, h, "POST", "/manage/projects", tc.json)
			p := b.post("/admin/projects", "/admin/projects", tc.form)
			if p.status != http.StatusBadRequest {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			if !strings.Contains(p.body, `<p class="error" role="alert" id="error">`+html.EscapeString(want)+`</p>`) {
				t.Errorf("the page does not show the API's message %q:\n%s", want, p.body)
			}
			if strings.Contains(p.body, "sk-test-0123456789") {
				t.Error("the refused form sends the OpenAI key back to the browser")
			}
		})
	}
	if n := h.projectCount(); n != 0 {
		t.Errorf("%d projects created", n)
	}
}

// apiMessage calls the REST API directly and returns its error message.
func apiMessage(t *testing.T, h *harness, method, path, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	raw, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(raw, &e); err != nil || e.Error.Message == "" {
		t.Fatalf("API answered %d %s", res.StatusCode, raw)
	}
	return e.Error.Message
}

// TestFlowAuditedAsAdminUI walks projects and tokens: each change is
// audited by the API with the actor admin-ui and the browser's address;
// the token's secret is shown once.
func TestFlowAuditedAsAdminUI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	b := h.browser()
	b.header.Set("X-Forwarded-For", "6.6.6.6, 198.51.100.20") // a spoofed entry, then Envoy's
	b.mustSignIn()
	if p := b.get("/admin/projects"); !strings.Contains(p.body, "No projects yet — create one below.") {
		t.Errorf("empty state missing:\n%s", p.body)
	}
	if p := b.get("/admin/tokens"); !strings.Contains(p.body, "No projects yet — <a href=\"/admin/projects\">create one</a> first") {
		t.Errorf("tokens empty state missing:\n%s", p.body)
	}
	p := b.post("/admin/projects", "/admin/projects", url.Values{"name": {"team-a"}, "openai_api_key": {"sk-test-0123456789abcdef"},
		"requests_per_minute": {"60"}, "monthly_budget_usd": {"12.5"}, "allow_batches": {"on"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("create project: %d\n%s", p.status, p.body)
	}
	projectPath := p.header.Get("Location")
	pid := strings.TrimPrefix(projectPath, "/admin/projects/")
	pp := b.get(projectPath)
	for _, want := range []string{"Project team-a created.", "sk-t…cdef", "$12.5", `name="requests_per_minute" inputmode="numeric" value="60"`} {
		if !strings.Contains(pp.body, want) {
			t.Errorf("project page lacks %q", want)
		}
	}
	stored, err := h.store.GetProject(context.Background(), pid)
	if err != nil || stored.AllowBackground || !stored.AllowBatches || *stored.Limits.RequestsPerMinute != 60 {
		t.Errorf("stored project %+v, %v", stored, err)
	}

	created := b.post("/admin/tokens?project_id="+pid, "/admin/tokens", url.Values{"project_id": {pid}, "expires_in": {"30d"}, "max_requests": {"100"}})
	if created.status != http.StatusCreated {
		t.Fatalf("create token: %d\n%s", created.status, created.body)
	}
	secret := regexp.MustCompile(`id="secret" readonly value="(llmp_[^"]+)"`).FindStringSubmatch(created.body)
	if secret == nil || !strings.Contains(created.body, "This is the only time the token is shown.") {
		t.Fatalf("the new token's secret is not shown:\n%s", created.body)
	}
	list := b.get("/admin/tokens?project_id=" + pid)
	if strings.Contains(list.body, secret[1]) || strings.Contains(list.body, `id="secret"`) {
		t.Error("the secret is shown again")
	}
	tokenID := regexp.MustCompile(`data-token="([^"]+)"`).FindStringSubmatch(list.body)[1]
	if p := b.post("/admin/tokens", "/admin/tokens/"+tokenID+"/revoke", url.Values{}); p.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d\n%s", p.status, p.body)
	}
	if p := b.get("/admin/tokens?project_id=" + pid); !strings.Contains(p.body, "revoked.") || !strings.Contains(p.body, `<span class="bad">revoked</span>`) {
		t.Errorf("revocation not shown:\n%s", p.body)
	}
	if p := b.post(projectPath, projectPath+"/active", url.Values{"active": {"false"}}); p.status != http.StatusSeeOther {
		t.Fatalf("deactivate: %d", p.status)
	}
	if p := b.post("/admin/cache", "/admin/cache", url.Values{"scope": {"all"}}); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "The response cache is off (LLM_PROXY_CACHE=off).") {
		t.Errorf("purge without a cache: %d", p.status)
	}
	for _, action := range []string{store.AuditProjectCreate, store.AuditTokenCreate, store.AuditTokenRevoke, store.AuditProjectUpdate} {
		events := h.auditEvents(action)
		if len(events) != 1 || events[0].Actor != "admin-ui" || events[0].ClientAddress != "198.51.100.20" {
			t.Errorf("%s: %+v, want one by admin-ui from 198.51.100.20", action, events)
		}
	}
	audit := b.get("/admin/audit?action=token.revoke&actor=admin-ui")
	if !strings.Contains(audit.body, `<tr data-action="token.revoke">`) || !strings.Contains(audit.body, `<td>198.51.100.20</td>`) {
		t.Errorf("audit page:\n%s", audit.body)
	}
	if p := b.get("/admin/audit?actor=nobody"); !strings.Contains(p.body, "No audit events match.") {
		t.Errorf("audit page of an unknown actor:\n%s", p.body)
	}
	eventID := regexp.MustCompile(`href="/admin/audit/(aud_[a-z0-9]+)"`).FindStringSubmatch(audit.body)
	if eventID == nil {
		t.Fatalf("no event link:\n%s", audit.body)
	}
	event := b.get("/admin/audit/" + eventID[1])
	if !strings.Contains(event.body, `<dd id="event-client">198.51.100.20</dd>`) || !strings.Contains(event.body, `<dd id="event-actor">admin-ui</dd>`) {
		t.Errorf("event page:\n%s", event.body)
	}
	if p := b.get("/admin/audit/aud_nope"); p.status != http.StatusNotFound || !strings.Contains(p.body, `No audit event with id &#34;aud_nope&#34;.`) {
		t.Errorf("unknown event: %d\n%s", p.status, p.body)
	}
	if p := b.get("/admin/audit?from=yesterday"); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, "from must be an RFC 3339 timestamp such as 2025-03-31T12:00:00Z.") {
		t.Errorf("bad audit filter: %d", p.status)
	}
}

func TestUsageCSV(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	b := h.browser()
	b.mustSignIn()
	p := b.post("/admin/projects", "/admin/projects", url.Values{"name": {"team-a"}, "openai_api_key": {"sk-test-0123456789"}})
	pid := strings.TrimPrefix(p.header.Get("Location"), "/admin/projects/")
	err := h.store.AddUsage(context.Background(), []store.UsageRecord{
		{ProjectID: pid, Day: "2026-03-04", Model: "gpt-4o-mini", PriceVersion: "v1", Requests: 3, Errors: 2, PromptTokens: 30, CompletionTokens: 12, CostMicroUSD: 1234},
		{ProjectID: pid, Day: "2026-03-05", Model: "=cmd", PriceVersion: "v1", Requests: 1, PromptTokens: 5, CompletionTokens: 1, CostMicroUSD: 2_500_000},
	})
	if err != nil {
		t.Fatal(err)
	}
	csv := b.get("/admin/usage.csv?project_id=" + pid + "&from=2026-03-01&to=2026-03-31")
	want := "date,model,price_version,requests,errors,prompt_tokens,completion_tokens,cached_tokens,reasoning_tokens,total_tokens,cost_usd\n" +
		"2026-03-04,gpt-4o-mini,v1,3,2,30,12,0,0,42,0.001234\n" +
		"2026-03-05,'=cmd,v1,1,0,5,1,0,0,6,2.5\n"
	if csv.status != http.StatusOK || csv.body != want || csv.header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Errorf("CSV: %d %s\n%q\nwant\n%q", csv.status, csv.header.Get("Content-Type"), csv.body, want)
	}
	page := b.get("/admin/usage?project_id=" + pid + "&from=2026-03-01&to=2026-03-31")
	for _, want := range []string{"From 2026-03-01 to 2026-03-31: requests 4, errors 2, tokens 48, spend $2.50.", "<title>2026-03-04: 3</title>", "<title>2026-03-05: $2.50</title>"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("usage page lacks %q", want)
		}
	}
}

func TestSessionExpires(t *testing.T) { eachSessionStore(t, testSessionExpires) }

func testSessionExpires(t *testing.T, o harnessOptions) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	o.now = clock
	h := newHarness(t, o)
	b := h.browser()
	b.mustSignIn()
	// Used every 20 minutes, the session lives until its maximum age.
	for range int(DefaultMaxAge/(20*time.Minute)) - 1 {
		advance(20 * time.Minute)
		if p := b.get("/admin/cache"); p.status != http.StatusOK {
			t.Fatalf("at %v: status %d", clock(), p.status)
		}
	}
	advance(20 * time.Minute) // 12h after sign-in
	if p := b.get("/admin/cache"); p.status != http.StatusSeeOther {
		t.Errorf("after the maximum age: status %d", p.status)
	}
	b.mustSignIn()
	advance(DefaultIdleTimeout)
	if p := b.get("/admin/cache"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/login?next=%2Fadmin%2Fcache" {
		t.Errorf("after the idle timeout: status %d %s", p.status, p.header.Get("Location"))
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                        "/admin/",
		"/admin/tokens?x=1":       "/admin/tokens?x=1",
		"https://evil.example/":   "/admin/",
		"//evil.example/admin/":   "/admin/",
		"/admin/\\evil":           "/admin/",
		"/manage/projects":        "/admin/",
		"/admin/x\r\nSet-Cookie:": "/admin/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEditForms: the edit, key, activation and token forms change what the
// API stores, a cleared field clears the value, and the API's refusal of an
// edit is shown with the form as it was sent.
func TestEditForms(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	b := h.browser()
	b.mustSignIn()
	ctx := context.Background()
	p := b.post("/admin/projects", "/admin/projects", url.Values{"name": {"team-a"}, "openai_api_key": {"sk-first-0123456789abcdef"},
		"requests_per_minute": {"60"}, "tokens_per_minute": {"1000"}, "monthly_budget_usd": {"10"}, "allow_background": {"on"}, "allow_batches": {"on"}})
	path := p.header.Get("Location")
	pid := strings.TrimPrefix(path, "/admin/projects/")

	// Edit: rename, clear the rpm limit and the budget, turn POST caching on and batches off.
	if p := b.post(path, path, url.Values{"name": {"team-b"}, "tokens_per_minute": {"2000"}, "cache_post": {"on"}, "allow_background": {"on"}}); p.status != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", p.status, p.body)
	}
	got, err := h.store.GetProject(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "team-b" || got.Limits.RequestsPerMinute != nil || got.Limits.TokensPerMinute == nil || *got.Limits.TokensPerMinute != 2000 ||
		got.MonthlyBudgetMicroUSD != nil || !got.CachePOST || !got.AllowBackground || got.AllowBatches {
		t.Errorf("after the edit: %+v", got)
	}
	// A refused edit keeps what was typed and changes nothing.
	p = b.post(path, path, url.Values{"name": {"team-c"}, "max_concurrent": {"-1"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, html.EscapeString(apiMessage(t, h, "PATCH", "/manage/projects/"+pid, `{"limits":{"max_concurrent":-1}}`))) ||
		!strings.Contains(p.body, `value="team-c"`) {
		t.Errorf("refused edit: %d\n%s", p.status, p.body)
	}
	if got, _ := h.store.GetProject(ctx, pid); got.Name != "team-b" {
		t.Errorf("a refused edit renamed the project to %q", got.Name)
	}

	// Capture: on with two patterns and a cap; a refused pattern keeps the
	// card as typed (and the edit card as stored); then off.
	if p := b.post(path, path+"/capture", url.Values{"card": {"capture"}, "capture_enabled": {"on"}, "capture_response_max_bytes": {"4096"},
		"capture_redact": {"email\r\n re:ACME-[0-9]+ \n\n"}}); p.status != http.StatusSeeOther {
		t.Fatalf("capture: %d\n%s", p.status, p.body)
	}
	if got, _ := h.store.GetProject(ctx, pid); !got.Capture.Enabled || got.Capture.ResponseMaxBytes != 4096 || got.Capture.RequestMaxBytes != 0 ||
		strings.Join(got.Capture.Redact, "|") != "email|re:ACME-[0-9]+" {
		t.Errorf("capture stored: %+v", got.Capture)
	}
	if page := b.get(path); !strings.Contains(page.body, "Capture on: request and response bodies go into usage events, redacted.") ||
		!strings.Contains(page.body, `name="capture_response_max_bytes" inputmode="numeric" value="4096"`) ||
		!strings.Contains(page.body, `name="capture_request_max_bytes" inputmode="numeric" value="65536"`) {
		t.Errorf("page after capture on:\n%s", page.body)
	}
	p = b.post(path, path+"/capture", url.Values{"card": {"capture"}, "capture_enabled": {"on"}, "capture_redact": {"re:("}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "capture.redact[0]") || !strings.Contains(p.body, ">re:(</textarea>") ||
		!strings.Contains(p.body, `value="team-b"`) {
		t.Errorf("refused capture: %d\n%s", p.status, p.body)
	}
	if p := b.post(path, path+"/capture", url.Values{"card": {"capture"}}); p.status != http.StatusSeeOther {
		t.Fatalf("capture off: %d", p.status)
	}
	if got, _ := h.store.GetProject(ctx, pid); got.Capture.Enabled || len(got.Capture.Redact) != 0 {
		t.Errorf("capture after off: %+v", got.Capture)
	}

	// Rules: models, a ceiling in clamp mode, parameter values (JSON where
	// they parse) and CORS origins; a refused origin keeps the card as typed.
	if p := b.post(path, path+"/rules", url.Values{"card": {"rules"}, "rules_models": {"gpt-4o*\r\no3-mini\n"}, "rules_max_output_tokens": {"500"},
		"rules_over_max": {"clamp"}, "rules_params": {"n=1\nservice_tier=auto,default"}, "rules_no_tools": {"on"},
		"rules_cors_origins": {"https://*.example.com"}}); p.status != http.StatusSeeOther {
		t.Fatalf("rules: %d\n%s", p.status, p.body)
	}
	got, _ = h.store.GetProject(ctx, pid)
	if b, _ := json.Marshal(got.Rules); string(b) != `{"models":["gpt-4o*","o3-mini"],"max_output_tokens":500,"over_max":"clamp","params":{"n":[1],"service_tier":["auto","default"]},"no_tools":true,"cors":{"origins":["https://*.example.com"]}}` {
		t.Errorf("rules stored: %s", b)
	}
	if page := b.get(path); !strings.Contains(page.body, "Rules saved.") || !strings.Contains(page.body, ">gpt-4o*\no3-mini</textarea>") ||
		!strings.Contains(page.body, ">n=1\nservice_tier=&#34;auto&#34;,&#34;default&#34;</textarea>") {
		t.Errorf("page after rules:\n%s", page.body)
	}
	p = b.post(path, path+"/rules", url.Values{"card": {"rules"}, "rules_cors_origins": {"https://example.com/app"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "rules.cors.origins[0]") || !strings.Contains(p.body, ">https://example.com/app</textarea>") {
		t.Errorf("refused rules: %d\n%s", p.status, p.body)
	}

	// Rotate the key: only its mask is ever shown.
	if p := b.post(path, path+"/key", url.Values{"openai_api_key": {"sk-second-0123456789abcdef"}}); p.status != http.StatusSeeOther {
		t.Fatalf("rotate: %d", p.status)
	}
	if page := b.get(path); !strings.Contains(page.body, "OpenAI key replaced.") || !strings.Contains(page.body, "sk-s…cdef") || strings.Contains(page.body, "sk-second") {
		t.Errorf("after rotating:\n%s", page.body)
	}
	// Deactivate, reactivate.
	for _, active := range []string{"false", "true"} {
		if p := b.post(path, path+"/active", url.Values{"active": {active}}); p.status != http.StatusSeeOther {
			t.Fatalf("active=%s: %d", active, p.status)
		}
		if got, _ := h.store.GetProject(ctx, pid); fmt.Sprint(got.Active) != active {
			t.Errorf("active = %v, want %s", got.Active, active)
		}
	}

	// A token's edit form.
	if p := b.post("/admin/tokens", "/admin/tokens", url.Values{"project_id": {pid}, "name": {"ci"}, "requests_per_minute": {"5"}}); p.status != http.StatusCreated {
		t.Fatalf("create token: %d\n%s", p.status, p.body)
	}
	tokens, _, err := h.store.ListTokensPage(ctx, pid, store.PageQuery{Limit: 10})
	if err != nil || len(tokens) != 1 {
		t.Fatalf("tokens %v, %v", tokens, err)
	}
	tpath := "/admin/tokens/" + tokens[0].ID
	if page := b.get(tpath); !strings.Contains(page.body, `value="5"`) || !strings.Contains(page.body, ">team-b</a>") {
		t.Errorf("token page:\n%s", page.body)
	}
	if p := b.post(tpath, tpath, url.Values{"name": {"ci-2"}, "max_requests": {"50"}, "max_concurrent": {"2"}}); p.status != http.StatusSeeOther {
		t.Fatalf("token edit: %d\n%s", p.status, p.body)
	}
	tok, err := h.store.GetToken(ctx, tokens[0].ID)
	if err != nil || tok.Name != "ci-2" || tok.MaxRequests == nil || *tok.MaxRequests != 50 || tok.Limits.RequestsPerMinute != nil ||
		tok.Limits.MaxConcurrent == nil || *tok.Limits.MaxConcurrent != 2 {
		t.Errorf("after the token edit: %+v, %v", tok, err)
	}
	if p := b.post(tpath, tpath, url.Values{"max_requests": {"many"}}); p.status != http.StatusBadRequest ||
		!strings.Contains(p.body, html.EscapeString(apiMessage(t, h, "PATCH", "/manage/tokens/"+tokens[0].ID, `{"max_requests":"many"}`))) {
		t.Errorf("refused token edit: %d\n%s", p.status, p.body)
	}
	// A token's rules card: no CORS field; the models narrow the project's.
	if page := b.get(tpath); strings.Contains(page.body, "rules_cors_origins") || !strings.Contains(page.body, "narrow its project") {
		t.Errorf("token rules card:\n%s", page.body)
	}
	if p := b.post(tpath, tpath+"/rules", url.Values{"card": {"rules"}, "rules_models": {"gpt-4o-mini"}, "rules_cors_origins": {"https://x.example"}}); p.status != http.StatusSeeOther {
		t.Fatalf("token rules: %d\n%s", p.status, p.body)
	}
	if tok, _ := h.store.GetToken(ctx, tokens[0].ID); len(tok.Rules.Models) != 1 || tok.Rules.Models[0] != "gpt-4o-mini" || tok.Rules.CORS != nil {
		t.Errorf("token rules stored: %+v", tok.Rules)
	}
	if p := b.get("/admin/tokens/tok_nope"); p.status != http.StatusNotFound || !strings.Contains(p.body, "No token with id &#34;tok_nope&#34;.") {
		t.Errorf("unknown token: %d\n%s", p.status, p.body)
	}
}

// TestSignInAgainEndsTheOldSession: signing in again gives a new id and
// ends the one the browser held, and the static folder is not listed.
func TestSignInAgainEndsTheOldSession(t *testing.T) {
	eachSessionStore(t, testSignInAgainEndsTheOldSession)
}

func testSignInAgainEndsTheOldSession(t *testing.T, o harnessOptions) {
	h := newHarness(t, o)
	b := h.browser()
	// The sign-in form of a tab opened before the browser signed in
	// elsewhere: posting it carries the session cookie.
	csrf := csrfOf(t, b.get("/admin/login"))
	b.mustSignIn()
	u, _ := url.Parse(h.srv.URL + "/admin/")
	old := b.client.Jar.Cookies(u)
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: loginCookie, Value: csrf, Path: "/admin"}})
	if p := b.do("POST", "/admin/login", url.Values{"token": {testToken}, csrfField: {csrf}}); p.status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", p.status)
	}
	if now := b.client.Jar.Cookies(u); len(now) == 0 || len(old) == 0 || now[0].Value == old[0].Value {
		t.Fatalf("session id not renewed: %v → %v", old, now)
	}
	replay := h.browser()
	replay.client.Jar.SetCookies(u, old)
	if p := replay.get("/admin/"); p.status != http.StatusSeeOther {
		t.Errorf("the previous session still works: %d", p.status)
	}
	if p := b.get("/admin/static/"); p.status != http.StatusNotFound {
		t.Errorf("/admin/static/: %d", p.status)
	}
	if p := b.get("/admin/static/app.js"); p.status != http.StatusOK || !strings.HasPrefix(p.header.Get("Content-Type"), "text/javascript") {
		t.Errorf("/admin/static/app.js: %d %s", p.status, p.header.Get("Content-Type"))
	}
}

// TestDashboard sums every project's usage by period from the API's usage
// reports, ranks projects and models, and reads health from the metrics.
func TestDashboard(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 31, 15, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_proxy_extproc_decisions_total"}, []string{"outcome"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "llm_proxy_events_dropped_total"})
	spilled := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_proxy_event_sink_spilled_total"}, []string{"sink"})
	degraded := prometheus.NewGauge(prometheus.GaugeOpts{Name: "llm_proxy_ratelimit_degraded"})
	reg.MustRegister(decisions, dropped, spilled, degraded)
	decisions.WithLabelValues("forwarded").Add(40)
	decisions.WithLabelValues("denied").Add(3)
	decisions.WithLabelValues("error").Add(2)
	dropped.Add(5)
	spilled.WithLabelValues("redis").Add(4)
	spilled.WithLabelValues("file").Add(1)
	degraded.Set(1)
	h := newHarness(t, harnessOptions{now: func() time.Time { return now }, metrics: reg,
		dead: func(context.Context) (int64, error) { return 7, nil }})
	b := h.browser()
	b.mustSignIn()
	if p := b.get("/admin/"); !strings.Contains(p.body, `No projects yet — <a href="/admin/projects">create one</a>`) {
		t.Errorf("empty dashboard:\n%s", p.body)
	}
	pid := func(name string) string {
		p := b.post("/admin/projects", "/admin/projects", url.Values{"name": {name}, "openai_api_key": {"sk-test-0123456789"}})
		return strings.TrimPrefix(p.header.Get("Location"), "/admin/projects/")
	}
	a, c := pid("alpha"), pid("gamma")
	err := h.store.AddUsage(context.Background(), []store.UsageRecord{
		{ProjectID: a, Day: "2026-03-31", Model: "gpt-4o", PriceVersion: "v", Requests: 2, Errors: 1, PromptTokens: 10, CompletionTokens: 5, CostMicroUSD: 1_000_000},
		{ProjectID: a, Day: "2026-03-31", Model: "", PriceVersion: "v", Errors: 2}, // refused by the gateway: errors, no requests
		{ProjectID: a, Day: "2026-03-25", Model: "gpt-4o-mini", PriceVersion: "v", Requests: 3, Errors: 4, PromptTokens: 30, CompletionTokens: 0, CostMicroUSD: 10},
		{ProjectID: c, Day: "2026-03-24", Model: "gpt-4o", PriceVersion: "v", Requests: 4, PromptTokens: 40, CompletionTokens: 4, CostMicroUSD: 2_000_000},
		{ProjectID: c, Day: "2026-03-02", Model: "gpt-4o", PriceVersion: "v", Requests: 5, Errors: 8, PromptTokens: 50, CompletionTokens: 5, CostMicroUSD: 500_000},
		{ProjectID: c, Day: "2026-03-01", Model: "gpt-4o", PriceVersion: "v", Requests: 100, Errors: 100, PromptTokens: 1, CompletionTokens: 1, CostMicroUSD: 1}, // 31 days back: out
	})
	if err != nil {
		t.Fatal(err)
	}
	p := b.get("/admin/")
	stats := regexp.MustCompile(`data-stat="requests">([0-9,]+)<`).FindAllStringSubmatch(p.body, -1)
	if len(stats) != 3 || stats[0][1] != "2" || stats[1][1] != "5" || stats[2][1] != "14" {
		t.Errorf("requests today / 7 / 30 days: %q", stats)
	}
	errs := regexp.MustCompile(`data-stat="errors">([0-9,]+)<`).FindAllStringSubmatch(p.body, -1)
	if len(errs) != 3 || errs[0][1] != "3" || errs[1][1] != "7" || errs[2][1] != "15" {
		t.Errorf("errors today / 7 / 30 days: %q", errs)
	}
	for _, want := range []string{
		"$3.50", // spend over 30 days
		`<td><a href="/admin/projects/` + c + `">gamma</a></td><td class="num">9</td><td class="num">99</td><td class="num">$2.50</td>`,
		`<td>gpt-4o</td><td class="num">11</td><td class="num">114</td><td class="num">$3.50</td>`,
		"<title>2026-03-24: $2.00</title>", "<title>2026-03-02: 5</title>", // the first day of 30
		"<dd>40 / 3 / 2 / 0</dd>",
		`<strong class="bad">degraded</strong>`,
		`<strong class="bad">5</strong> / <strong class="bad">5</strong>`,
		`<dd id="dead-letters"><strong class="bad">7</strong></dd>`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
	if spend := regexp.MustCompile(`<dt>Spend</dt><dd class="num">([^<]+)</dd>`).FindAllStringSubmatch(p.body, -1); len(spend) != 3 ||
		spend[0][1] != "$1.00" || spend[1][1] != "$1.00" || spend[2][1] != "$3.50" {
		t.Errorf("spend today / 7 / 30 days: %q", spend)
	}
	if strings.Contains(p.body, "2026-03-01") {
		t.Error("the dashboard shows a day 31 days back")
	}
	if strings.Contains(p.body, `<td></td><td class="num">0</td>`) {
		t.Error("top models list the model-less row of refused requests")
	}
	if strings.Index(p.body, ">gamma</a>") > strings.Index(p.body, ">alpha</a>") {
		t.Error("top projects are not ordered by spend")
	}
}

// eachSessionStore runs a session test with sessions in memory and in Redis.
func eachSessionStore(t *testing.T, test func(*testing.T, harnessOptions)) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    harnessOptions
	}{{"memory", harnessOptions{}}, {"redis", harnessOptions{redis: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			test(t, tc.o)
		})
	}
}

// TestSessionsSharedByReplicas: with Redis, a session started on one
// replica works on another, its notices follow it, and signing out on one
// ends it on both; Redis holds neither the id nor the token.
func TestSessionsSharedByReplicas(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{redis: true})
	one := h.browser()
	one.mustSignIn()
	two := h.browser()
	two.base = h.replica().URL
	two.client.Jar = one.client.Jar // the same browser, routed to another replica
	p := two.post("/admin/projects", "/admin/projects", url.Values{"name": {"team-a"}, "openai_api_key": {"sk-test-0123456789"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("create on the second replica: %d\n%s", p.status, p.body)
	}
	if page := one.get(p.header.Get("Location")); !strings.Contains(page.body, "Project team-a created.") {
		t.Errorf("the notice did not follow the session to the first replica:\n%s", page.body)
	}
	u, _ := url.Parse(h.srv.URL + "/admin/")
	id := one.client.Jar.Cookies(u)[0].Value
	testenv.ForEachNode(t, h.opts.Redis, func(ctx context.Context, node redis.UniversalClient) error {
		keys, err := node.Keys(ctx, h.opts.RedisPrefix+"*").Result()
		for _, k := range keys {
			vals, _ := node.HGetAll(ctx, k).Result()
			if strings.Contains(k, id) || strings.Contains(fmt.Sprint(vals), id) || strings.Contains(fmt.Sprint(vals), testToken) {
				t.Errorf("Redis key %s holds the session id or the token: %v", k, vals)
			}
			if ttl, _ := node.PTTL(ctx, k).Result(); ttl <= 0 || ttl > DefaultIdleTimeout {
				t.Errorf("Redis key %s expires in %v", k, ttl)
			}
		}
		return err
	})
	if p := one.post("/admin/", "/admin/logout", url.Values{}); p.status != http.StatusSeeOther {
		t.Fatalf("sign-out on the first replica: %d", p.status)
	}
	replay := h.browser()
	replay.base = two.base
	replay.client.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: id, Path: "/admin"}})
	if p := replay.get("/admin/"); p.status != http.StatusSeeOther {
		t.Errorf("the second replica still serves the ended session: %d", p.status)
	}
}
