package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/store"
)

// cachePurger removes response-cache entries (a *cachefilter.Cache).
type cachePurger interface {
	Purge(ctx context.Context, projectID, key string) (int, error)
	PurgeProject(ctx context.Context, projectID string) (int, error)
	PurgeAll(ctx context.Context) (int, error)
	PurgePrefix(ctx context.Context, projectID, prefix string) (int, error)
}

var _ cachePurger = (*cachefilter.Cache)(nil)

// purgeRequest names what to purge: one request's entry (project_id plus
// request), a project's entries (project_id alone), the entries whose path
// starts with prefix (of project_id, or of every project without it), or
// everything (all).
type purgeRequest struct {
	ProjectID optional[string] `json:"project_id"`
	All       optional[bool]   `json:"all"`
	Request   *purgeTarget     `json:"request"`
	Prefix    optional[string] `json:"prefix"`
}

// purgeTarget is the request whose cached response goes: the same method,
// path (with query), body and variant headers give the same key the cache
// computed when it stored it.
type purgeTarget struct {
	Method  string                      `json:"method"`
	Path    string                      `json:"path"`
	Body    json.RawMessage             `json:"body"`
	Headers map[string]optional[string] `json:"headers"`
}

func (req purgeRequest) validate() error {
	all := req.All.has() && req.All.Value
	prefix := req.Prefix.has()
	switch {
	case all && (req.ProjectID.has() || req.Request != nil || prefix):
		return invalid(codeInvalidValue, "all", "all purges everything; give it without project_id, request and prefix.")
	case all:
		return nil
	case prefix && req.Request != nil:
		return invalid(codeInvalidValue, "prefix", "Give prefix or request, not both.")
	case prefix && !validPurgePrefix(req.Prefix.Value):
		return invalid(codeInvalidValue, "prefix",
			"prefix must be the start of an absolute path without query, at most %d printable ASCII characters, '%%' only in escapes like %%2F, and no ';' or '?'.", maxPurgePathLen)
	case prefix && !req.ProjectID.has():
		return nil // every project's
	case !req.ProjectID.has() || req.ProjectID.Value == "":
		return invalid(codeMissingField, "project_id", "project_id is required unless all is true or prefix is given.")
	}
	if err := checkIDParam("project_id", req.ProjectID.Value); err != nil {
		return err
	}
	if t := req.Request; t != nil {
		if !validMethod(t.Method) {
			return invalid(codeInvalidValue, "request.method", "request.method must be an HTTP method: 1 to %d letters.", maxPurgeMethodLen)
		}
		if !validPurgePath(t.Path) {
			return invalid(codeInvalidValue, "request.path",
				"request.path must be an absolute path with an optional query, at most %d printable ASCII characters, '%%' only in escapes like %%2F, and no ';'.", maxPurgePathLen)
		}
		for _, v := range t.Headers {
			if v.Null {
				return invalid(codeInvalidType, "request.headers", "request.headers values must be strings, not null.")
			}
		}
	}
	return nil
}

// Bounds of a purge target's method and path, which the audit log records.
const (
	maxPurgeMethodLen = 16
	maxPurgePathLen   = 2048
)

// validMethod reports whether m is 1 to maxPurgeMethodLen ASCII letters.
func validMethod(m string) bool {
	if m == "" || len(m) > maxPurgeMethodLen {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// validPurgePath reports whether p is a path and query the cache can key: it
// starts with '/', is printable ASCII, has '%' only in escapes, and has no
// ';' (which url.ParseQuery refuses).
func validPurgePath(p string) bool {
	if !strings.HasPrefix(p, "/") || len(p) > maxPurgePathLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
			i += 2
		case c <= ' ' || c > '~' || c == ';':
			return false
		}
	}
	return true
}

// validPurgePrefix reports whether p is a path prefix the cache can match:
// a valid purge path without a query.
func validPurgePrefix(p string) bool {
	return validPurgePath(p) && !strings.Contains(p, "?")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// purgeCache handles POST /manage/cache/purge and says how many entries it
// really removed.
func (s *Server) purgeCache(w http.ResponseWriter, r *http.Request) {
	if s.cache == nil {
		writeError(w, r, invalid(codeInvalidValue, "", "The response cache is off (LLM_PROXY_CACHE=off)."))
		return
	}
	var req purgeRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	var (
		n      int
		err    error
		target = "all"
	)
	switch {
	case req.All.has() && req.All.Value:
		n, err = s.cache.PurgeAll(r.Context())
	case req.Prefix.has():
		target = "prefix " + req.Prefix.Value
		n, err = s.cache.PurgePrefix(r.Context(), req.ProjectID.Value, req.Prefix.Value)
	case req.Request != nil:
		t := req.Request
		path, query, _ := strings.Cut(t.Path, "?")
		variant := http.Header{}
		for k, v := range t.Headers {
			variant.Set(k, v.Value)
		}
		var body []byte
		if len(t.Body) > 0 {
			body = t.Body
			// A body given as a JSON string is the raw body (non-JSON uploads).
			var raw string
			if json.Unmarshal(t.Body, &raw) == nil {
				body = []byte(raw)
			}
		}
		key, kerr := cachefilter.KeyFor(req.ProjectID.Value, strings.ToUpper(t.Method), path, query, body, variant)
		if kerr != nil {
			writeError(w, r, invalid(codeInvalidValue, "request", "request cannot be keyed: %v", kerr))
			return
		}
		target = strings.ToUpper(t.Method) + " " + path
		n, err = s.cache.Purge(r.Context(), req.ProjectID.Value, key)
	default:
		target = "project"
		n, err = s.cache.PurgeProject(r.Context(), req.ProjectID.Value)
	}
	if err != nil {
		writeError(w, r, fmt.Errorf("purge cache (%s): %w", target, err))
		return
	}
	s.audit(r, store.AuditEvent{
		Action: store.AuditCachePurge, ProjectID: req.ProjectID.Value, TargetType: store.AuditTargetCache,
		TargetID: target, Detail: "purged: " + strconv.Itoa(n),
	})
	writeJSON(w, http.StatusOK, purgedJSON{Purged: n})
}

type purgedJSON struct {
	Purged int `json:"purged"`
}
