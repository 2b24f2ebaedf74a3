package adminapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/store"
)

// TestPurgeByPrefix: a prefix purges the entries whose request path starts
// with it, of one project or of every project, answers how many went, and
// is audited like the other purges; a malformed prefix or one mixed with
// another form is a 400 that purges nothing.
func TestPurgeByPrefix(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{cache: true})
	a, b := h.createProject("A", rawKey1), h.createProject("B", rawKey2)
	ctx := context.Background()
	put := func(project, key, path string) {
		t.Helper()
		if err := h.cache.Set(ctx, project, key, &cachefilter.Entry{Status: 200, Body: []byte("x"), TTL: time.Hour, Path: path}); err != nil {
			t.Fatal(err)
		}
	}
	put(a, "1", "/v1/models")
	put(a, "2", "/v1/models/gpt-4")
	put(a, "3", "/v1/chat/completions")
	put(b, "1", "/v1/models")
	purge := func(body string, want int) {
		t.Helper()
		out := h.do(req{method: "POST", path: "/manage/cache/purge", body: body})
		wantStatus(t, out, 200)
		if got := fmt.Sprint(out.body["purged"]); got != fmt.Sprint(want) {
			t.Fatalf("%s purged %s, want %d", body, got, want)
		}
	}
	for _, tc := range []struct{ body, code, param string }{
		{`{"prefix":"v1/models"}`, "invalid_value", "prefix"},
		{`{"prefix":""}`, "invalid_value", "prefix"},
		{`{"prefix":"/v1/models?x=1"}`, "invalid_value", "prefix"},
		{`{"prefix":"/v1/%zz"}`, "invalid_value", "prefix"},
		{`{"prefix":"/v1/\u0000"}`, "invalid_value", "prefix"},
		{`{"all":true,"prefix":"/v1/"}`, "invalid_value", "all"},
		{`{"project_id":"` + a + `","prefix":"/v1/","request":{"method":"GET","path":"/v1/models"}}`, "invalid_value", "prefix"},
		{`{"project_id":"…","prefix":"/v1/"}`, "invalid_value", "project_id"},
	} {
		out := h.do(req{method: "POST", path: "/manage/cache/purge", body: tc.body})
		wantError(t, out, 400, "invalid_request_error", tc.code, tc.param)
	}

	purge(`{"project_id":"`+a+`","prefix":"/v1/models"}`, 2)
	purge(`{"project_id":"`+a+`","prefix":"/v1/models"}`, 0)
	purge(`{"prefix":"/v1/","project_id":null}`, 2) // a's chat entry and b's models entry

	events, _ := h.auditPage("action=" + store.AuditCachePurge)
	type row struct{ project, target, detail string }
	var got []row
	for _, e := range events {
		project, _ := e["project_id"].(string) // null for every project
		got = append(got, row{project, e["target_id"].(string), e["detail"].(string)})
	}
	want := []row{ // the harness's clock stands still: in any order
		{"", "prefix /v1/", "purged: 2"},
		{a, "prefix /v1/models", "purged: 0"},
		{a, "prefix /v1/models", "purged: 2"},
	}
	byFields := func(x, y row) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) }
	slices.SortFunc(got, byFields)
	slices.SortFunc(want, byFields)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audit events %v, want %v", got, want)
	}
	for _, e := range events {
		if fmt.Sprint(e["target_type"]) != fmt.Sprint(store.AuditTargetCache) {
			t.Errorf("target_type %v, want %s", e["target_type"], store.AuditTargetCache)
		}
	}
}
