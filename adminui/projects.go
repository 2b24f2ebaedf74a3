package adminui

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/llm-proxy/llm-proxy/adminapi"
)

// maxListed bounds the projects and tokens a page lists and searches.
const maxListed = 1000

type projectsView struct {
	Projects []adminapi.Project
	Total    int // projects there are, before the search
	Query    string
	Form     url.Values // the create form
}

// projectsPage lists the projects, searched by name or id.
func (u *UI) projectsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	u.showProjects(w, r, sess, http.StatusOK, "", url.Values{"allow_background": {"on"}, "allow_batches": {"on"}})
}

func (u *UI) showProjects(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string, form url.Values) {
	all, err := u.projects(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	v := projectsView{Total: len(all), Query: q, Form: form}
	for _, p := range all {
		if q == "" || strings.Contains(strings.ToLower(p.Name), strings.ToLower(q)) || p.ID == q {
			v.Projects = append(v.Projects, p)
		}
	}
	u.render(w, r, sess, status, "projects", view{Title: "Projects", Nav: "projects", Error: msg, Data: v})
}

// projects lists every project, newest first.
func (u *UI) projects(r *http.Request) ([]adminapi.Project, error) {
	all, err := listAll[adminapi.Project](u, r, "/manage/projects?limit=1000", maxListed)
	slices.Reverse(all)
	return all, err
}

// createProject creates a project from the form.
func (u *UI) createProject(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	body := map[string]any{
		"name":             f.Get("name"),
		"openai_api_key":   f.Get("openai_api_key"),
		"cache_post":       checked(f, "cache_post"),
		"allow_background": checked(f, "allow_background"),
		"allow_batches":    checked(f, "allow_batches"),
	}
	if l := limitsBody(f, false); l != nil {
		body["limits"] = l
	}
	setNumber(body, f, "monthly_budget_usd", "monthly_budget_usd", false)
	var p adminapi.Project
	err := u.call(r, apiCall{method: "POST", path: "/manage/projects", body: body}, &p)
	if status, msg, ok := refusal(err); ok {
		f.Del("openai_api_key") // never sent back to the browser
		u.showProjects(w, r, sess, status, msg, f)
		return
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, sess, "/admin/projects/"+pathEscape(p.ID), "Project "+p.Name+" created.")
}

type projectView struct {
	Project adminapi.Project
	Form    url.Values // the edit form
	Tokens  int        // its tokens, active or not
}

// projectPage shows a project with its edit, key and activation forms.
func (u *UI) projectPage(w http.ResponseWriter, r *http.Request, sess *session) {
	u.showProject(w, r, sess, http.StatusOK, "", nil)
}

func (u *UI) showProject(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string, form url.Values) {
	id := r.PathValue("id")
	var p adminapi.Project
	if err := u.call(r, apiCall{method: "GET", path: "/manage/projects/" + pathEscape(id)}, &p); err != nil {
		u.fail(w, r, err)
		return
	}
	tokens, err := listAll[adminapi.Token](u, r, "/manage/tokens?limit=1000&project_id="+queryEscape(id), maxListed)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, sess, status, "project", view{Title: p.Name, Nav: "projects", Error: msg,
		Data: projectView{Project: p, Form: projectForm(p, form), Tokens: len(tokens)}})
}

// updateProject changes name, limits, budget and policy from the edit form.
func (u *UI) updateProject(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	body := map[string]any{
		"name":             f.Get("name"),
		"limits":           limitsBody(f, true),
		"cache_post":       checked(f, "cache_post"),
		"allow_background": checked(f, "allow_background"),
		"allow_batches":    checked(f, "allow_batches"),
	}
	setNumber(body, f, "monthly_budget_usd", "monthly_budget_usd", true)
	u.patchProject(w, r, sess, body, f, "Project saved.")
}

// setProjectActive deactivates or reactivates a project.
func (u *UI) setProjectActive(w http.ResponseWriter, r *http.Request, sess *session) {
	active := r.PostForm.Get("active") == "true"
	msg := "Project deactivated: its tokens are refused until it is reactivated."
	if active {
		msg = "Project reactivated."
	}
	u.patchProject(w, r, sess, map[string]any{"active": active}, nil, msg)
}

// projectForm is the values of the project page's forms as stored, with the
// card that was posted (and refused) as posted (see overlay).
func projectForm(p adminapi.Project, posted url.Values) url.Values {
	f := url.Values{
		"name":                       {p.Name},
		"cache_post":                 {flag(p.CachePOST)},
		"allow_background":           {flag(p.AllowBackground)},
		"allow_batches":              {flag(p.AllowBatches)},
		"capture_enabled":            {flag(p.Capture.Enabled)},
		"capture_request_max_bytes":  {strconv.Itoa(p.Capture.RequestMaxBytes)},
		"capture_response_max_bytes": {strconv.Itoa(p.Capture.ResponseMaxBytes)},
		"capture_redact":             {strings.Join(p.Capture.Redact, "\n")},
	}
	limitsForm(f, p.Limits)
	rulesForm(f, p.Rules)
	if p.MonthlyBudgetUSD != nil {
		f.Set("monthly_budget_usd", p.MonthlyBudgetUSD.String())
	}
	return overlay(f, posted)
}

// overlay puts the fields of the card that was posted over a page's stored
// values, so a refusal shows what was typed where it was typed and the other
// cards as stored. A page's cards are told apart by their fields' prefix
// ("capture_", "rules_"; the edit card has none), named by the hidden
// "card" field each card but the edit card posts.
func overlay(stored, posted url.Values) url.Values {
	if posted == nil {
		return stored
	}
	card := posted.Get("card")
	for k := range stored {
		if cardOf(k) == card {
			delete(stored, k) // a box left unticked is absent from what was posted
		}
	}
	for k, v := range posted {
		stored[k] = v
	}
	return stored
}

func cardOf(field string) string {
	for _, c := range []string{"capture", "rules"} {
		if strings.HasPrefix(field, c+"_") {
			return c
		}
	}
	return ""
}

// setCapture replaces the project's capture settings from the capture card:
// caps (empty: the default) and one redaction pattern per line.
func (u *UI) setCapture(w http.ResponseWriter, r *http.Request, sess *session) {
	f := r.PostForm
	c := map[string]any{"enabled": checked(f, "capture_enabled"), "redact": []string{}}
	for _, line := range strings.Split(f.Get("capture_redact"), "\n") {
		if p := strings.TrimSpace(line); p != "" {
			c["redact"] = append(c["redact"].([]string), p)
		}
	}
	setNumber(c, f, "capture_request_max_bytes", "request_max_bytes", false)
	setNumber(c, f, "capture_response_max_bytes", "response_max_bytes", false)
	msg := "Capture off."
	if c["enabled"] == true {
		msg = "Capture on: request and response bodies go into usage events, redacted."
	}
	u.patchProject(w, r, sess, map[string]any{"capture": c}, f, msg)
}

// rotateKey replaces the project's OpenAI key.
func (u *UI) rotateKey(w http.ResponseWriter, r *http.Request, sess *session) {
	u.patchProject(w, r, sess, map[string]any{"openai_api_key": r.PostForm.Get("openai_api_key")}, nil, "OpenAI key replaced.")
}

func (u *UI) patchProject(w http.ResponseWriter, r *http.Request, sess *session, body map[string]any, form url.Values, done string) {
	id := r.PathValue("id")
	err := u.call(r, apiCall{method: "PATCH", path: "/manage/projects/" + pathEscape(id), body: body}, nil)
	if status, msg, ok := refusal(err); ok && status != http.StatusNotFound {
		u.showProject(w, r, sess, status, msg, form)
		return
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, sess, "/admin/projects/"+pathEscape(id), done)
}
