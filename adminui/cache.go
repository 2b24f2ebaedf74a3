package adminui

import (
	"net/http"
	"strconv"

	"github.com/llm-proxy/llm-proxy/adminapi"
)

type cacheView struct {
	Projects []adminapi.Project
}

// cachePage shows the purge form.
func (u *UI) cachePage(w http.ResponseWriter, r *http.Request, sess *session) {
	u.showCache(w, r, sess, http.StatusOK, "")
}

func (u *UI) showCache(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string) {
	projects, err := u.projects(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, sess, status, "cache", view{Title: "Cache", Nav: "cache", Error: msg, Data: cacheView{Projects: projects}})
}

// purgeCache purges a project's entries, one request's entry, the entries
// under a path prefix (of a project or of every project), or all, and says
// how many entries went.
func (u *UI) purgeCache(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	var body map[string]any
	switch f.Get("scope") {
	case "all":
		body = map[string]any{"all": true}
	case "prefix":
		body = map[string]any{"prefix": f.Get("prefix")}
		if p := f.Get("project_id"); p != "" {
			body["project_id"] = p
		}
	case "request":
		body = map[string]any{"project_id": f.Get("project_id"), "request": map[string]any{
			"method": f.Get("method"), "path": f.Get("path"),
		}}
	default:
		body = map[string]any{"project_id": f.Get("project_id")}
	}
	var out struct {
		Purged int `json:"purged"`
	}
	err := u.call(r, apiCall{method: "POST", path: "/manage/cache/purge", body: body}, &out)
	if status, msg, ok := refusal(err); ok {
		u.showCache(w, r, sess, status, msg)
		return
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	noun := " cached responses."
	if out.Purged == 1 {
		noun = " cached response."
	}
	u.redirect(w, r, sess, "/admin/cache", "Purged "+strconv.Itoa(out.Purged)+noun)
}
