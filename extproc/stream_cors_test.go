package extproc

import (
	"context"
	"io"
	"strconv"
	"testing"

	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

// The CORS principals: one project lists two origins and has a limit of one
// request a minute, one lists the same origins and no limits, and one
// allows only GET from a third origin. tokFree's project lists none.
const (
	tokCORS        = "llmp_cors"
	tokCORSFree    = "llmp_cors_free"
	originApp      = "https://app.example.com"
	originSub      = "https://a.b.example.org" // under https://*.example.org
	originReadOnly = "https://read.example.net"
	originEvil     = "https://evil.example.com"
)

var (
	corsApp      = &policy.CORS{Origins: []string{originApp, "https://*.example.org"}}
	corsReadOnly = &policy.CORS{Origins: []string{originReadOnly}, Methods: []string{"GET"}, Headers: []string{"Authorization"}, MaxAgeSeconds: 60}
)

// staticOrigins is every project's CORS policy, as authz.Origins reads it.
type staticOrigins []*policy.CORS

func (s staticOrigins) CORSPolicies(context.Context) ([]*policy.CORS, error) { return s, nil }

func withCORSProjects(h *harness, o *Options) {
	limited := h.auth.principals[tokFree]
	limited.TokenID, limited.ProjectID = "tok_cors", "proj_cors"
	limited.TokenLimits = store.Limits{RequestsPerMinute: ptr(int64(1))}
	limited.Rules.Project.CORS = corsApp
	h.auth.principals[tokCORS] = limited
	free := h.auth.principals[tokFree]
	free.TokenID, free.ProjectID = "tok_cors_free", "proj_cors"
	free.Rules.Project.CORS = corsApp
	h.auth.principals[tokCORSFree] = free
	o.Origins = staticOrigins{corsApp, corsReadOnly}
}

// endQuiet closes a stream that emits no usage event and waits until the
// server has finished it.
func (c *call) endQuiet() {
	c.t.Helper()
	c.ps.CloseSend()
	if _, err := c.ps.Recv(); err != io.EOF {
		c.t.Fatalf("stream ended with %v, want EOF", err)
	}
}

// A preflight is answered at the request headers with a 204; the CORS
// headers come only when some project allows its origin, method and
// headers. Nothing else happens: no token, no limiter, no audit, no event.
func TestCORSPreflight(t *testing.T) {
	none := map[string]string{"x-request-id": "rid-1"}
	allowed := func(origin, headers string) map[string]string {
		m := map[string]string{
			"x-request-id":                 "rid-1",
			"access-control-allow-origin":  origin,
			"access-control-allow-methods": "GET, POST, DELETE",
			"access-control-max-age":       "600",
			"vary":                         "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		}
		if headers != "" {
			m["access-control-allow-headers"] = headers
		}
		return m
	}
	const sdkHeaders = "Authorization, Content-Type, X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-OS, " +
		"X-Stainless-Arch, X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Retry-Count, X-Stainless-Timeout, OpenAI-Beta"
	const sdkHeadersLower = "authorization, content-type, x-stainless-lang, x-stainless-package-version, x-stainless-os, " +
		"x-stainless-arch, x-stainless-runtime, x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout, openai-beta"
	for _, tc := range []struct {
		name, path, origin, method, headers string
		want                                map[string]string
	}{
		{"exact origin, the JS SDK's headers", "/v1/chat/completions", originApp, "POST", sdkHeaders, allowed(originApp, sdkHeadersLower)},
		{"wildcard subdomain", "/v1/chat/completions", originSub, "POST", "authorization,content-type", allowed(originSub, "authorization, content-type")},
		{"no headers asked for", "/v1/models", originApp, "GET", "", allowed(originApp, "")},
		{"wildcard never covers the apex", "/v1/chat/completions", "https://example.org", "POST", "authorization", none},
		{"other scheme", "/v1/chat/completions", "http://app.example.com", "POST", "authorization", none},
		{"unknown origin", "/v1/chat/completions", originEvil, "POST", "authorization", none},
		{"header not allowed", "/v1/chat/completions", originApp, "POST", "authorization, x-custom", none},
		{"method not in the default list", "/v1/chat/completions", originApp, "PUT", "authorization", none},
		{"method the route does not take", "/v1/chat/completions", originApp, "DELETE", "authorization", none},
		{"unknown path", "/v1/nope", originApp, "GET", "authorization", none},
		{"project's own methods, headers and max age", "/v1/models", originReadOnly, "GET", "authorization", map[string]string{
			"x-request-id":                 "rid-1",
			"access-control-allow-origin":  originReadOnly,
			"access-control-allow-methods": "GET",
			"access-control-allow-headers": "authorization",
			"access-control-max-age":       "60",
			"vary":                         "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		}},
		{"method outside the project's own", "/v1/chat/completions", originReadOnly, "POST", "authorization", none},
		{"header outside the project's own", "/v1/models", originReadOnly, "GET", "authorization, content-type", none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withCORSProjects)
			kv := []string{"origin", tc.origin, "access-control-request-method", tc.method}
			if tc.headers != "" {
				kv = append(kv, "access-control-request-headers", tc.headers)
			}
			c := h.open()
			resp := c.send(reqHeaders("OPTIONS", tc.path, "", kv...))
			checkAnswer(t, 0, resp, answer{status: 204, headers: tc.want})
			if d := resp.GetImmediateResponse().GetDetails(); d != "llm_proxy_cors_preflight" {
				t.Errorf("details %q", d)
			}
			c.endQuiet()
			if len(h.events) != 0 {
				t.Errorf("a preflight emitted a usage event: %v", <-h.events)
			}
			if n := len(h.auth.requests); n != 0 || len(h.limiter.calls()) != 0 || len(h.audit.events()) != 0 {
				t.Errorf("a preflight counted %d requests, reserved %v, audited %v", n, h.limiter.calls(), h.audit.events())
			}
		})
	}
}

// OPTIONS without Origin is no preflight: the allowlist refuses it as any
// other method it does not list (with an Origin, see TestCORSDenials).
func TestCORSNotAPreflight(t *testing.T) {
	h := newHarness(t, withCORSProjects)
	ev := h.do(exchange{reqHeaders("OPTIONS", "/v1/chat/completions", "", "access-control-request-method", "POST"),
		answer{status: 405, code: "method_not_allowed",
			headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1", "allow": "POST, GET"}}})
	if ev.Outcome != outcomeDenied {
		t.Errorf("outcome %q", ev.Outcome)
	}
}

// The answer to a real request carries CORS headers when its own project
// lists its origin; the upstream's CORS headers are removed whatever the
// origin.
func TestCORSRealRequest(t *testing.T) {
	exposed := "x-request-id, x-upstream-request-id, x-ratelimit-limit-requests, x-ratelimit-limit-tokens, " +
		"x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens, " +
		"retry-after, retry-after-ms, x-should-retry, openai-model, openai-processing-ms, openai-version, cache-status, age"
	upstream := []string{"content-type", "application/json", "vary", "Accept-Encoding",
		"access-control-allow-origin", "*", "access-control-allow-credentials", "true"}
	for _, tc := range []struct {
		name, token, origin string
		headers             map[string]string
		removed             []string
	}{
		{"allowed", tokCORSFree, originApp, map[string]string{"x-request-id": "rid-1",
			"access-control-allow-origin": originApp, "access-control-expose-headers": exposed, "vary": "Accept-Encoding, Origin"},
			[]string{"access-control-allow-credentials"}},
		{"allowed by wildcard", tokCORSFree, originSub, map[string]string{"x-request-id": "rid-1",
			"access-control-allow-origin": originSub, "access-control-expose-headers": exposed, "vary": "Accept-Encoding, Origin"},
			[]string{"access-control-allow-credentials"}},
		{"origin another project lists", tokFree, originApp, map[string]string{"x-request-id": "rid-1"},
			[]string{"access-control-allow-origin", "access-control-allow-credentials"}},
		{"unknown origin", tokCORSFree, originEvil, map[string]string{"x-request-id": "rid-1"},
			[]string{"access-control-allow-origin", "access-control-allow-credentials"}},
		{"no origin", tokCORSFree, "", map[string]string{"x-request-id": "rid-1"},
			[]string{"access-control-allow-origin", "access-control-allow-credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Without events and cache, only CORS asks for the response
			// headers of a free GET.
			h := newHarness(t, withCORSProjects, withoutEvents, withoutCache)
			var kv []string
			mode := modeNothingAfter
			if tc.origin != "" {
				kv, mode = []string{"origin", tc.origin}, modeHeadersOnly
			}
			c := h.open()
			checkAnswer(t, 0, c.send(reqHeaders("GET", "/v1/models", tc.token, kv...)), answer{headers: swapped, mode: mode})
			checkAnswer(t, 1, c.send(respHeaders(200, upstream...)), answer{headers: tc.headers, removed: tc.removed})
			c.end()
		})
	}
	t.Run("answer that varies by origin already", func(t *testing.T) {
		h := newHarness(t, withCORSProjects, withoutEvents, withoutCache)
		c := h.open()
		c.send(reqHeaders("GET", "/v1/models", tokCORSFree, "origin", originApp))
		checkAnswer(t, 1, c.send(respHeaders(200, "content-type", "application/json", "vary", "origin")), answer{headers: map[string]string{
			"x-request-id": "rid-1", "access-control-allow-origin": originApp, "access-control-expose-headers": exposed}})
		c.end()
	})
}

// The sidecar's own answers carry the CORS headers too, so a page can read
// why it was refused: judged by the project once the token is known, and
// against every project before.
func TestCORSDenials(t *testing.T) {
	cors := func(origin string, kv ...string) map[string]string {
		m := map[string]string{"content-type": "application/json", "x-request-id": "rid-1",
			"access-control-allow-origin": origin, "access-control-expose-headers": corsExposed, "vary": "Origin"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	plain := map[string]string{"content-type": "application/json", "x-request-id": "rid-1"}
	retry := []string{"retry-after", "60", "retry-after-ms", "60000"}
	h := newHarness(t, withCORSProjects, withoutCache)
	// tokCORS's project may make one request a minute: this one.
	h.do(exchange{reqHeaders("GET", "/v1/models", tokCORS), answer{headers: swapped, mode: modeHeadersOnly}},
		exchange{respHeaders(200, "content-type", "application/json"), answer{headers: map[string]string{"x-request-id": "rid-1",
			"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s"}}})
	for _, tc := range []struct {
		name, method, path, token, origin string
		want                              answer
	}{
		{"no token, an origin some project lists", "GET", "/v1/models", "", originApp,
			answer{status: 401, code: "invalid_api_key", headers: cors(originApp)}},
		{"no token, an origin no project lists", "GET", "/v1/models", "", originEvil,
			answer{status: 401, code: "invalid_api_key", headers: plain}},
		{"unknown token, an origin some project lists", "GET", "/v1/models", "llmp_nope", originReadOnly,
			answer{status: 401, code: "invalid_api_key", headers: cors(originReadOnly)}},
		{"unknown URL", "GET", "/v1/nope", tokCORS, originSub,
			answer{status: 404, code: "unknown_url", headers: cors(originSub)}},
		{"method not allowed (OPTIONS without Access-Control-Request-Method)", "OPTIONS", "/v1/chat/completions", "", originApp,
			answer{status: 405, code: "method_not_allowed", headers: cors(originApp, "allow", "POST, GET")}},
		{"rate limit, an origin of the project", "GET", "/v1/models", tokCORS, originApp,
			answer{status: 429, code: "rate_limit_exceeded", headers: cors(originApp, retry...)}},
		{"rate limit, an origin only another project lists", "GET", "/v1/models", tokCORS, originReadOnly,
			answer{status: 429, code: "rate_limit_exceeded", headers: map[string]string{"content-type": "application/json",
				"x-request-id": "rid-1", "retry-after": "60", "retry-after-ms": "60000"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := h.do(exchange{reqHeaders(tc.method, tc.path, tc.token, "origin", tc.origin), tc.want})
			if ev.Outcome != outcomeDenied || int(ev.Status) != tc.want.status {
				t.Errorf("event outcome %q status %d", ev.Outcome, ev.Status)
			}
		})
	}
}

// A cache entry holds no CORS headers: a hit is answered with those of the
// request it answers, whichever origin filled it.
func TestCORSCacheHitPerOrigin(t *testing.T) {
	h := newHarness(t, withCORSProjects)
	const models = `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}`
	// Filled by a page of one origin; OpenAI's answer says it varies by
	// Origin and allows any.
	h.do(
		exchange{reqHeaders("GET", "/v1/models", tokCORSFree, "origin", originApp), answer{headers: swapped, mode: modeHeadersOnly}},
		exchange{respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(models)),
			"vary", "Origin", "access-control-allow-origin", "*", "openai-version", "2020-10-01"),
			answer{headers: map[string]string{"x-request-id": "rid-1", "cache-status": "llm-proxy; fwd=miss",
				"access-control-allow-origin": originApp, "access-control-expose-headers": corsExposed}, mode: modeBufferedBody}},
		exchange{respBody(models, true), answer{}},
	)
	hit := func(kv ...string) map[string]string {
		m := map[string]string{"x-request-id": "rid-1", "content-type": "application/json", "content-length": strconv.Itoa(len(models)),
			"openai-version": "2020-10-01", "age": "0", "cache-status": "llm-proxy; hit; ttl=60"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for i, tc := range []struct {
		origin string
		want   map[string]string
	}{
		{originSub, hit("access-control-allow-origin", originSub, "access-control-expose-headers", corsExposed, "vary", "Origin")},
		{originEvil, hit()},
		{"", hit()},
		{originApp, hit("access-control-allow-origin", originApp, "access-control-expose-headers", corsExposed, "vary", "Origin")},
	} {
		var kv []string
		if tc.origin != "" {
			kv = []string{"origin", tc.origin}
		}
		h.do(exchange{reqHeaders("GET", "/v1/models", tokCORSFree, kv...), answer{status: 200, headers: tc.want, body: text(models)}})
		if n := h.auth.hits("tok_cors_free"); n != i+1 {
			t.Fatalf("request %d (%q): %d cache hits, want %d", i, tc.origin, n, i+1)
		}
	}
}
