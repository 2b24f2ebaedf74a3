package adminui

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/store"
)

// TestCachePurgeByPrefix: the cache page's prefix form purges the entries
// under a path prefix, of the chosen project or of every project, says how
// many went, shows the API's refusal of a bad prefix, and each purge is
// audited as admin-ui.
func TestCachePurgeByPrefix(t *testing.T) {
	t.Parallel()
	cache := cachefilter.NewMemory(cachefilter.Options{MaxBytes: 1 << 20})
	h := newHarness(t, harnessOptions{cache: cache})
	b := h.browser()
	b.mustSignIn()
	var pids []string
	for _, name := range []string{"team-a", "team-b"} {
		p := b.post("/admin/projects", "/admin/projects", url.Values{"name": {name}, "openai_api_key": {"sk-test-0123456789abcdef"}})
		if p.status != http.StatusSeeOther {
			t.Fatalf("create project: %d\n%s", p.status, p.body)
		}
		pids = append(pids, strings.TrimPrefix(p.header.Get("Location"), "/admin/projects/"))
	}
	page := b.get("/admin/cache")
	for _, want := range []string{
		`<input type="radio" name="scope" value="prefix">`,
		`<label for="prefix">Path prefix</label><input id="prefix" name="prefix"`,
		`<option value="">Every project (prefix only)</option>`,
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("cache page lacks %s", want)
		}
	}
	ctx := context.Background()
	for i, path := range []string{"/v1/models", "/v1/models/gpt-4", "/v1/chat/completions"} {
		for _, pid := range pids {
			if err := cache.Set(ctx, pid, string(rune('a'+i)), &cachefilter.Entry{Status: 200, TTL: time.Hour, Path: path}); err != nil {
				t.Fatal(err)
			}
		}
	}
	purge := func(form url.Values, flash string) {
		t.Helper()
		form.Set("scope", "prefix")
		p := b.post("/admin/cache", "/admin/cache", form)
		if p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/cache" {
			t.Fatalf("purge %v: %d\n%s", form, p.status, p.body)
		}
		if p := b.get("/admin/cache"); !strings.Contains(p.body, flash) {
			t.Errorf("after purge %v the page lacks %q", form, flash)
		}
	}
	purge(url.Values{"project_id": {pids[0]}, "prefix": {"/v1/models"}}, "Purged 2 cached responses.")
	purge(url.Values{"project_id": {""}, "prefix": {"/v1/models/"}}, "Purged 1 cached response.") // team-b's
	purge(url.Values{"project_id": {""}, "prefix": {"/v1/"}}, "Purged 3 cached responses.")

	bad := b.post("/admin/cache", "/admin/cache", url.Values{"scope": {"prefix"}, "project_id": {pids[0]}, "prefix": {"/v1/models?x=1"}})
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.body, "prefix must be the start of an absolute path without query") {
		t.Errorf("bad prefix: %d\n%s", bad.status, bad.body)
	}

	events := h.auditEvents(store.AuditCachePurge)
	var got []string
	for _, e := range events {
		if e.Actor != "admin-ui" {
			t.Errorf("purge audited with actor %q", e.Actor)
		}
		got = append(got, e.ProjectID+" "+e.TargetID+" "+e.Detail)
	}
	want := []string{" prefix /v1/ purged: 3", " prefix /v1/models/ purged: 1", pids[0] + " prefix /v1/models purged: 2"}
	slices.Sort(got) // events of one instant come in any order
	slices.Sort(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
