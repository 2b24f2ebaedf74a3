package adminui

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/llm-proxy/llm-proxy/adminapi"
)

type tokensView struct {
	Projects  []adminapi.Project
	Names     map[string]string // project id → name
	ProjectID string            // the filter; "" for all
	Tokens    []adminapi.Token
	Form      url.Values      // the create form
	Created   *adminapi.Token // the token just created, its secret shown this once
}

// tokensPage lists tokens, of one project or all, newest first.
func (u *UI) tokensPage(w http.ResponseWriter, r *http.Request, sess *session) {
	pid := r.URL.Query().Get("project_id")
	u.showTokens(w, r, sess, http.StatusOK, "", pid, url.Values{"project_id": {pid}, "expires_in": {"30d"}}, nil)
}

func (u *UI) showTokens(w http.ResponseWriter, r *http.Request, sess *session, status int, msg, pid string, form url.Values, created *adminapi.Token) {
	projects, err := u.projects(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	path := "/manage/tokens?limit=1000"
	if pid != "" {
		path += "&project_id=" + queryEscape(pid)
	}
	tokens, err := listAll[adminapi.Token](u, r, path, maxListed)
	if _, m, ok := refusal(err); ok && msg == "" {
		// A project_id the API refuses: show its message over an empty list.
		msg, tokens = m, nil
	} else if err != nil {
		u.fail(w, r, err)
		return
	}
	slices.Reverse(tokens)
	v := tokensView{Projects: projects, Names: map[string]string{}, ProjectID: pid, Tokens: tokens, Form: form, Created: created}
	for _, p := range projects {
		v.Names[p.ID] = p.Name
	}
	u.render(w, r, sess, status, "tokens", view{Title: "Tokens", Nav: "tokens", Error: msg, Data: v})
}

// createToken issues a token and shows its secret in this answer only: it
// is neither stored nor carried over a redirect.
func (u *UI) createToken(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	body := map[string]any{"project_id": f.Get("project_id")}
	if n := f.Get("name"); n != "" {
		body["name"] = n
	}
	if e := f.Get("expires_in"); e != "" {
		body["expires_in"] = e
	}
	setNumber(body, f, "max_requests", "max_requests", false)
	if l := limitsBody(f, false); l != nil {
		body["limits"] = l
	}
	var t adminapi.Token
	err := u.call(r, apiCall{method: "POST", path: "/manage/tokens", body: body}, &t)
	if status, msg, ok := refusal(err); ok {
		u.showTokens(w, r, sess, status, msg, f.Get("project_id"), f, nil)
		return
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.showTokens(w, r, sess, http.StatusCreated, "", t.ProjectID, url.Values{"project_id": {t.ProjectID}, "expires_in": {"30d"}}, &t)
}

type tokenView struct {
	Token   adminapi.Token
	Project string // its project's name
	Form    url.Values
}

// tokenPage shows a token with its edit and revoke forms.
func (u *UI) tokenPage(w http.ResponseWriter, r *http.Request, sess *session) {
	u.showToken(w, r, sess, http.StatusOK, "", nil)
}

func (u *UI) showToken(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string, form url.Values) {
	var t adminapi.Token
	if err := u.call(r, apiCall{method: "GET", path: "/manage/tokens/" + pathEscape(r.PathValue("id"))}, &t); err != nil {
		u.fail(w, r, err)
		return
	}
	var p adminapi.Project
	if err := u.call(r, apiCall{method: "GET", path: "/manage/projects/" + pathEscape(t.ProjectID)}, &p); err != nil {
		u.fail(w, r, err)
		return
	}
	stored := url.Values{"name": {t.Name}, "max_requests": {int64Field(t.MaxRequests)}}
	limitsForm(stored, t.Limits)
	rulesForm(stored, t.Rules)
	u.render(w, r, sess, status, "token", view{Title: "Token " + t.Prefix, Nav: "tokens", Error: msg,
		Data: tokenView{Token: t, Project: p.Name, Form: overlay(stored, form)}})
}

// updateToken changes a token's name, request cap and limits.
func (u *UI) updateToken(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	body := map[string]any{"name": f.Get("name"), "limits": limitsBody(f, true)}
	setNumber(body, f, "max_requests", "max_requests", true)
	u.patchToken(w, r, sess, body, f, "Token saved.")
}

// patchToken sends one card's change; a refusal shows the page again with
// that card as posted.
func (u *UI) patchToken(w http.ResponseWriter, r *http.Request, sess *session, body map[string]any, form url.Values, done string) {
	id := r.PathValue("id")
	err := u.call(r, apiCall{method: "PATCH", path: "/manage/tokens/" + pathEscape(id), body: body}, nil)
	if status, msg, ok := refusal(err); ok && status != http.StatusNotFound {
		u.showToken(w, r, sess, status, msg, form)
		return
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, sess, "/admin/tokens/"+pathEscape(id), done)
}

// revokeToken revokes a token for good.
func (u *UI) revokeToken(w http.ResponseWriter, r *http.Request, sess *session) {
	var t adminapi.Token
	err := u.call(r, apiCall{method: "DELETE", path: "/manage/tokens/" + pathEscape(r.PathValue("id"))}, &t)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, sess, "/admin/tokens?project_id="+queryEscape(t.ProjectID), "Token "+t.Prefix+"… revoked.")
}
