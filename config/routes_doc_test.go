package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// tableRoute matches a Markdown table row naming a route, "| `POST /v1/x` |",
// whatever its method: a PATCH route must not slip past the charging table.
var tableRoute = regexp.MustCompile("^\\| `[A-Z]+ /")

// TestRoutesDocLeftOut: every endpoint docs/routes.md lists as left out on
// purpose is refused by the built-in allowlist, so the page cannot claim a
// route is missing after someone adds it; and the page names at least the
// families the route review left out.
func TestRoutesDocLeftOut(t *testing.T) {
	doc, err := os.ReadFile("../docs/routes.md")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := LoadRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	_, leftOut, ok := strings.Cut(string(doc), "## Left out on purpose")
	if !ok {
		t.Fatal(`docs/routes.md has no "## Left out on purpose" section`)
	}
	var listed []string
	for _, l := range strings.Split(leftOut, "\n") {
		if !tableRoute.MatchString(l) {
			continue
		}
		endpoint := strings.Trim(strings.SplitN(l, "|", 3)[1], " `")
		method, path, _ := strings.Cut(endpoint, " ")
		listed = append(listed, endpoint)
		for _, r := range routes {
			if r.Method == method && patternAdmits(r.Path, path) {
				t.Errorf("docs/routes.md lists %s as left out, but route %s %s admits it", endpoint, r.Method, r.Path)
			}
		}
	}
	for _, family := range []string{"/v1/realtime", "/v1/fine_tuning/", "/v1/evals", "/v1/organization/", "POST /v1/containers", "/v1/assistants"} {
		if !strings.Contains(strings.Join(listed, "\n"), family) {
			t.Errorf("docs/routes.md's left-out table names nothing under %s", family)
		}
	}
}

// patternAdmits reports whether a route pattern admits path, where path
// may itself hold placeholders ({model}), each standing for some segment:
// the allowlist's rule, one non-empty segment per placeholder.
func patternAdmits(pattern, path string) bool {
	want, got := strings.Split(strings.Trim(pattern, "/"), "/"), strings.Split(strings.Trim(path, "/"), "/")
	if len(want) != len(got) {
		return false
	}
	for i, w := range want {
		if got[i] == "" || (!strings.HasPrefix(w, "{") && w != got[i] && !strings.HasPrefix(got[i], "{")) {
			return false
		}
	}
	return true
}

// TestRoutesUniqueAndNoted: no method and pattern is listed twice (the
// second would never match), and every route not charged in tokens or free
// by nature says why, when its rule is per call.
func TestRoutesUniqueAndNoted(t *testing.T) {
	routes, err := LoadRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range routes {
		key := r.Method + " " + regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(r.Path, "{}")
		if seen[key] {
			t.Errorf("route %s %s is listed twice", r.Method, r.Path)
		}
		seen[key] = true
		if r.Charge == ChargeCall && r.Note == "" {
			t.Errorf("route %s %s is charged per call without a note saying why", r.Method, r.Path)
		}
	}
}
