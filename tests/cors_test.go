package tests

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// corsExposedHeaders is the Access-Control-Expose-Headers of every answer
// to an allowed origin.
const corsExposedHeaders = "x-request-id, x-upstream-request-id, x-ratelimit-limit-requests, x-ratelimit-limit-tokens, " +
	"x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens, " +
	"retry-after, retry-after-ms, x-should-retry, openai-model, openai-processing-ms, openai-version, cache-status, age"

// corsHeaders are the CORS headers of an answer (and Vary), by canonical
// name; each header's values joined by ", ".
func corsHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k, vs := range h {
		if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
			out[k] = strings.Join(vs, ", ")
		}
	}
	return out
}

// TestCORSThroughEnvoy: a project lists browser origins; preflights are
// answered through the reference Envoy without reaching OpenAI, answers
// carry the CORS headers of their own project, a cache hit those of the
// request it answers; and a real Chromium page of a listed origin reads the
// API's answers with fetch() while pages of other origins cannot.
func TestCORSThroughEnvoy(t *testing.T) {
	s := startStack(t, stackOptions{})
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<!doctype html><title>app</title><p>browser app</p>")
	}
	// Two pages: an origin the project lists, and one nobody does (same
	// host, another port: another origin).
	listed := httptest.NewServer(http.HandlerFunc(page))
	t.Cleanup(listed.Close)
	unlisted := httptest.NewServer(http.HandlerFunc(page))
	t.Cleanup(unlisted.Close)
	const subdomain = "https://app.example.test" // under https://*.example.test

	a := s.createProject("browser-app", "sk-cors-project-a-0123456789")
	setOrigins := func(origins ...string) {
		t.Helper()
		s.mustManage("PATCH", "/manage/projects/"+a.ID, map[string]any{"rules": map[string]any{
			"cors": map[string]any{"origins": origins}}}, 200, nil)
	}
	setOrigins(listed.URL, "https://*.example.test")
	tokA := s.createToken(map[string]any{"project_id": a.ID})
	b := s.createProject("server-app", "sk-cors-project-b-0123456789") // lists no origin
	tokB := s.createToken(map[string]any{"project_id": b.ID})

	do := func(method, path, token, origin string, kv ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, s.envoyURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for i := 0; i < len(kv); i += 2 {
			req.Header.Set(kv[i], kv[i+1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req) // no Accept-Encoding added: Envoy's compressor leaves Vary alone
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	// Envoy's compressor adds Accept-Encoding to the Vary of every answer
	// it could compress (JSON, or no content type at all), after the
	// sidecar's own.
	none := map[string]string{"Vary": "Accept-Encoding"}

	t.Run("preflight", func(t *testing.T) {
		allowed := func(origin, headers string) map[string]string {
			return map[string]string{
				"Access-Control-Allow-Origin":  origin,
				"Access-Control-Allow-Methods": "GET, POST, DELETE",
				"Access-Control-Allow-Headers": headers,
				"Access-Control-Max-Age":       "600",
				"Vary":                         "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Accept-Encoding",
			}
		}
		const asked = "authorization, content-type, x-stainless-lang, x-stainless-retry-count"
		before := s.upstream.Count()
		for _, tc := range []struct {
			name, origin, method string
			want                 map[string]string
		}{
			{"listed origin", listed.URL, "POST", allowed(listed.URL, asked)},
			{"wildcard subdomain", subdomain, "POST", allowed(subdomain, asked)},
			{"unlisted origin", unlisted.URL, "POST", none},
			{"apex of the wildcard", "https://example.test", "POST", none},
			{"method no project allows", listed.URL, "PUT", none},
		} {
			resp, body := do("OPTIONS", "/v1/chat/completions", "", tc.origin,
				"Access-Control-Request-Method", tc.method, "Access-Control-Request-Headers", asked)
			if resp.StatusCode != 204 || len(body) != 0 || resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s: %d %q, x-request-id %q", tc.name, resp.StatusCode, body, resp.Header.Get("X-Request-Id"))
			}
			if got := corsHeaders(resp.Header); !maps.Equal(got, tc.want) {
				t.Errorf("%s: CORS headers %v, want %v", tc.name, got, tc.want)
			}
		}
		if n := s.upstream.Count(); n != before {
			t.Errorf("preflights reached the upstream: %d requests", n-before)
		}

		// A project's new origin answers the very next preflight: the
		// management API's invalidation refreshes the sidecar's copy of
		// every project's origins, with no TTL to wait for.
		setOrigins(listed.URL, "https://*.example.test", unlisted.URL)
		resp, _ := do("OPTIONS", "/v1/chat/completions", "", unlisted.URL,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", asked)
		if got, want := corsHeaders(resp.Header), allowed(unlisted.URL, asked); resp.StatusCode != 204 || !maps.Equal(got, want) {
			t.Errorf("origin just added: %d %v, want %v", resp.StatusCode, got, want)
		}
		setOrigins(listed.URL, "https://*.example.test")
		resp, _ = do("OPTIONS", "/v1/chat/completions", "", unlisted.URL,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", asked)
		if got := corsHeaders(resp.Header); !maps.Equal(got, none) {
			t.Errorf("origin just removed: %v, want %v", got, none)
		}
	})

	t.Run("answers", func(t *testing.T) {
		allowed := func(origin string) map[string]string {
			return map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": corsExposedHeaders,
				"Vary": "Origin, Accept-Encoding"}
		}
		for _, tc := range []struct {
			name, token, origin string
			status              int
			cache               string // Cache-Status, "" not checked
			want                map[string]string
		}{
			{"listed origin, stored", tokA.Token, listed.URL, 200, "llm-proxy; fwd=miss", allowed(listed.URL)},
			{"a hit for another listed origin", tokA.Token, subdomain, 200, "llm-proxy; hit; ttl=", allowed(subdomain)},
			{"a hit for an unlisted origin", tokA.Token, unlisted.URL, 200, "llm-proxy; hit; ttl=", none},
			{"a hit without Origin", tokA.Token, "", 200, "llm-proxy; hit; ttl=", none},
			{"an origin only another project lists", tokB.Token, listed.URL, 200, "llm-proxy; fwd=miss", none},
			{"no token, a listed origin", "", listed.URL, 401, "", allowed(listed.URL)},
			{"no token, an unlisted origin", "", unlisted.URL, 401, "", none},
		} {
			resp, body := do("GET", "/v1/models", tc.token, tc.origin)
			if resp.StatusCode != tc.status {
				t.Errorf("%s: status %d: %s", tc.name, resp.StatusCode, body)
			}
			if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, tc.cache) {
				t.Errorf("%s: Cache-Status %q, want %q…", tc.name, cs, tc.cache)
			}
			if got := corsHeaders(resp.Header); !maps.Equal(got, tc.want) {
				t.Errorf("%s: CORS headers %v, want %v", tc.name, got, tc.want)
			}
		}
	})

	t.Run("browser", func(t *testing.T) {
		browserCORS(t, s, listed.URL, unlisted.URL, tokB.Token, a.ID)
	})
}

// requestIDRE matches the request ids Envoy gives external requests.
var requestIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// fetchResult is what the page's fetch() saw.
type fetchResult struct {
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
	Remaining string `json:"remaining"`
	Content   string `json:"content"`
	Code      string `json:"code"`
	Error     string `json:"error"`
}

// browserCORS opens the pages in a headless Chromium and calls the API
// through Envoy with fetch(), as a browser app with a proxy token would.
func browserCORS(t *testing.T, s *stack, listed, unlisted, tokOther, projectID string) {
	// A token of its own, with a rate limit whose headers the page reads.
	tok := s.createToken(map[string]any{"project_id": projectID, "limits": map[string]any{"requests_per_minute": 10}})

	ctx := browser(t, 2*time.Minute)

	fetch := func(pageURL, token string) fetchResult {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
			t.Fatalf("open %s: %v", pageURL, err)
		}
		headers := `{"Content-Type": "application/json", "X-Stainless-Lang": "js", "X-Stainless-Retry-Count": "0"}`
		if token != "" {
			headers = `{"Authorization": "Bearer ` + token + `", "Content-Type": "application/json", "X-Stainless-Lang": "js", "X-Stainless-Retry-Count": "0"}`
		}
		js := fmt.Sprintf(`(async () => {
	try {
		const r = await fetch(%q, {method: "POST", headers: %s,
			body: JSON.stringify({model: "gpt-4o-mini", messages: [{role: "user", content: "Say hi"}]})});
		const j = await r.json();
		return {status: r.status, request_id: r.headers.get("x-request-id") || "",
			remaining: r.headers.get("x-ratelimit-remaining-requests") || "",
			content: j.choices ? j.choices[0].message.content : "", code: j.error ? j.error.code : "", error: ""};
	} catch (e) {
		return {status: 0, request_id: "", remaining: "", content: "", code: "", error: e.name + ": " + e.message};
	}
})()`, s.envoyURL+"/v1/chat/completions", headers)
		res, err := chromedp.Run(ctx, chromedp.Evaluate[fetchResult](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("fetch from %s: %v", pageURL, err)
		}
		return res
	}
	blocked := fetchResult{Error: "TypeError: Failed to fetch"}

	// A listed origin reads the answer, its request id and rate limit.
	got := fetch(listed, tok.Token)
	if got.Status != 200 || got.Content != fakeopenai.EchoReply("Say hi") || !requestIDRE.MatchString(got.RequestID) ||
		got.Remaining != "9" || got.Code != "" || got.Error != "" {
		t.Errorf("listed origin: %+v", got)
	}
	// And the gateway's own refusals.
	if got := fetch(listed, ""); got.Status != 401 || got.Code != "invalid_api_key" || !requestIDRE.MatchString(got.RequestID) ||
		got.Content != "" || got.Error != "" {
		t.Errorf("listed origin, no token: %+v", got)
	}
	// Another origin: the preflight has no CORS headers, the request is
	// never sent.
	before := s.upstream.Count()
	if got := fetch(unlisted, tok.Token); got != blocked {
		t.Errorf("unlisted origin: %+v, want %+v", got, blocked)
	}
	if n := s.upstream.Count(); n != before {
		t.Errorf("a request of an unlisted origin reached the upstream (%d)", n-before)
	}
	// A listed origin with a token of a project that does not list it: the
	// preflight passes (some project lists the origin), the answer has no
	// CORS headers, and the page cannot read it.
	if got := fetch(listed, tokOther); got != blocked {
		t.Errorf("listed origin, another project's token: %+v, want %+v", got, blocked)
	}
}
