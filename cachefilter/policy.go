package cachefilter

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// cacheControl is what the policy reads of a Cache-Control header.
type cacheControl struct {
	noStore, noCache, private, public bool
	maxAge, sMaxAge                   time.Duration
	hasMaxAge, hasSMaxAge             bool
}

// parseCacheControl reads directive names case-insensitively. A directive
// with a field list (private="x", no-cache="x") counts as the bare
// directive, and an invalid or negative age as 0: both err on the side of
// not caching.
func parseCacheControl(v string) cacheControl {
	var cc cacheControl
	for d := range strings.SplitSeq(v, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "no-store":
			cc.noStore = true
		case "no-cache":
			cc.noCache = true
		case "private":
			cc.private = true
		case "public":
			cc.public = true
		case "max-age":
			cc.maxAge, cc.hasMaxAge = parseSeconds(val), true
		case "s-maxage":
			cc.sMaxAge, cc.hasSMaxAge = parseSeconds(val), true
		}
	}
	return cc
}

// maxCacheAge caps any lifetime a header asks for (one year, as RFC 9111
// suggests for overflowing delta-seconds).
const maxCacheAge = 365 * 24 * time.Hour

func parseSeconds(s string) time.Duration {
	n, err := strconv.ParseUint(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return maxCacheAge // all digits, too many of them
	}
	if err != nil {
		return 0
	}
	if n > uint64(maxCacheAge/time.Second) {
		return maxCacheAge
	}
	return time.Duration(n) * time.Second
}

// lifetime is s-maxage over max-age; ok reports whether either was given.
func (cc cacheControl) lifetime() (ttl time.Duration, ok bool) {
	switch {
	case cc.hasSMaxAge:
		return cc.sMaxAge, true
	case cc.hasMaxAge:
		return cc.maxAge, true
	}
	return 0, false
}

// requestCacheControl is the request's Cache-Control; a request without one
// that sends "Pragma: no-cache" (HTTP/1.0) counts as no-cache.
func requestCacheControl(h Header) cacheControl {
	v, ok := h.Lookup("cache-control")
	if pragma, _ := h.Lookup("pragma"); !ok && strings.Contains(strings.ToLower(pragma), "no-cache") {
		return cacheControl{noCache: true}
	}
	return parseCacheControl(v)
}

// Lookupable reports whether a request may be answered from the cache, and
// with ttl the freshness the request itself asked for (s-maxage over
// max-age of its Cache-Control; 0 when it named none). reqHeaders have
// lower-case names, as Envoy sends them.
//
// GET and HEAD are lookupable unless the request says no-store or no-cache
// (or Pragma: no-cache) or max-age=0: such a request bypasses the cache both ways, it is
// neither answered from it nor stored. POST is lookupable only on opt-in:
// postOptIn (the project's setting) or a request Cache-Control with public
// and a positive max-age or s-maxage; never with no-store or no-cache. Other
// methods never are.
//
// When ttl > 0 the caller should treat an entry older than ttl as a miss.
// Only requests that were lookupable may be stored (see [Storable]).
func Lookupable(method string, reqHeaders Header, postOptIn bool) (ok bool, ttl time.Duration) {
	cc := requestCacheControl(reqHeaders)
	if cc.noStore || cc.noCache {
		return false, 0
	}
	ttl, named := cc.lifetime()
	if named && ttl <= 0 {
		return false, 0 // max-age=0: the client wants a fresh answer
	}
	switch strings.ToUpper(method) {
	case http.MethodGet, http.MethodHead:
		return true, ttl
	case http.MethodPost:
		if postOptIn || (cc.public && ttl > 0) {
			return true, ttl
		}
	}
	return false, 0
}

// ignoredVary are the Vary entries that need not be in the key: the request
// is the project's own (Authorization is the project's upstream key), the
// body is stored in identity (Envoy encodes per client), and CORS is the
// sidecar's: it answers preflights itself and adds the access-control
// headers and Vary: Origin to each answer, a hit's included, for the
// request it answers; an entry holds none of them ([StoredHeaders]).
var ignoredVary = [...]string{"origin", "authorization", "accept-encoding", "access-control-request-method", "access-control-request-headers"}

// Storable reports whether a response may be stored, and for how long. It
// judges the response; whether a POST opted in is the caller's to know, so
// call it only for requests [Lookupable] accepted.
//
// A response is storable when the status is 200 (a complete body is the
// caller's to check, with [Capture]); the method is GET, HEAD or POST; the
// request did not say no-store; the response says none of no-store,
// no-cache, private; it sets no cookie; and its Vary lists nothing but the
// variant headers [KeyFor] keys on and headers that do not change the answer
// (Origin, Authorization, the CORS preflight headers) — Vary: * never is.
//
// The TTL is the response's s-maxage, else its max-age, else the request's
// s-maxage, else its max-age, else defaultTTL; ok is false when it is not
// positive.
func Storable(method string, reqHeaders, respHeaders Header, status int, defaultTTL time.Duration) (ttl time.Duration, ok bool) {
	if status != http.StatusOK {
		return 0, false
	}
	switch strings.ToUpper(method) {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		return 0, false
	}
	req := requestCacheControl(reqHeaders)
	cc, _ := respHeaders.Lookup("cache-control")
	resp := parseCacheControl(cc)
	if req.noStore || resp.noStore || resp.noCache || resp.private {
		return 0, false
	}
	if _, ok := respHeaders.Lookup("set-cookie"); ok {
		return 0, false
	}
	if vary, _ := respHeaders.Lookup("vary"); !varyKeyed(vary) {
		return 0, false
	}
	if ttl, ok = resp.lifetime(); !ok {
		if ttl, ok = req.lifetime(); !ok {
			ttl = defaultTTL
		}
	}
	if ttl <= 0 {
		return 0, false
	}
	return min(ttl, maxCacheAge), true
}

// varyKeyed reports whether every header a Vary value lists is either in
// the key or known not to change the answer.
func varyKeyed(vary string) bool {
	for name := range strings.SplitSeq(vary, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		if name == "*" || !(contains(variantHeaders[:], name) || contains(ignoredVary[:], name)) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
