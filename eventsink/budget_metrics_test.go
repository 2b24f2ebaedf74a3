package eventsink

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/store"
)

// Interface guard: the real store is what BudgetMetrics reads.
var _ budgetStore = (*store.Store)(nil)

// budgetRatios scrapes reg and returns llm_proxy_budget_used_ratio by project.
func budgetRatios(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "llm_proxy_budget_used_ratio" {
			t.Errorf("unexpected series %s", f.GetName())
			continue
		}
		for _, m := range f.GetMetric() {
			if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "project_id" {
				t.Fatalf("labels %v, want project_id alone", l)
			}
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return got
}

// deadlineStore records whether each query had a deadline.
type deadlineStore struct {
	*store.Store
	deadlines []time.Duration
}

func (s *deadlineStore) BudgetUses(ctx context.Context, fromDay, toDay string) ([]store.BudgetUse, error) {
	if d, ok := ctx.Deadline(); ok {
		s.deadlines = append(s.deadlines, time.Until(d))
	} else {
		s.deadlines = append(s.deadlines, 0)
	}
	return s.Store.BudgetUses(ctx, fromDay, toDay)
}

func TestBudgetMetrics(t *testing.T) {
	st := openAuditStore(t)
	micro := func(usd float64) *int64 { v := int64(usd * 1e6); return &v }
	for id, budget := range map[string]*int64{
		"proj_a": micro(10), "proj_over": micro(2), "proj_idle": micro(4), "proj_zero": micro(0), "proj_none": nil,
	} {
		if err := st.CreateProject(t.Context(), store.Project{ID: id, Name: id, Active: true, MonthlyBudgetMicroUSD: budget}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddUsage(t.Context(), []store.UsageRecord{
		{ProjectID: "proj_a", Day: "2025-02-27", Model: "gpt-4o", CostMicroUSD: 5_000_000}, // last month
		{ProjectID: "proj_a", Day: "2025-03-01", Model: "gpt-4o", CostMicroUSD: 8_000_000},
		{ProjectID: "proj_a", Day: "2025-03-31", Model: "gpt-4o-mini", CostMicroUSD: 500_000},
		{ProjectID: "proj_over", Day: "2025-03-10", Model: "gpt-4o", CostMicroUSD: 2_500_000},
		{ProjectID: "proj_zero", Day: "2025-03-10", Model: "gpt-4o", CostMicroUSD: 1},
		{ProjectID: "proj_none", Day: "2025-03-10", Model: "gpt-4o", CostMicroUSD: 1_000_000},
	}); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	ds := &deadlineStore{Store: st}
	b := NewBudgetMetrics(ds, reg, zerolog.New(&logs))
	// 1 April at 01:00 in UTC+2 is still 31 March in UTC: March's spend.
	b.now = func() time.Time { return time.Date(2025, 4, 1, 1, 0, 0, 0, time.FixedZone("UTC+2", 2*3600)) }
	want := map[string]float64{"proj_a": 0.85, "proj_over": 1.25, "proj_idle": 0}
	if got := budgetRatios(t, reg); !maps.Equal(got, want) {
		t.Errorf("March: %v, want %v", got, want)
	}
	if len(ds.deadlines) != 1 || ds.deadlines[0] <= 0 || ds.deadlines[0] > budgetScrapeTimeout {
		t.Errorf("one scrape made queries with time left %v, want one query bounded by %v", ds.deadlines, budgetScrapeTimeout)
	}

	// In UTC April has begun: nothing spent yet.
	b.now = func() time.Time { return time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC) }
	want = map[string]float64{"proj_a": 0, "proj_over": 0, "proj_idle": 0}
	if got := budgetRatios(t, reg); !maps.Equal(got, want) {
		t.Errorf("April: %v, want %v", got, want)
	}
	if logs.Len() != 0 {
		t.Errorf("logged %s", logs.String())
	}

	// A store that fails leaves the series out of the scrape, which still
	// succeeds, and says why at warn.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := budgetRatios(t, reg); len(got) != 0 {
		t.Errorf("store closed: %v, want no series", got)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"warn"`) || !strings.Contains(lines[0], "database is closed") {
		t.Errorf("log %q, want one warning with the store's error", lines)
	}

	// Registering again shares the collector, as every metric of the package does.
	if again := NewBudgetMetrics(ds, reg, zerolog.Nop()); again != b {
		t.Error("a second NewBudgetMetrics on one registry registered a second collector")
	}
}
