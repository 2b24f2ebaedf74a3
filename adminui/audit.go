package adminui

import (
	"net/http"
	"net/url"
	"time"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/eventsink"
	"github.com/llm-proxy/llm-proxy/store"
)

// auditPageSize is how many events one audit page asks the API for.
const auditPageSize = 100

type auditView struct {
	Actions  []string
	Projects []adminapi.Project
	Filter   url.Values
	Events   []eventsink.AuditJSON
	Next     string // the next page's URL, "" on the last
}

// datetimeLocal is the layout of an <input type="datetime-local">.
const datetimeLocal = "2006-01-02T15:04"

// auditPage lists the audit log newest first, filtered by the API by
// action, actor, project and time range.
func (u *UI) auditPage(w http.ResponseWriter, r *http.Request, sess *session) {
	projects, err := u.projects(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	f := r.URL.Query()
	params := url.Values{"limit": {itoa(auditPageSize)}}
	for _, k := range []string{"action", "actor", "project_id", "cursor"} {
		if f.Get(k) != "" {
			params.Set(k, f.Get(k))
		}
	}
	for _, k := range []string{"from", "to"} {
		if f.Get(k) != "" {
			params.Set(k, rfc3339(f.Get(k)))
		}
	}
	v := auditView{Actions: store.AuditActions(), Projects: projects, Filter: f}
	var pg adminapi.List[eventsink.AuditJSON]
	err = u.call(r, apiCall{method: "GET", path: "/manage/audit?" + params.Encode()}, &pg)
	status, msg, refused := refusal(err)
	if err != nil && !refused {
		u.fail(w, r, err)
		return
	}
	if !refused {
		status = http.StatusOK
	}
	v.Events = pg.Data
	if pg.NextCursor != nil {
		next := url.Values{}
		for k, vs := range f {
			next[k] = vs
		}
		next.Set("cursor", *pg.NextCursor)
		v.Next = "/admin/audit?" + next.Encode()
	}
	u.render(w, r, sess, status, "audit", view{Title: "Audit log", Nav: "audit", Error: msg, Data: v})
}

// rfc3339 turns a datetime-local value, read as UTC, into the RFC 3339
// time the API takes; anything else goes to the API as it is, to be
// refused with the API's message.
func rfc3339(v string) string {
	if t, err := time.Parse(datetimeLocal, v); err == nil {
		return t.UTC().Format(time.RFC3339)
	}
	return v
}

// auditEventPage shows one audit event.
func (u *UI) auditEventPage(w http.ResponseWriter, r *http.Request, sess *session) {
	var e eventsink.AuditJSON
	if err := u.call(r, apiCall{method: "GET", path: "/manage/audit/" + pathEscape(r.PathValue("id"))}, &e); err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, sess, http.StatusOK, "audit_event", view{Title: "Audit event", Nav: "audit", Data: e})
}
