package cachefilter

import (
	"iter"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Entry is one stored response. Entries returned by [Cache.Get] and
// [Cache.Acquire] are shared and must not be modified.
type Entry struct {
	// Status is the upstream status; only 200s are stored (see [Storable]).
	Status int
	// Header holds the upstream response headers worth replaying, with
	// lower-case names: content-type and the few listed in [StoredHeaders].
	// [Cache.Set] drops every other header, so Set-Cookie, Authorization and
	// the like are never stored.
	Header map[string]string
	// Body is the response body exactly as the upstream sent it: for a
	// streamed entry, the whole SSE stream up to and including [DONE].
	Body []byte
	// Stream marks a server-sent-events response, replayed with
	// content-type text/event-stream.
	Stream bool
	// StoredAt is when the response was stored; [Cache.Set] fills it in from
	// the cache's clock when it is zero.
	StoredAt time.Time
	// TTL is how long the entry stays fresh after StoredAt.
	TTL time.Duration
	// Path is the request path (without query) whose response this is;
	// [Cache.PurgePrefix] finds the entry by it. An entry stored without
	// one is purged only by key, by project or with everything.
	Path string
}

// entryOverhead is what an entry costs beyond its body and headers, in bytes,
// for the size limit and the memory bound: the struct, map and cache node.
const entryOverhead = 256

// size is what e counts against the size limits.
func (e *Entry) size() int {
	n := len(e.Body) + len(e.Path) + entryOverhead
	for k, v := range e.Header {
		n += len(k) + len(v) + 16
	}
	return n
}

// Age is how long ago e was stored, never negative.
func (e *Entry) Age(now time.Time) time.Duration {
	if d := now.Sub(e.StoredAt); d > 0 {
		return d
	}
	return 0
}

// Remaining is how long e stays fresh from now; zero or less once it expired.
func (e *Entry) Remaining(now time.Time) time.Duration {
	return e.TTL - e.Age(now)
}

// ContentType is the content type e is replayed with: text/event-stream for
// a streamed entry (whatever the upstream said), else the stored one, else
// application/json.
func (e *Entry) ContentType() string {
	ct := e.Header["content-type"]
	switch {
	case e.Stream && !strings.HasPrefix(strings.ToLower(ct), "text/event-stream"):
		return "text/event-stream"
	case ct == "":
		return "application/json"
	}
	return ct
}

// ImmediateHeaders are the headers of a hit answered from e: the stored
// upstream headers, the content type (see [Entry.ContentType]), Age in whole
// seconds and Cache-Status (RFC 9211) with the seconds of freshness left, for
// example "llm-proxy; hit; ttl=42". The map is new; the caller may add to it.
func (e *Entry) ImmediateHeaders(now time.Time) map[string]string {
	h := make(map[string]string, len(e.Header)+3)
	for k, v := range e.Header {
		h[k] = v
	}
	h["content-type"] = e.ContentType()
	h["age"] = strconv.FormatInt(int64(e.Age(now)/time.Second), 10)
	ttl := int64(e.Remaining(now) / time.Second)
	if ttl < 0 {
		ttl = 0
	}
	h["cache-status"] = CacheStatusName + "; hit; ttl=" + strconv.FormatInt(ttl, 10)
	return h
}

// CacheStatusName names llm-proxy's cache in Cache-Status headers.
const CacheStatusName = "llm-proxy"

// MissStatus is the Cache-Status value of a response that was forwarded
// because the cache had no entry: "llm-proxy; fwd=miss", with "; stored"
// appended when the response was stored.
func MissStatus(stored bool) string {
	if stored {
		return CacheStatusName + "; fwd=miss; stored"
	}
	return CacheStatusName + "; fwd=miss"
}

// storedHeaders are the upstream response headers kept in an entry. Anything
// per-request (x-request-id, rate-limit headers, dates), per-user
// (set-cookie) or secret is left out.
var storedHeaders = [...]string{
	"content-type",
	"content-encoding",
	"content-language",
	"openai-model",
	"openai-version",
	"openai-processing-ms",
}

// StoredHeaders returns the headers of resp (lower-case names, as Envoy sends
// them) that an entry keeps: content-type, content-encoding,
// content-language, openai-model, openai-version and openai-processing-ms.
// [Cache.Set] applies the same filter to every entry it stores.
func StoredHeaders(resp iter.Seq2[string, string]) map[string]string {
	out := make(map[string]string, 2)
	for k, v := range resp {
		k = strings.ToLower(k)
		if _, seen := out[k]; !seen && keepHeader(k) {
			out[k] = v // of a repeated header, the first
		}
	}
	return out
}

func keepHeader(name string) bool {
	for _, h := range storedHeaders {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// sanitized is a copy of e holding only what may be stored, stamped with
// now when it has no StoredAt.
func (e *Entry) sanitized(now time.Time) *Entry {
	c := *e
	c.Header = StoredHeaders(maps.All(e.Header))
	if c.StoredAt.IsZero() {
		c.StoredAt = now
	}
	return &c
}
