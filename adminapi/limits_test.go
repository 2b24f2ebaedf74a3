package adminapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
)

// noLimits is the limits object of something without limits, as decoded JSON.
func noLimits() map[string]any {
	return map[string]any{"requests_per_minute": nil, "tokens_per_minute": nil, "max_concurrent": nil}
}

// limitsOf builds a decoded limits object; a negative value stands for null.
func limitsOf(rpm, tpm, conc int64) map[string]any {
	v := func(n int64) any {
		if n < 0 {
			return nil
		}
		return float64(n)
	}
	return map[string]any{"requests_per_minute": v(rpm), "tokens_per_minute": v(tpm), "max_concurrent": v(conc)}
}

func fmtInt64(p *int64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func storedLimits(l store.Limits) string {
	return fmt.Sprintf("rpm=%s tpm=%s conc=%s", fmtInt64(l.RequestsPerMinute), fmtInt64(l.TokensPerMinute), fmtInt64(l.MaxConcurrent))
}

// wantLimits checks the limits object of a response.
func wantLimits(t *testing.T, out resp, want map[string]any) {
	t.Helper()
	got, _ := out.body["limits"].(map[string]any)
	if !mapsEqual(got, want) {
		t.Errorf("limits = %v, want %v\n%s", out.body["limits"], want, out.raw)
	}
}

func TestProjectLimitsAndBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()

	t.Run("created without", func(t *testing.T) {
		for _, body := range []string{
			`{"name":"a","openai_api_key":"` + rawKey1 + `"}`,
			`{"name":"a","openai_api_key":"` + rawKey1 + `","limits":null,"monthly_budget_usd":null}`,
			`{"name":"a","openai_api_key":"` + rawKey1 + `","limits":{}}`,
			`{"name":"a","openai_api_key":"` + rawKey1 + `","limits":{"requests_per_minute":null,"tokens_per_minute":null,"max_concurrent":null}}`,
		} {
			out := h.do(req{method: "POST", path: "/manage/projects", body: body})
			wantStatus(t, out, 201)
			wantLimits(t, out, noLimits())
			if v, ok := out.body["monthly_budget_usd"]; !ok || v != nil {
				t.Errorf("monthly_budget_usd = %v (present %t), want null", v, ok)
			}
		}
	})

	out := h.do(req{method: "POST", path: "/manage/projects", body: `{"name":"Team","openai_api_key":"` + rawKey1 + `",` +
		`"limits":{"requests_per_minute":600,"tokens_per_minute":200000,"max_concurrent":10},"monthly_budget_usd":250.5}`})
	wantStatus(t, out, 201)
	id := out.body["id"].(string)
	wantLimits(t, out, limitsOf(600, 200000, 10))
	if !strings.Contains(string(out.raw), `"monthly_budget_usd":250.5,`) {
		t.Errorf("budget not shown as 250.5: %s", out.raw)
	}
	stored, err := h.store.GetProject(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedLimits(stored.Limits); got != "rpm=600 tpm=200000 conc=10" || fmtInt64(stored.MonthlyBudgetMicroUSD) != "250500000" {
		t.Errorf("stored %s, budget %s micro-USD", got, fmtInt64(stored.MonthlyBudgetMicroUSD))
	}
	got := h.do(req{method: "GET", path: "/manage/projects/" + id})
	if !mapsEqual(got.body, out.body) {
		t.Errorf("GET = %s\nwant what POST returned: %s", got.raw, out.raw)
	}
	list := h.do(req{method: "GET", path: "/manage/projects"})
	found := false
	for _, p := range list.body["data"].([]any) {
		if p := p.(map[string]any); p["id"] == id {
			found = mapsEqual(p, out.body)
		}
	}
	if !found {
		t.Errorf("listed project differs from the created one: %s", list.raw)
	}
	h.inv.take()

	path := "/manage/projects/" + id
	for _, tc := range []struct {
		name, body   string
		limits       map[string]any
		budget       string // the member as it appears in the raw response
		invalidation bool
	}{
		{"one member set, the others kept", `{"limits":{"tokens_per_minute":1000}}`, limitsOf(600, 1000, 10), `250.5`, true},
		{"one member cleared, the others kept", `{"limits":{"requests_per_minute":null}}`, limitsOf(-1, 1000, 10), `250.5`, true},
		{"empty limits change nothing", `{"limits":{}}`, limitsOf(-1, 1000, 10), `250.5`, false},
		{"other fields keep limits and budget", `{"name":"Renamed"}`, limitsOf(-1, 1000, 10), `250.5`, true},
		{"null clears every limit", `{"limits":null}`, noLimits(), `250.5`, true},
		{"all three at once", `{"limits":{"requests_per_minute":1,"tokens_per_minute":2,"max_concurrent":3}}`, limitsOf(1, 2, 3), `250.5`, true},
		{"smallest budget", `{"monthly_budget_usd":0.000001}`, limitsOf(1, 2, 3), `0.000001`, true},
		{"budget from an exponent", `{"monthly_budget_usd":1.5e3}`, limitsOf(1, 2, 3), `1500`, true},
		{"zero budget", `{"monthly_budget_usd":0}`, limitsOf(1, 2, 3), `0`, true},
		{"six decimals", `{"monthly_budget_usd":12.345678}`, limitsOf(1, 2, 3), `12.345678`, true},
		{"trailing zeros", `{"monthly_budget_usd":7.10000000}`, limitsOf(1, 2, 3), `7.1`, true},
		{"budget cleared", `{"monthly_budget_usd":null}`, limitsOf(1, 2, 3), `null`, true},
		{"limits and budget together", `{"limits":{"max_concurrent":null},"monthly_budget_usd":99}`, limitsOf(1, 2, -1), `99`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: "PATCH", path: path, body: tc.body})
			wantStatus(t, out, 200)
			wantLimits(t, out, tc.limits)
			if !strings.Contains(string(out.raw), `"monthly_budget_usd":`+tc.budget+`,`) {
				t.Errorf("monthly_budget_usd is not %s: %s", tc.budget, out.raw)
			}
			if got := h.do(req{method: "GET", path: path}); !mapsEqual(got.body, out.body) {
				t.Errorf("GET after PATCH = %s\nwant %s", got.raw, out.raw)
			}
			if tc.invalidation {
				wantInvalidated(t, h, nil, []string{id})
			} else {
				wantInvalidated(t, h, nil, nil)
			}
		})
	}
	stored, err = h.store.GetProject(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedLimits(stored.Limits); got != "rpm=1 tpm=2 conc=nil" || fmtInt64(stored.MonthlyBudgetMicroUSD) != "99000000" {
		t.Errorf("stored at the end: %s, budget %s micro-USD", got, fmtInt64(stored.MonthlyBudgetMicroUSD))
	}

	// A partial change reads the project first: an unknown one is a 404.
	for _, body := range []string{`{"limits":{"max_concurrent":5}}`, `{"limits":null}`, `{"monthly_budget_usd":1}`} {
		out := h.do(req{method: "PATCH", path: "/manage/projects/proj_missing", body: body})
		wantError(t, out, 404, "invalid_request_error", "not_found", "")
	}
	wantInvalidated(t, h, nil, nil)
}

func TestTokenLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	projectID := h.createProject("Team", rawKey1)

	plain := h.createToken(map[string]any{"project_id": projectID})
	wantLimits(t, plain, noLimits())

	created := h.createToken(map[string]any{"project_id": projectID, "max_requests": 100,
		"limits": map[string]any{"requests_per_minute": 60, "max_concurrent": 2}})
	id := created.body["id"].(string)
	wantLimits(t, created, limitsOf(60, -1, 2))
	if created.body["max_requests"] != float64(100) {
		t.Errorf("max_requests = %v", created.body["max_requests"])
	}
	tok, err := h.store.GetToken(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedLimits(tok.Limits); got != "rpm=60 tpm=nil conc=2" {
		t.Errorf("stored %s", got)
	}
	wantLimits(t, h.do(req{method: "GET", path: "/manage/tokens/" + id}), limitsOf(60, -1, 2))
	list := h.do(req{method: "GET", path: "/manage/tokens?project_id=" + projectID})
	for _, item := range list.body["data"].([]any) {
		if item := item.(map[string]any); item["id"] == id && !mapsEqual(item["limits"].(map[string]any), limitsOf(60, -1, 2)) {
			t.Errorf("listed token limits = %v", item["limits"])
		}
	}
	// The project's limits are its own, not copied to its tokens.
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: `{"limits":{"tokens_per_minute":5}}`}), 200)
	wantLimits(t, h.do(req{method: "GET", path: "/manage/tokens/" + id}), limitsOf(60, -1, 2))
	h.inv.take()

	path := "/manage/tokens/" + id
	for _, tc := range []struct {
		name, body   string
		limits       map[string]any
		invalidation bool
	}{
		{"one member set, the others kept", `{"limits":{"tokens_per_minute":9000}}`, limitsOf(60, 9000, 2), true},
		{"one member cleared", `{"limits":{"max_concurrent":null}}`, limitsOf(60, 9000, -1), true},
		{"empty limits change nothing", `{"limits":{}}`, limitsOf(60, 9000, -1), false},
		{"with other fields", `{"name":"ci","max_requests":null,"limits":{"requests_per_minute":1}}`, limitsOf(1, 9000, -1), true},
		{"null clears every limit", `{"limits":null}`, noLimits(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: "PATCH", path: path, body: tc.body})
			wantStatus(t, out, 200)
			wantLimits(t, out, tc.limits)
			if tc.invalidation {
				wantInvalidated(t, h, []string{id}, nil)
			} else {
				wantInvalidated(t, h, nil, nil)
			}
		})
	}

	// Limits of a revoked token can still be read and changed; reactivating
	// it cannot, even alongside a limits change.
	wantStatus(t, h.do(req{method: "DELETE", path: path}), 200)
	h.inv.take()
	wantLimits(t, h.do(req{method: "PATCH", path: path, body: `{"limits":{"max_concurrent":4}}`}), limitsOf(-1, -1, 4))
	wantInvalidated(t, h, []string{id}, nil)
	out := h.do(req{method: "PATCH", path: path, body: `{"active":true,"limits":{"max_concurrent":8}}`})
	wantError(t, out, 400, "invalid_request_error", "invalid_value", "active")
	wantLimits(t, h.do(req{method: "GET", path: path}), limitsOf(-1, -1, 4))

	out = h.do(req{method: "PATCH", path: "/manage/tokens/tok_missing", body: `{"limits":{"max_concurrent":5}}`})
	wantError(t, out, 404, "invalid_request_error", "not_found", "")
	wantInvalidated(t, h, nil, nil)
}

func TestLimitsBadRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	projectID := h.createProject("Team", rawKey1)
	tokenID := h.createToken(map[string]any{"project_id": projectID}).body["id"].(string)
	newProject := func(extra string) string {
		return `{"name":"a","openai_api_key":"` + rawKey1 + `",` + extra + `}`
	}
	newToken := func(extra string) string { return `{"project_id":"` + projectID + `",` + extra + `}` }
	projPath, tokPath := "/manage/projects/"+projectID, "/manage/tokens/"+tokenID

	for _, tc := range []struct {
		name, method, path, body string
		code, param              string
	}{
		{"zero rpm", "POST", "/manage/projects", newProject(`"limits":{"requests_per_minute":0}`), "invalid_value", "limits.requests_per_minute"},
		{"negative tpm", "POST", "/manage/projects", newProject(`"limits":{"tokens_per_minute":-5}`), "invalid_value", "limits.tokens_per_minute"},
		{"zero concurrency", "POST", "/manage/projects", newProject(`"limits":{"max_concurrent":0}`), "invalid_value", "limits.max_concurrent"},
		{"fractional limit", "POST", "/manage/projects", newProject(`"limits":{"max_concurrent":1.5}`), "invalid_type", "limits.max_concurrent"},
		{"limit as a string", "POST", "/manage/projects", newProject(`"limits":{"tokens_per_minute":"100"}`), "invalid_type", "limits.tokens_per_minute"},
		{"limit too big", "POST", "/manage/projects", newProject(`"limits":{"requests_per_minute":1e30}`), "invalid_type", "limits.requests_per_minute"},
		{"limits a number", "POST", "/manage/projects", newProject(`"limits":5`), "invalid_type", "limits"},
		{"limits an array", "POST", "/manage/projects", newProject(`"limits":[]`), "invalid_type", "limits"},
		{"unknown limit", "POST", "/manage/projects", newProject(`"limits":{"burst":5}`), "unknown_field", "limits.burst"},
		{"negative budget", "POST", "/manage/projects", newProject(`"monthly_budget_usd":-1`), "invalid_value", "monthly_budget_usd"},
		{"seven decimals", "POST", "/manage/projects", newProject(`"monthly_budget_usd":0.0000001`), "invalid_value", "monthly_budget_usd"},
		{"seven decimals by exponent", "POST", "/manage/projects", newProject(`"monthly_budget_usd":1e-7`), "invalid_value", "monthly_budget_usd"},
		{"budget beyond int64", "POST", "/manage/projects", newProject(`"monthly_budget_usd":1e13`), "invalid_value", "monthly_budget_usd"},
		{"budget with a huge exponent", "POST", "/manage/projects", newProject(`"monthly_budget_usd":1e999999999`), "invalid_value", "monthly_budget_usd"},
		{"budget as a string", "POST", "/manage/projects", newProject(`"monthly_budget_usd":"25"`), "invalid_type", "monthly_budget_usd"},
		{"budget as a boolean", "POST", "/manage/projects", newProject(`"monthly_budget_usd":true`), "invalid_type", "monthly_budget_usd"},
		{"budget as an object", "POST", "/manage/projects", newProject(`"monthly_budget_usd":{"usd":5}`), "invalid_type", "monthly_budget_usd"},

		{"patch project zero tpm", "PATCH", projPath, `{"limits":{"tokens_per_minute":0}}`, "invalid_value", "limits.tokens_per_minute"},
		{"patch project unknown limit", "PATCH", projPath, `{"limits":{"rpm":1}}`, "unknown_field", "limits.rpm"},
		{"patch project limits a string", "PATCH", projPath, `{"limits":"none"}`, "invalid_type", "limits"},
		{"patch project negative budget", "PATCH", projPath, `{"monthly_budget_usd":-0.5}`, "invalid_value", "monthly_budget_usd"},
		{"patch project precise budget", "PATCH", projPath, `{"monthly_budget_usd":10.1234567}`, "invalid_value", "monthly_budget_usd"},
		{"patch project bad limit beside a good one", "PATCH", projPath, `{"limits":{"requests_per_minute":5,"max_concurrent":0}}`, "invalid_value", "limits.max_concurrent"},

		{"token zero tpm", "POST", "/manage/tokens", newToken(`"limits":{"tokens_per_minute":0}`), "invalid_value", "limits.tokens_per_minute"},
		{"token fractional rpm", "POST", "/manage/tokens", newToken(`"limits":{"requests_per_minute":2.5}`), "invalid_type", "limits.requests_per_minute"},
		{"token unknown limit", "POST", "/manage/tokens", newToken(`"limits":{"burst":1}`), "unknown_field", "limits.burst"},
		{"token budget", "POST", "/manage/tokens", newToken(`"monthly_budget_usd":5`), "unknown_field", "monthly_budget_usd"},
		{"patch token zero concurrency", "PATCH", tokPath, `{"limits":{"max_concurrent":0}}`, "invalid_value", "limits.max_concurrent"},
		{"patch token limits wrong type", "PATCH", tokPath, `{"limits":true}`, "invalid_type", "limits"},
		{"patch token budget", "PATCH", tokPath, `{"monthly_budget_usd":5}`, "unknown_field", "monthly_budget_usd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: tc.method, path: tc.path, body: tc.body})
			wantError(t, out, 400, "invalid_request_error", tc.code, tc.param)
		})
	}
	wantInvalidated(t, h, nil, nil)
	wantLimits(t, h.do(req{method: "GET", path: projPath}), noLimits())
	wantLimits(t, h.do(req{method: "GET", path: tokPath}), noLimits())
	if out := h.do(req{method: "GET", path: "/manage/projects"}); len(out.body["data"].([]any)) != 1 {
		t.Errorf("a refused request created a project: %s", out.raw)
	}
}

func TestParseMicroUSD(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		err  error
	}{
		{"0", 0, nil},
		{"-0", 0, nil},
		{"0.0", 0, nil},
		{"0e999999999999", 0, nil},
		{"1", 1_000_000, nil},
		{"12.5", 12_500_000, nil},
		{"0.000123", 123, nil},
		{"0.000001", 1, nil},
		{"1.000000", 1_000_000, nil},
		{"0.0000010", 1, nil},
		{"1.10000000000000000000", 1_100_000, nil},
		{"1e-6", 1, nil},
		{"1E2", 100_000_000, nil},
		{"1.5e3", 1_500_000_000, nil},
		{"1.5E+3", 1_500_000_000, nil},
		{"0.1e-5", 1, nil},
		{"100000000000000000000000e-20", 1_000_000_000, nil},
		{"9223372036854.775807", math.MaxInt64, nil},
		{"0009", 9_000_000, nil},
		{"-1", 0, errNegative},
		{"-0.000001", 0, errNegative},
		{"-0.0000000001", 0, errNegative},
		{"0.0000001", 0, errTooPrecise},
		{"1.0000001", 0, errTooPrecise},
		{"1e-7", 0, errTooPrecise},
		{"1e-99999999999", 0, errTooPrecise},
		{"123456789012345678901234567890e-30", 0, errTooPrecise},
		{"9223372036854.775808", 0, errTooLarge},
		{"10000000000000", 0, errTooLarge},
		{"1e13", 0, errTooLarge},
		{"1e99999999999", 0, errTooLarge},
		{"99999999999999999999999999", 0, errTooLarge},
		{"", 0, errNotADecimal},
		{"1x", 0, errNotADecimal},
		{".5", 0, errNotADecimal},
	} {
		got, err := parseMicroUSD(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("parseMicroUSD(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFormatMicroUSD(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0"},
		{1, "0.000001"},
		{123, "0.000123"},
		{100_000, "0.1"},
		{1_000_000, "1"},
		{12_500_000, "12.5"},
		{20_000_000, "20"},
		{1_234_567_890, "1234.56789"},
		{-1, "-0.000001"},
		{-12_500_000, "-12.5"},
		{math.MaxInt64, "9223372036854.775807"},
		{math.MinInt64, "-9223372036854.775808"},
	} {
		if got := formatMicroUSD(tc.in); got != tc.want {
			t.Errorf("formatMicroUSD(%d) = %s, want %s", tc.in, got, tc.want)
		}
		if tc.in >= 0 {
			if back, err := parseMicroUSD(tc.want); err != nil || back != tc.in {
				t.Errorf("parseMicroUSD(formatMicroUSD(%d)) = %d, %v", tc.in, back, err)
			}
		}
	}
}
