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
}

var _ cachePurger = (*cachefilter.Cache)(nil)

// purgeRequest names what to purge: one request's entry (project_id plus
// request), a project's entries (project_id alone), or everything (all).
type purgeRequest struct {
	ProjectID optional[string] `json:"project_id"`
	All       optional[bool]   `json:"all"`
	Request   *purgeTarget     `json:"request"`
}

// purgeTarget is the request whose cached response goes: the same method,
// path (with query), body and variant headers give the same key the cache
// computed when it stored it.
type purgeTarget struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Body    json.RawMessage   `json:"body"`
	Headers map[string]string `json:"headers"`
}

func (req purgeRequest) validate() error {
	all := req.All.has() && req.All.Value
	switch {
	case all && (req.ProjectID.has() || req.Request != nil):
		return invalid(codeInvalidValue, "all", "all purges everything; give it without project_id and request.")
	case all:
		return nil
	case !req.ProjectID.has() || req.ProjectID.Value == "":
		return invalid(codeMissingField, "project_id", "project_id is required unless all is true.")
	case req.Request != nil && (req.Request.Method == "" || !strings.HasPrefix(req.Request.Path, "/")):
		return invalid(codeInvalidValue, "request", "request needs a method and an absolute path.")
	}
	return nil
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
	case req.Request != nil:
		t := req.Request
		path, query, _ := strings.Cut(t.Path, "?")
		variant := http.Header{}
		for k, v := range t.Headers {
			variant.Set(k, v)
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
