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

// TestProjectCapture: capture is off by default and shown with the caps in
// force; a POST or PATCH replaces it whole, null turns it off, other
// changes keep it, and each bad member is refused by name.
func TestProjectCapture(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := `"openai_api_key":"` + rawKey1 + `"`
	captureOf := func(out resp) string { t.Helper(); return mustJSON(t, out.body["capture"]) }
	const off = `{"enabled":false,"redact":[],"request_max_bytes":65536,"response_max_bytes":262144}`

	out := h.do(req{method: "POST", path: "/manage/projects", body: `{"name":"p",` + key + `}`})
	wantStatus(t, out, 201)
	if got := captureOf(out); got != off {
		t.Errorf("default capture %s, want %s", got, off)
	}
	out = h.do(req{method: "POST", path: "/manage/projects", body: `{"name":"p",` + key + `,"capture":{"enabled":true,"redact":["email"]}}`})
	wantStatus(t, out, 201)
	if got, want := captureOf(out), `{"enabled":true,"redact":["email"],"request_max_bytes":65536,"response_max_bytes":262144}`; got != want {
		t.Errorf("created capture %s, want %s", got, want)
	}
	id := out.body["id"].(string)
	path := "/manage/projects/" + id
	h.inv.take()

	for _, tc := range []struct{ name, body, want string }{
		{"replace whole", `{"capture":{"enabled":true,"request_max_bytes":1000,"redact":["re:ACME-\\d+","card_number"]}}`,
			`{"enabled":true,"redact":["re:ACME-\\d+","card_number"],"request_max_bytes":1000,"response_max_bytes":262144}`},
		{"other fields keep it", `{"name":"Renamed"}`,
			`{"enabled":true,"redact":["re:ACME-\\d+","card_number"],"request_max_bytes":1000,"response_max_bytes":262144}`},
		{"null turns it off", `{"capture":null}`, off},
		{"on again, defaults", `{"capture":{"enabled":true}}`, `{"enabled":true,"redact":[],"request_max_bytes":65536,"response_max_bytes":262144}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: "PATCH", path: path, body: tc.body})
			wantStatus(t, out, 200)
			if got := captureOf(out); got != tc.want {
				t.Errorf("capture %s, want %s", got, tc.want)
			}
			if got := captureOf(h.do(req{method: "GET", path: path})); got != tc.want {
				t.Errorf("GET capture %s, want %s", got, tc.want)
			}
			wantInvalidated(t, h, nil, []string{id})
		})
	}

	for _, tc := range []struct{ body, code, param string }{
		{`{"capture":{"enabled":true,"redact":["email","passport"]}}`, "invalid_value", "capture.redact[1]"},
		{`{"capture":{"redact":["re:("]}}`, "invalid_value", "capture.redact[0]"},
		{`{"capture":{"redact":[""]}}`, "invalid_value", "capture.redact[0]"},
		{`{"capture":{"request_max_bytes":-1}}`, "invalid_value", "capture.request_max_bytes"},
		{`{"capture":{"response_max_bytes":1048577}}`, "invalid_value", "capture.response_max_bytes"},
		{`{"capture":{"enabled":"yes"}}`, "invalid_type", "capture.enabled"},
		{`{"capture":{"enable":true}}`, "unknown_field", "capture.enable"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			wantError(t, h.do(req{method: "PATCH", path: path, body: tc.body}), 400, "invalid_request_error", tc.code, tc.param)
		})
	}
	wantInvalidated(t, h, nil, nil)
}

// TestRules: a project's and a token's rules are set whole, shown as sent,
// cleared by null, kept by other changes, and refused member by member; a
// token cannot set CORS.
func TestRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.createProject("Team", rawKey1)
	path := "/manage/projects/" + id
	rulesOf := func(out resp) string { t.Helper(); return mustJSON(t, out.body["rules"]) }
	const full = `{"cors":{"origins":["https://*.example.com"]},"max_body_bytes":65536,"max_output_tokens":2000,"models":["gpt-4o-mini*","o3-mini"],` +
		`"no_tools":true,"over_max":"clamp","params":{"n":[1],"service_tier":["auto","default"]}}`
	h.inv.take()
	for _, tc := range []struct{ name, body, want string }{
		{"set", `{"rules":` + full + `}`, full},
		{"kept", `{"name":"Renamed"}`, full},
		{"replaced", `{"rules":{"models":["gpt-4.1*"]}}`, `{"models":["gpt-4.1*"]}`},
		{"cleared", `{"rules":null}`, `{}`},
	} {
		t.Run("project "+tc.name, func(t *testing.T) {
			out := h.do(req{method: "PATCH", path: path, body: tc.body})
			wantStatus(t, out, 200)
			if got := rulesOf(out); got != tc.want {
				t.Errorf("rules %s, want %s", got, tc.want)
			}
			wantInvalidated(t, h, nil, []string{id})
		})
	}
	tok := h.createToken(map[string]any{"project_id": id, "rules": map[string]any{"models": []string{"gpt-4o-mini"}, "max_output_tokens": 100}})
	if got := rulesOf(tok); got != `{"max_output_tokens":100,"models":["gpt-4o-mini"]}` {
		t.Errorf("token rules %s", got)
	}
	tokPath := "/manage/tokens/" + tok.body["id"].(string)
	out := h.do(req{method: "PATCH", path: tokPath, body: `{"rules":null}`})
	wantStatus(t, out, 200)
	if got := rulesOf(out); got != `{}` {
		t.Errorf("token rules after null: %s", got)
	}

	for _, tc := range []struct{ method, path, body, code, param string }{
		{"PATCH", path, `{"rules":{"models":[""]}}`, "invalid_value", "rules.models[0]"},
		{"PATCH", path, `{"rules":{"over_max":"cut"}}`, "invalid_value", "rules.over_max"},
		{"PATCH", path, `{"rules":{"params":{"max_tokens":[1]}}}`, "invalid_value", "rules.params.max_tokens"},
		{"PATCH", path, `{"rules":{"cors":{"origins":["https://example.com/app"]}}}`, "invalid_value", "rules.cors.origins[0]"},
		{"PATCH", path, `{"rules":{"model":["x"]}}`, "unknown_field", "rules.model"},
		{"PATCH", path, `{"rules":{"max_body_bytes":"1k"}}`, "invalid_type", "rules.max_body_bytes"},
		{"PATCH", tokPath, `{"rules":{"cors":{"origins":["https://a.example.com"]}}}`, "invalid_value", "rules.cors"},
		{"POST", "/manage/tokens", `{"project_id":"` + id + `","rules":{"cors":{"origins":["https://a.example.com"]}}}`, "invalid_value", "rules.cors"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			wantError(t, h.do(req{method: tc.method, path: tc.path, body: tc.body}), 400, "invalid_request_error", tc.code, tc.param)
		})
	}
}
