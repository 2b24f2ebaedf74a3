package policy

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestAllowsModel(t *testing.T) {
	r := Rules{Models: []string{"gpt-4o*", "o3-mini", "*-embedding-*-small", "gpt-*-mini"}}
	for model, want := range map[string]bool{
		"gpt-4o": true, "gpt-4o-mini": true, "gpt-4o-2024-08-06": true, "o3-mini": true,
		"o3-mini-high": false, "o3": false, "gpt-4": false, "gpt-4.1": false, "": false,
		"text-embedding-3-small": true, "text-embedding-3-large": false,
		"gpt-4.1-mini": true, "gpt-mini": false, "xgpt-4o": false,
	} {
		if got := r.AllowsModel(model); got != want {
			t.Errorf("AllowsModel(%q) = %t, want %t", model, got, want)
		}
	}
	if !(Rules{}).AllowsModel("anything") {
		t.Error("no list must allow any model")
	}
	c := Combined{Project: Rules{Models: []string{"gpt-4o*"}}, Token: Rules{Models: []string{"gpt-4o-mini", "o3"}}}
	if !c.AllowsModel("gpt-4o-mini") || c.AllowsModel("gpt-4o") || c.AllowsModel("o3") {
		t.Error("a token list must only narrow the project's")
	}
}

func TestAllowsValue(t *testing.T) {
	r := Rules{Params: map[string][]json.RawMessage{"n": {json.RawMessage(`1`)}, "service_tier": {json.RawMessage(`"auto"`), json.RawMessage(`"default"`)},
		"response_format": {json.RawMessage(`{"type":"json_object"}`)}}}
	for _, tc := range []struct {
		param, raw string
		want       bool
	}{
		{"n", `1`, true}, {"n", `1.0`, true}, {"n", `2`, false}, {"n", `"1"`, false},
		{"service_tier", `"auto"`, true}, {"service_tier", `"flex"`, false},
		{"response_format", `{ "type" : "json_object" }`, true}, {"response_format", `{"type":"text"}`, false},
		{"temperature", `2`, true},
	} {
		if got := r.AllowsValue(tc.param, json.RawMessage(tc.raw)); got != tc.want {
			t.Errorf("AllowsValue(%s, %s) = %t, want %t", tc.param, tc.raw, got, tc.want)
		}
	}
}

func TestAllowsOrigin(t *testing.T) {
	c := &CORS{Origins: []string{"https://app.example.com", "https://*.example.org", "http://localhost:5173"}}
	for origin, want := range map[string]bool{
		"https://app.example.com": true, "http://app.example.com": false, "https://app.example.com:8443": false,
		"https://x.example.org": true, "https://a.b.example.org": true, "https://example.org": false,
		"https://evil-example.org": false, "https://x.example.org.evil.com": false, "http://x.example.org": false,
		"https://x.example.org:444": false, "http://localhost:5173": true, "null": false, "": false,
	} {
		if got := c.AllowsOrigin(origin); got != want {
			t.Errorf("AllowsOrigin(%q) = %t, want %t", origin, got, want)
		}
	}
	if (*CORS)(nil).AllowsOrigin("https://app.example.com") {
		t.Error("no CORS must allow no origin")
	}
}

func TestCombinedCeilings(t *testing.T) {
	for _, tc := range []struct {
		name           string
		project, token Rules
		ceiling        int64
		clamp          bool
		body           int64
	}{
		{"none", Rules{}, Rules{}, 0, false, 0},
		{"project refuses by default", Rules{MaxOutputTokens: 500}, Rules{}, 500, false, 0},
		{"project clamps", Rules{MaxOutputTokens: 500, OverMax: OverMaxClamp}, Rules{}, 500, true, 0},
		{"token lower, refuse wins", Rules{MaxOutputTokens: 500, OverMax: OverMaxClamp}, Rules{MaxOutputTokens: 100}, 100, false, 0},
		{"both clamp", Rules{MaxOutputTokens: 500, OverMax: OverMaxClamp}, Rules{MaxOutputTokens: 800, OverMax: OverMaxClamp}, 500, true, 0},
		{"body caps", Rules{MaxBodyBytes: 1000}, Rules{MaxBodyBytes: 400}, 0, false, 400},
		{"token body cap alone", Rules{}, Rules{MaxBodyBytes: 400}, 0, false, 400},
	} {
		c := Combined{Project: tc.project, Token: tc.token}
		ceiling, clamp := c.MaxOutputTokens()
		if ceiling != tc.ceiling || clamp != tc.clamp || c.MaxBodyBytes() != tc.body {
			t.Errorf("%s: ceiling %d clamp %t body %d, want %d %t %d", tc.name, ceiling, clamp, c.MaxBodyBytes(), tc.ceiling, tc.clamp, tc.body)
		}
	}
}

func TestValidateRules(t *testing.T) {
	good := Rules{Models: []string{"gpt-4o*"}, MaxOutputTokens: 1000, OverMax: "clamp", Params: map[string][]json.RawMessage{"n": {json.RawMessage("1")}},
		NoTools: true, MaxBodyBytes: 1 << 20, CORS: &CORS{Origins: []string{"https://*.example.com"}, Methods: []string{"POST"}, Headers: []string{"Authorization"}}}
	if err := good.Validate(false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field    string
		r        Rules
		forToken bool
	}{
		{"rules.models[0]", Rules{Models: []string{" gpt"}}, false},
		{"rules.max_output_tokens", Rules{MaxOutputTokens: -1}, false},
		{"rules.over_max", Rules{OverMax: "truncate"}, false},
		{"rules.params.max_tokens", Rules{Params: map[string][]json.RawMessage{"max_tokens": {json.RawMessage("1")}}}, false},
		{"rules.params.n", Rules{Params: map[string][]json.RawMessage{"n": {}}}, false},
		{"rules.params.n[0]", Rules{Params: map[string][]json.RawMessage{"n": {json.RawMessage("{")}}}, false},
		{"rules.max_body_bytes", Rules{MaxBodyBytes: -5}, false},
		{"rules.cors", Rules{CORS: &CORS{Origins: []string{"https://a.example"}}}, true},
		{"rules.cors.origins", Rules{CORS: &CORS{}}, false},
		{"rules.cors.origins[0]", Rules{CORS: &CORS{Origins: []string{"https://a.example/"}}}, false},
		{"rules.cors.origins[0]", Rules{CORS: &CORS{Origins: []string{"https://a.*.example"}}}, false},
		{"rules.cors.origins[0]", Rules{CORS: &CORS{Origins: []string{"ftp://a.example"}}}, false},
		{"rules.cors.methods[0]", Rules{CORS: &CORS{Origins: []string{"https://a.example"}, Methods: []string{"post"}}}, false},
		{"rules.cors.max_age_seconds", Rules{CORS: &CORS{Origins: []string{"https://a.example"}, MaxAgeSeconds: 90000}}, false},
	} {
		var fe *FieldError
		if err := tc.r.Validate(tc.forToken); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("Validate(%+v) = %v, want an error on %s", tc.r, err, tc.field)
		}
	}
}
