package extproc

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

// Cache states recorded in the usage event.
const (
	cacheHit    = "hit"
	cacheMiss   = "miss"
	cacheBypass = "bypass"
)

// cacheState is what the cache keeps of one stream: whether the request was
// a hit, a miss or bypassed the cache, and for a miss its key, the release
// of the requests waiting on its fill and the capture of its response.
type cacheState struct {
	status  string // cacheHit, cacheMiss, cacheBypass; "" when never looked up
	key     string
	unlock  func() // lets identical requests waiting on this one go on
	capture *cachefilter.Capture
	ttl     time.Duration     // of the entry to store
	headers map[string]string // of the entry to store
}

// responseCache is the response cache (package cachefilter).
type responseCache interface {
	Get(ctx context.Context, projectID, key string) (*cachefilter.Entry, bool, error)
	Set(ctx context.Context, projectID, key string, e *cachefilter.Entry) error
	Acquire(ctx context.Context, projectID, key string, wait time.Duration) (leader bool, entry *cachefilter.Entry, release func())
	InFlight(projectID, key string) bool
	Purge(ctx context.Context, projectID, key string) (int, error)
}

// defaultTTL is how long a response that names no lifetime is kept: the
// configured TTL for opted-in POSTs and immutable GETs (a model, a file's
// content), none for a GET of something that changes (a background response,
// a batch, a file's status): a poll must never be answered stale.
func (st *stream) defaultTTL() time.Duration {
	if st.method == http.MethodPost || (st.route != nil && st.route.Immutable) {
		return st.srv.cacheTTL
	}
	return 0
}

// purgeWritten drops what the cache holds of a resource a successful write
// changed (a cancel, a delete): the GET and HEAD of the resource and the GET
// of its collection, as this client would have asked for them.
func (st *stream) purgeWritten() {
	if st.srv.cache == nil || st.status/100 != 2 || (st.method != http.MethodDelete && !strings.HasSuffix(st.path, "/cancel")) {
		return
	}
	resource := strings.TrimSuffix(st.path, "/cancel")
	collection := resource[:strings.LastIndexByte(resource, '/')]
	variant := cachefilter.Variant(st.reqHeaders)
	for _, r := range [...]struct{ method, path string }{{http.MethodGet, resource}, {http.MethodHead, resource}, {http.MethodGet, collection}} {
		key, err := cachefilter.KeyFor(st.principal.ProjectID, r.method, r.path, "", nil, variant)
		if err != nil {
			continue
		}
		if _, err := st.srv.cache.Purge(st.ctx, st.principal.ProjectID, key); err != nil {
			st.logger().Warn().Err(err).Msg("cache purge after write failed")
		}
	}
}

// lookupCache answers a request from the cache when it may be and an entry
// exists; it returns nil to go upstream. GET and HEAD are looked up at the
// request headers, opt-in POSTs at the body (the key covers the canonical
// JSON). Identical concurrent misses wait for one upstream call (Acquire).
// Keys are scoped by project, so no project ever sees another's entries.
func (st *stream) lookupCache(body []byte) *extprocv3.ProcessingResponse {
	if st.srv.cache == nil {
		return nil
	}
	ok, maxAge := cachefilter.Lookupable(st.method, st.reqHeaders, st.principal.CachePOST)
	if !ok || st.rules.filterList { // a model list filtered for this token is not the project's entry (stream_rules.go)
		st.cache.status = cacheBypass
		return nil
	}
	_, query, _ := strings.Cut(st.reqHeaders.get(":path"), "?")
	key, err := cachefilter.KeyFor(st.principal.ProjectID, st.method, st.path, query, body, cachefilter.Variant(st.reqHeaders))
	if err != nil {
		st.cache.status = cacheBypass
		return nil
	}
	project := st.principal.ProjectID
	if e, found, err := st.srv.cache.Get(st.ctx, project, key); err == nil && found && fresh(e, maxAge, st.srv.now()) {
		return st.serveHit(e)
	}
	if st.srv.cache.InFlight(project, key) {
		st.extendTimeout(st.srv.cacheWait + time.Second)
	}
	leader, e, release := st.srv.cache.Acquire(st.ctx, project, key, st.srv.cacheWait)
	if !leader && e != nil {
		return st.serveHit(e)
	}
	st.cache.key, st.cache.unlock, st.cache.status = key, release, cacheMiss
	return nil
}

func fresh(e *cachefilter.Entry, maxAge time.Duration, now time.Time) bool {
	return maxAge <= 0 || e.Age(now) <= maxAge
}

// serveHit answers with the stored response. A hit has used a request-rate
// slot (it was admitted) but no tokens, and counts as the token's cache hit.
func (st *stream) serveHit(e *cachefilter.Entry) *extprocv3.ProcessingResponse {
	st.cache.status = cacheHit
	st.status = e.Status
	st.srv.counter.CountCacheHit(st.principal.TokenID)
	hs := append([]*corev3.HeaderValueOption{setHeader("x-request-id", st.requestID)}, st.rateLimitHeaders()...)
	for k, v := range e.ImmediateHeaders(st.srv.now()) {
		hs = append(hs, setHeader(k, v))
	}
	body := e.Body
	if st.method == http.MethodHead {
		body = nil
	}
	hs = append(hs, setHeader("content-length", strconv.Itoa(len(e.Body))))
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(e.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: hs},
			Body:    body,
			Details: "llm_proxy_cache_hit",
		},
	}}
}

// watchCache decides at the response headers whether the response will be
// stored, and starts a bounded capture of its body if so.
func (st *stream) watchCache(resp headers) []*corev3.HeaderValueOption {
	if st.cache.status != cacheMiss {
		return nil
	}
	ttl, ok := cachefilter.Storable(st.method, st.reqHeaders, optInView(st.method, resp), st.status, st.defaultTTL())
	if ok && st.usage.encoding == "" { // stored bodies are identity
		st.cache.ttl = ttl
		st.cache.headers = cachefilter.StoredHeaders(resp.all)
		if strings.HasPrefix(resp.get("content-type"), "text/event-stream") {
			st.cache.capture = cachefilter.NewStreamCapture(st.srv.cacheMaxEntry)
		} else {
			st.cache.capture = cachefilter.NewCapture(st.srv.cacheMaxEntry)
		}
	} else {
		// Nothing will be stored (an error, no-store, an encoded body):
		// identical requests
		// waiting on this one go upstream now rather than after it ends.
		st.cache.release()
	}
	return []*corev3.HeaderValueOption{setHeader("cache-status", cachefilter.MissStatus(false))}
}

// captureChunk tees a body chunk into the capture and stores the entry once
// the response is complete: a truncated or aborted stream never is.
func (st *stream) captureChunk(chunk []byte, end bool) {
	if st.cache.capture == nil {
		return
	}
	if !st.buffers.take("cache_capture", int64(len(chunk))) || !st.cache.capture.Write(chunk) {
		// Larger than an entry may be, or than the buffer budget has room
		// for: it will not be stored, so the requests waiting on it need
		// not wait for its end.
		st.cache.capture = nil
		st.cache.release()
		return
	}
	if !end {
		return
	}
	st.cache.capture.End()
	if st.cache.capture.Complete() {
		e := &cachefilter.Entry{Status: st.status, Path: st.path, Header: st.cache.headers, Body: st.cache.capture.Bytes(),
			Stream: st.cache.capture.Stream(), TTL: st.cache.ttl}
		if err := st.srv.cache.Set(st.ctx, st.principal.ProjectID, st.cache.key, e); err != nil {
			st.logger().Warn().Err(err).Msg("cache store failed")
		}
	}
	st.cache.capture = nil
	st.cache.release()
}

// release lets requests waiting on this one's fill go on.
func (c *cacheState) release() {
	if c.unlock != nil {
		c.unlock()
		c.unlock = nil
	}
}

// optInView is the response as the storing decision sees it. A POST is only
// ever looked up because its client or its project opted in explicitly, and
// OpenAI marks
// every SSE stream "no-cache" (meant for intermediaries of a live stream):
// for an opted-in POST that directive does not veto storing. no-store and
// private still do.
func optInView(method string, resp headers) cachefilter.Header {
	cc, ok := resp.Lookup("cache-control")
	if method != http.MethodPost || !ok {
		return resp
	}
	var kept []string
	for _, d := range strings.Split(cc, ",") {
		switch strings.ToLower(strings.TrimSpace(d)) {
		case "no-cache", "must-revalidate":
		default:
			kept = append(kept, strings.TrimSpace(d))
		}
	}
	return withHeader{resp, "cache-control", strings.Join(kept, ", ")}
}

// withHeader is a Header with one header's value replaced.
type withHeader struct {
	cachefilter.Header
	name, value string
}

func (w withHeader) Lookup(name string) (string, bool) {
	if name == w.name {
		return w.value, true
	}
	return w.Header.Lookup(name)
}
