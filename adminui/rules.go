package adminui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/llm-proxy/llm-proxy/policy"
)

// The rules card of the project and token pages (policy.Rules): one form
// whose fields start with "rules_", posted to …/rules, which replaces the
// rules whole through the management API.

// rulesForm fills the rules card's fields from r.
func rulesForm(f url.Values, r policy.Rules) {
	f.Set("rules_models", strings.Join(r.Models, "\n"))
	if r.MaxOutputTokens > 0 {
		f.Set("rules_max_output_tokens", strconv.FormatInt(r.MaxOutputTokens, 10))
	}
	f.Set("rules_over_max", r.OverMax)
	var params []string
	for name, values := range r.Params {
		var vs []string
		for _, v := range values {
			vs = append(vs, string(v))
		}
		params = append(params, name+"="+strings.Join(vs, ","))
	}
	slices.Sort(params)
	f.Set("rules_params", strings.Join(params, "\n"))
	f.Set("rules_no_tools", flag(r.NoTools))
	if r.MaxBodyBytes > 0 {
		f.Set("rules_max_body_bytes", strconv.FormatInt(r.MaxBodyBytes, 10))
	}
	if r.CORS != nil {
		f.Set("rules_cors_origins", strings.Join(r.CORS.Origins, "\n"))
	}
}

// rulesBody is the rules object from the card: empty lines dropped, each
// parameter line NAME=V1,V2 with each value JSON where it parses (1, true,
// "x") and a string otherwise. Numbers that do not parse are sent as typed,
// so the API refuses them by name.
func rulesBody(f url.Values, forProject bool) map[string]any {
	r := map[string]any{}
	if models := lines(f.Get("rules_models")); len(models) > 0 {
		r["models"] = models
	}
	setNumber(r, f, "rules_max_output_tokens", "max_output_tokens", false)
	if v := f.Get("rules_over_max"); v != "" {
		r["over_max"] = v
	}
	params := map[string][]json.RawMessage{}
	for _, line := range lines(f.Get("rules_params")) {
		name, values, _ := strings.Cut(line, "=")
		for _, v := range strings.Split(values, ",") {
			v = strings.TrimSpace(v)
			if !json.Valid([]byte(v)) {
				b, _ := json.Marshal(v)
				v = string(b)
			}
			params[strings.TrimSpace(name)] = append(params[strings.TrimSpace(name)], json.RawMessage(v))
		}
	}
	if len(params) > 0 {
		r["params"] = params
	}
	if checked(f, "rules_no_tools") {
		r["no_tools"] = true
	}
	setNumber(r, f, "rules_max_body_bytes", "max_body_bytes", false)
	if origins := lines(f.Get("rules_cors_origins")); forProject && len(origins) > 0 {
		r["cors"] = map[string]any{"origins": origins}
	}
	return r
}

// lines splits a textarea into its non-empty, trimmed lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// setProjectRules replaces a project's rules from its rules card.
func (u *UI) setProjectRules(w http.ResponseWriter, r *http.Request, sess *session) {
	u.patchProject(w, r, sess, map[string]any{"rules": rulesBody(r.PostForm, true)}, r.PostForm, "Rules saved.")
}

// setTokenRules replaces a token's own rules from its rules card.
func (u *UI) setTokenRules(w http.ResponseWriter, r *http.Request, sess *session) {
	u.patchToken(w, r, sess, map[string]any{"rules": rulesBody(r.PostForm, false)}, r.PostForm, "Rules saved.")
}
