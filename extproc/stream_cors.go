package extproc

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/policy"
)

// CORS for browser apps: a page of another origin may call the API with a
// proxy token when the token's project lists that origin (policy.CORS).
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) carries
// no token: it is answered here, at the request headers, with a 204 that
// never reaches OpenAI, the limiter, the failure counts or the audit log,
// judged against the origins of every project (package authz's Origins). The
// real request is judged against its own project: its answer — forwarded, a
// denial or a cache hit — carries Access-Control-Allow-Origin naming the
// origin (never *), Vary: Origin and the headers a page may read; a request
// from an origin its project does not list gets no CORS headers at all, and
// the browser keeps the answer from the page. A request refused before its
// token is known (none, an unknown one) is judged as its preflight was, so
// that the page can read why.
//
// Whatever CORS headers the upstream sends are removed: the gateway alone
// decides. Cached entries never hold CORS headers or Vary (the cache keeps
// only the headers of cachefilter.StoredHeaders, and its key ignores Origin):
// a hit is the same for every origin and gets the headers of the request it
// answers, added here like on any other answer.

// corsPolicies is the CORS policy of every project, for preflights
// (package authz).
type corsPolicies interface {
	CORSPolicies(ctx context.Context) ([]*policy.CORS, error)
}

var _ corsPolicies = (*authz.Origins)(nil)

// outcomePreflight is the outcome of a CORS preflight: answered by the
// sidecar, no API request, no usage event.
const outcomePreflight = "preflight"

// What a project's CORS policy allows when it names no methods or headers,
// and how long a browser may cache a preflight then. The headers are what
// the OpenAI SDKs send from a browser; a header ending in * stands for any
// header it begins (the JS SDK's x-stainless-lang, -package-version, -os,
// -arch, -runtime, -runtime-version, -retry-count, -timeout, -helper-method…).
var (
	defaultCORSMethods = []string{http.MethodGet, http.MethodPost, http.MethodDelete}
	defaultCORSHeaders = []string{"authorization", "content-type", "openai-beta", "openai-organization", "openai-project", "x-stainless-*"}
)

const defaultCORSMaxAge = 600

// corsExposed are the response headers a page may read besides the
// CORS-safelisted ones: the request ids, the rate limits and retry advice
// the SDKs act on, OpenAI's model and timing headers, and the cache's.
const corsExposed = "x-request-id, x-upstream-request-id, " +
	"x-ratelimit-limit-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-requests, " +
	"x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens, " +
	"retry-after, retry-after-ms, x-should-retry, openai-model, openai-processing-ms, openai-version, " +
	"cache-status, age"

// corsPreflightVary: a preflight's answer depends on all three.
const corsPreflightVary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

// corsState is what CORS keeps of one stream: the request's Origin and
// whether it was a preflight.
type corsState struct {
	origin    string // "" when the request has none
	preflight bool
}

// preflight answers a CORS preflight with a 204 — with the CORS headers
// when some project allows its origin, method and headers, without them
// otherwise — and returns nil for any other request, whose Origin it keeps
// for the answer's CORS headers.
func (st *stream) preflight(h headers) *extprocv3.ProcessingResponse {
	st.cors.origin = h.get("origin")
	method, ok := h.Lookup("access-control-request-method")
	if st.method != http.MethodOptions || st.cors.origin == "" || !ok {
		return nil
	}
	st.cors.preflight, st.outcome = true, outcomePreflight
	hs := []*corev3.HeaderValueOption{setHeader("x-request-id", st.requestID)}
	requested := headerList(h.get("access-control-request-headers"))
	if p := st.preflightPolicy(method, requested); p != nil {
		methods := p.Methods
		if len(methods) == 0 {
			methods = defaultCORSMethods
		}
		maxAge := p.MaxAgeSeconds
		if maxAge == 0 {
			maxAge = defaultCORSMaxAge
		}
		hs = append(hs,
			setHeader("access-control-allow-origin", st.cors.origin),
			setHeader("access-control-allow-methods", strings.Join(methods, ", ")),
			setHeader("access-control-max-age", strconv.Itoa(maxAge)),
			setHeader("vary", corsPreflightVary))
		if len(requested) > 0 {
			// The names asked for, each allowed: a list of patterns
			// (x-stainless-*) would not do, and * never covers Authorization.
			hs = append(hs, setHeader("access-control-allow-headers", strings.Join(requested, ", ")))
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_NoContent},
			Headers: &extprocv3.HeaderMutation{SetHeaders: hs},
			Details: "llm_proxy_cors_preflight",
		},
	}}
}

// preflightPolicy is the policy of a project that allows the preflight's
// origin, method and headers, or nil. A method the route does not take is
// refused here already: the request itself would be.
func (st *stream) preflightPolicy(method string, requested []string) *policy.CORS {
	if _, err := st.srv.routes.match(method, st.path); err != nil {
		return nil
	}
	for _, p := range st.projectsCORS() {
		if p.AllowsOrigin(st.cors.origin) && corsAllowsMethod(p, method) && corsAllowsHeaders(p, requested) {
			return p
		}
	}
	return nil
}

// projectsCORS is every project's CORS policy; none when they cannot be read
// (logged: the browser then refuses, as it would for an unknown origin).
func (st *stream) projectsCORS() []*policy.CORS {
	if st.srv.origins == nil {
		return nil
	}
	ps, err := st.srv.origins.CORSPolicies(st.ctx)
	if err != nil {
		st.logger().Warn().Err(err).Msg("CORS origins unavailable")
	}
	return ps
}

func corsAllowsMethod(p *policy.CORS, method string) bool {
	if len(p.Methods) == 0 {
		return slices.Contains(defaultCORSMethods, method)
	}
	return slices.Contains(p.Methods, method)
}

// corsAllowsHeaders reports whether every requested header (lower-case) is
// one the policy names, case-insensitively, or begins what a name ending
// in * begins.
func corsAllowsHeaders(p *policy.CORS, requested []string) bool {
	allowed := p.Headers
	if len(allowed) == 0 {
		allowed = defaultCORSHeaders
	}
	for _, r := range requested {
		if !slices.ContainsFunc(allowed, func(a string) bool {
			if prefix, ok := strings.CutSuffix(a, "*"); ok {
				return len(r) >= len(prefix) && strings.EqualFold(r[:len(prefix)], prefix)
			}
			return strings.EqualFold(a, r)
		}) {
			return false
		}
	}
	return true
}

// headerList splits Access-Control-Request-Headers into lower-case names.
func headerList(v string) []string {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// corsAllowed reports whether the answer to this (real) request may be read
// by its origin: its project lists it; before the project is known, some
// project does.
func (st *stream) corsAllowed() bool {
	if st.cors.origin == "" || st.cors.preflight {
		return false
	}
	if st.principal.ProjectID != "" {
		return st.principal.Rules.Project.CORS.AllowsOrigin(st.cors.origin)
	}
	return slices.ContainsFunc(st.projectsCORS(), func(p *policy.CORS) bool { return p.AllowsOrigin(st.cors.origin) })
}

// corsHeaders are the CORS headers of a real request's answer, none when
// its origin may not read it. vary is the answer's own Vary, which Origin
// joins.
func (st *stream) corsHeaders(vary string) []*corev3.HeaderValueOption {
	if !st.corsAllowed() {
		return nil
	}
	hs := []*corev3.HeaderValueOption{
		setHeader("access-control-allow-origin", st.cors.origin),
		setHeader("access-control-expose-headers", corsExposed),
	}
	if !varies(vary, "origin") {
		if vary != "" {
			vary += ", "
		}
		hs = append(hs, setHeader("vary", vary+"Origin"))
	}
	return hs
}

// varies reports whether a Vary value names header (lower-case) or *.
func varies(vary, header string) bool {
	for n := range strings.SplitSeq(vary, ",") {
		if n = strings.TrimSpace(n); n == "*" || strings.EqualFold(n, header) {
			return true
		}
	}
	return false
}

// upstreamCORS names the CORS headers of an upstream answer (OpenAI's own)
// that the gateway does not set itself, to be removed: the gateway alone
// decides who may read an answer.
func upstreamCORS(resp headers, set []*corev3.HeaderValueOption) []string {
	var remove []string
	for name := range resp.all {
		if strings.HasPrefix(name, "access-control-") && !slices.Contains(remove, name) &&
			!slices.ContainsFunc(set, func(s *corev3.HeaderValueOption) bool { return s.GetHeader().GetKey() == name }) {
			remove = append(remove, name)
		}
	}
	return remove
}

// withCORS adds the request's CORS headers to an immediate answer — a
// denial, a cache hit — so that a page reads it as it would a forwarded
// one. Other answers pass unchanged.
func (st *stream) withCORS(resp *extprocv3.ProcessingResponse) *extprocv3.ProcessingResponse {
	ir := resp.GetImmediateResponse()
	if ir == nil || st.cors.origin == "" || st.cors.preflight {
		return resp
	}
	if hs := st.corsHeaders(""); len(hs) > 0 {
		if ir.Headers == nil {
			ir.Headers = &extprocv3.HeaderMutation{}
		}
		ir.Headers.SetHeaders = append(ir.Headers.SetHeaders, hs...)
	}
	return resp
}
