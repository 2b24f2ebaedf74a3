package adminapi

import (
	"context"
	"fmt"
	"testing"
)

// switchesOf is a project's three policy switches as the API shows them.
func switchesOf(cachePOST, allowBackground, allowBatches bool) map[string]any {
	return map[string]any{"cache_post": cachePOST, "allow_background": allowBackground, "allow_batches": allowBatches}
}

// wantSwitches checks a project response's switches and the store's copy.
func wantSwitches(t *testing.T, h *harness, out resp, want map[string]any) {
	t.Helper()
	got := map[string]any{}
	for k := range want {
		got[k] = out.body[k]
	}
	if !mapsEqual(got, want) {
		t.Errorf("switches = %v, want %v\n%s", got, want, out.raw)
	}
	id, _ := out.body["id"].(string)
	p, err := h.store.GetProject(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if stored := switchesOf(p.CachePOST, p.AllowBackground, p.AllowBatches); !mapsEqual(stored, want) {
		t.Errorf("stored switches = %v, want %v", stored, want)
	}
}

// TestProjectPolicySwitches: cache_post defaults to false and the allow_
// switches to true; each can be set on create and changed alone by PATCH,
// which invalidates the project; GET and list show them.
func TestProjectPolicySwitches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := `"openai_api_key":"` + rawKey1 + `"`

	for _, tc := range []struct {
		name, fields string
		want         map[string]any
	}{
		{"defaults", ``, switchesOf(false, true, true)},
		{"background refused", `,"allow_background":false`, switchesOf(false, false, true)},
		{"batches refused", `,"allow_batches":false`, switchesOf(false, true, false)},
		{"all set", `,"cache_post":true,"allow_background":false,"allow_batches":false`, switchesOf(true, false, false)},
		{"explicit true", `,"allow_background":true,"allow_batches":true`, switchesOf(false, true, true)},
	} {
		t.Run("create "+tc.name, func(t *testing.T) {
			out := h.do(req{method: "POST", path: "/manage/projects", body: `{"name":"p",` + key + tc.fields + `}`})
			wantStatus(t, out, 201)
			wantSwitches(t, h, out, tc.want)
			got := h.do(req{method: "GET", path: "/manage/projects/" + out.body["id"].(string)})
			if !mapsEqual(got.body, out.body) {
				t.Errorf("GET = %s\nwant what POST returned: %s", got.raw, out.raw)
			}
		})
	}

	id := h.createProject("Team", rawKey2)
	path := "/manage/projects/" + id
	h.inv.take()
	for _, tc := range []struct {
		name, body string
		want       map[string]any
	}{
		{"refuse batches", `{"allow_batches":false}`, switchesOf(false, true, false)},
		{"refuse background", `{"allow_background":false}`, switchesOf(false, false, false)},
		{"other fields keep them", `{"name":"Renamed","limits":{"max_concurrent":2}}`, switchesOf(false, false, false)},
		{"cache_post alone", `{"cache_post":true}`, switchesOf(true, false, false)},
		{"allow both", `{"allow_background":true,"allow_batches":true}`, switchesOf(true, true, true)},
		{"same value again", `{"allow_batches":true}`, switchesOf(true, true, true)},
	} {
		t.Run("patch "+tc.name, func(t *testing.T) {
			out := h.do(req{method: "PATCH", path: path, body: tc.body})
			wantStatus(t, out, 200)
			wantSwitches(t, h, out, tc.want)
			wantInvalidated(t, h, nil, []string{id})
		})
	}

	list := h.do(req{method: "GET", path: "/manage/projects"})
	wantStatus(t, list, 200)
	for _, p := range list.body["data"].([]any) {
		p := p.(map[string]any)
		if _, ok := p["allow_background"].(bool); !ok {
			t.Errorf("listed project %v has no allow_background", p["id"])
		}
		if _, ok := p["allow_batches"].(bool); !ok {
			t.Errorf("listed project %v has no allow_batches", p["id"])
		}
		if p["id"] == id && (p["allow_background"] != true || p["allow_batches"] != true) {
			t.Errorf("listed project %s: %v", id, p)
		}
	}

	for _, tc := range []struct {
		method, path, body, code, param string
	}{
		{"POST", "/manage/projects", `{"name":"p",` + key + `,"allow_background":null}`, "invalid_value", "allow_background"},
		{"POST", "/manage/projects", `{"name":"p",` + key + `,"allow_batches":null}`, "invalid_value", "allow_batches"},
		{"POST", "/manage/projects", `{"name":"p",` + key + `,"allow_batches":"no"}`, "invalid_type", "allow_batches"},
		{"PATCH", path, `{"allow_background":null}`, "invalid_value", "allow_background"},
		{"PATCH", path, `{"allow_batches":null}`, "invalid_value", "allow_batches"},
		{"PATCH", path, `{"cache_post":null}`, "invalid_value", "cache_post"},
		{"PATCH", path, `{"allow_background":0}`, "invalid_type", "allow_background"},
	} {
		t.Run(fmt.Sprintf("%s %s", tc.method, tc.body), func(t *testing.T) {
			wantError(t, h.do(req{method: tc.method, path: tc.path, body: tc.body}), 400, "invalid_request_error", tc.code, tc.param)
		})
	}
	wantInvalidated(t, h, nil, nil)
	out := h.do(req{method: "GET", path: path})
	wantSwitches(t, h, out, switchesOf(true, true, true))
}
