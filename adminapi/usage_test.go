package adminapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

func (h *harness) addUsage(records ...store.UsageRecord) {
	h.t.Helper()
	if err := h.store.AddUsage(context.Background(), records); err != nil {
		h.t.Fatal(err)
	}
}

func TestProjectUsage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.createProject("Team", rawKey1)
	other := h.createProject("Other", rawKey2)
	h.addUsage(
		store.UsageRecord{ProjectID: id, Day: "2025-03-02", Model: "gpt-4o", PriceVersion: "2025-01",
			Requests: 2, Errors: 1, PromptTokens: 1000, CompletionTokens: 200, CachedTokens: 400, ReasoningTokens: 0, CostMicroUSD: 4_500},
		store.UsageRecord{ProjectID: id, Day: "2025-03-01", Model: "gpt-4o-mini", PriceVersion: "2025-01",
			Requests: 1, PromptTokens: 10, CompletionTokens: 5, CostMicroUSD: 123},
		store.UsageRecord{ProjectID: id, Day: "2025-03-01", Model: "gpt-4o", PriceVersion: "2025-01",
			Requests: 3, Errors: 2, PromptTokens: 300, CompletionTokens: 30, CachedTokens: 100, ReasoningTokens: 20, CostMicroUSD: 1_500_000},
		// Requests refused by the proxy before their body was read: errors only.
		store.UsageRecord{ProjectID: id, Day: "2025-03-01", Model: "", PriceVersion: "2025-01", Errors: 4},
		store.UsageRecord{ProjectID: id, Day: "2025-03-01", Model: "gpt-4o", PriceVersion: "2025-03",
			Requests: 1, PromptTokens: 1, CompletionTokens: 1, CostMicroUSD: 1},
		store.UsageRecord{ProjectID: id, Day: "2025-02-28", Model: "gpt-4o", PriceVersion: "2025-01", Requests: 9, CostMicroUSD: 9},
		store.UsageRecord{ProjectID: id, Day: "2025-03-03", Model: "gpt-4o", PriceVersion: "2025-01", Requests: 9, CostMicroUSD: 9},
		store.UsageRecord{ProjectID: other, Day: "2025-03-01", Model: "gpt-4o", PriceVersion: "2025-01", Requests: 7, CostMicroUSD: 7},
	)

	out := h.do(req{method: "GET", path: "/manage/projects/" + id + "/usage?from=2025-03-01&to=2025-03-02"})
	wantStatus(t, out, 200)
	row := func(date, model, version string, requests, errors, prompt, completion, cached, reasoning int, cost float64) map[string]any {
		return map[string]any{
			"date": date, "model": model, "price_version": version, "requests": float64(requests), "errors": float64(errors),
			"prompt_tokens": float64(prompt), "completion_tokens": float64(completion),
			"cached_tokens": float64(cached), "reasoning_tokens": float64(reasoning),
			"total_tokens": float64(prompt + completion), "cost_usd": cost,
		}
	}
	want := map[string]any{
		"object": "list", "project_id": id, "from": "2025-03-01", "to": "2025-03-02",
		"data": []any{
			row("2025-03-01", "", "2025-01", 0, 4, 0, 0, 0, 0, 0),
			row("2025-03-01", "gpt-4o", "2025-01", 3, 2, 300, 30, 100, 20, 1.5),
			row("2025-03-01", "gpt-4o", "2025-03", 1, 0, 1, 1, 0, 0, 0.000001),
			row("2025-03-01", "gpt-4o-mini", "2025-01", 1, 0, 10, 5, 0, 0, 0.000123),
			row("2025-03-02", "gpt-4o", "2025-01", 2, 1, 1000, 200, 400, 0, 0.0045),
		},
		"total": map[string]any{
			"requests": float64(7), "errors": float64(7), "prompt_tokens": float64(1311), "completion_tokens": float64(236),
			"total_tokens": float64(1547), "cost_usd": 1.504624,
		},
	}
	if !mapsEqual(out.body, want) {
		t.Errorf("usage =\n%s\nwant %v", out.raw, want)
	}
	// Costs are written exactly from micro-USD, never through a float.
	for _, lit := range []string{`"cost_usd":1.5}`, `"cost_usd":0.000001}`, `"cost_usd":0.000123}`, `"cost_usd":0.0045}`, `"cost_usd":1.504624}}`} {
		if !strings.Contains(string(out.raw), lit) {
			t.Errorf("response lacks %s: %s", lit, out.raw)
		}
	}

	// Both ends are included.
	out = h.do(req{method: "GET", path: "/manage/projects/" + id + "/usage?from=2025-02-28&to=2025-03-03"})
	wantStatus(t, out, 200)
	if n := len(out.body["data"].([]any)); n != 7 {
		t.Errorf("2025-02-28..2025-03-03: %d rows, want 7: %s", n, out.raw)
	}
	out = h.do(req{method: "GET", path: "/manage/projects/" + id + "/usage?from=2025-03-03&to=2025-03-03"})
	if data := out.body["data"].([]any); len(data) != 1 || data[0].(map[string]any)["date"] != "2025-03-03" {
		t.Errorf("one day: %s", out.raw)
	}
	if got := h.do(req{method: "GET", path: "/manage/projects/" + other + "/usage?from=2025-03-01&to=2025-03-31"}); len(got.body["data"].([]any)) != 1 {
		t.Errorf("other project's usage: %s", got.raw)
	}
	wantInvalidated(t, h, nil, nil) // reading usage changes nothing
}

func TestProjectUsageDefaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.createProject("Team", rawKey1)
	today := h.now.Format(store.DayLayout)
	monthStart := time.Date(h.now.Year(), h.now.Month(), 1, 0, 0, 0, 0, time.UTC)
	lastMonth := monthStart.AddDate(0, 0, -1)
	h.addUsage(
		store.UsageRecord{ProjectID: id, Day: today, Model: "m", PriceVersion: "v", Requests: 1, CostMicroUSD: 10},
		store.UsageRecord{ProjectID: id, Day: lastMonth.Format(store.DayLayout), Model: "m", PriceVersion: "v", Requests: 5},
	)
	for _, tc := range []struct {
		name, query, from, to string
		rows                  int
	}{
		{"no parameters: this month to today", "", monthStart.Format(store.DayLayout), today, 1},
		{"to only: from the first of its month", "?to=" + lastMonth.Format(store.DayLayout),
			time.Date(lastMonth.Year(), lastMonth.Month(), 1, 0, 0, 0, 0, time.UTC).Format(store.DayLayout), lastMonth.Format(store.DayLayout), 1},
		{"from only: to today", "?from=" + lastMonth.Format(store.DayLayout), lastMonth.Format(store.DayLayout), today, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: "GET", path: "/manage/projects/" + id + "/usage" + tc.query})
			wantStatus(t, out, 200)
			if out.body["from"] != tc.from || out.body["to"] != tc.to || len(out.body["data"].([]any)) != tc.rows {
				t.Errorf("got from %v to %v with %d rows; want %s to %s with %d\n%s",
					out.body["from"], out.body["to"], len(out.body["data"].([]any)), tc.from, tc.to, tc.rows, out.raw)
			}
		})
	}
}

func TestProjectUsageEmpty(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.createProject("Team", rawKey1)
	out := h.do(req{method: "GET", path: "/manage/projects/" + id + "/usage?from=2024-01-01&to=2024-12-31"}) // 366 days
	wantStatus(t, out, 200)
	want := map[string]any{
		"object": "list", "project_id": id, "from": "2024-01-01", "to": "2024-12-31", "data": []any{},
		"total": map[string]any{
			"requests": float64(0), "errors": float64(0), "prompt_tokens": float64(0), "completion_tokens": float64(0),
			"total_tokens": float64(0), "cost_usd": float64(0),
		},
	}
	if !mapsEqual(out.body, want) {
		t.Errorf("empty usage = %s", out.raw)
	}
	if !strings.Contains(string(out.raw), `"data":[]`) || !strings.Contains(string(out.raw), `"cost_usd":0}`) {
		t.Errorf("empty usage must have data [] and cost 0: %s", out.raw)
	}
}

func TestProjectUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.createProject("Team", rawKey1)
	gone := h.createProject("Gone", rawKey2)
	h.addUsage(store.UsageRecord{ProjectID: gone, Day: "2025-03-01", Model: "m", PriceVersion: "v", Requests: 1})
	wantStatus(t, h.do(req{method: "DELETE", path: "/manage/projects/" + gone}), 204)
	h.inv.take()

	for _, tc := range []struct {
		name, query, param string
	}{
		{"from empty", "?from=&to=2025-03-31", "from"},
		{"to empty", "?to=", "to"},
		{"from not zero-padded", "?from=2025-3-01&to=2025-03-31", "from"},
		{"from impossible", "?from=2025-02-30&to=2025-03-31", "from"},
		{"from a timestamp", "?from=2025-03-01T00:00:00Z&to=2025-03-31", "from"},
		{"to garbage", "?from=2025-03-01&to=yesterday", "to"},
		{"to alone, bad", "?to=31.03.2025", "to"},
		{"from after to", "?from=2025-04-01&to=2025-03-31", "from"},
		{"from after today by default", "?from=2999-01-01", "from"},
		{"367 days", "?from=2024-01-01&to=2025-01-01", "to"},
		{"years", "?from=2000-01-01&to=2025-01-01", "to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: "GET", path: "/manage/projects/" + id + "/usage" + tc.query})
			wantError(t, out, 400, "invalid_request_error", "invalid_value", tc.param)
		})
	}
	for _, p := range []string{"proj_missing", gone} {
		out := h.do(req{method: "GET", path: "/manage/projects/" + p + "/usage"})
		wantError(t, out, 404, "invalid_request_error", "not_found", "")
	}
	out := h.do(req{method: "POST", path: "/manage/projects/" + id + "/usage"})
	wantError(t, out, 405, "invalid_request_error", "method_not_allowed", "")
	if allow := out.header.Get("Allow"); allow != "GET, HEAD" {
		t.Errorf("Allow = %q, want GET, HEAD", allow)
	}
	wantInvalidated(t, h, nil, nil)
}
