package storetest

import (
	"fmt"
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
)

func testBudgetUses(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	budget := func(id string, micro int64) store.Project {
		p := newProject(id, t0)
		p.MonthlyBudgetMicroUSD = &micro
		return p
	}
	check := func(from, to string, want ...store.BudgetUse) {
		t.Helper()
		got, err := st.BudgetUses(ctx, from, to)
		if err != nil {
			t.Fatalf("BudgetUses(%s, %s): %v", from, to, err)
		}
		if got == nil {
			t.Errorf("BudgetUses(%s, %s) = nil, want a non-nil slice", from, to)
		}
		if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
			t.Errorf("BudgetUses(%s, %s):\n got %s\nwant %s", from, to, g, w)
		}
	}

	check("2025-03-01", "2025-03-31")
	// Created out of id order; "B" sorts before "a" byte-wise, not in a
	// case-blind collation.
	mustCreateProject(t, st, budget("a", 10_000_000))
	mustCreateProject(t, st, newProject("none", t0)) // no budget: never listed
	mustCreateProject(t, st, budget("B", 2_000_000))
	mustCreateProject(t, st, budget("idle", 0)) // a budget without usage
	mustAddUsage(t, st,
		store.UsageRecord{ProjectID: "a", Day: "2025-02-28", Model: "m1", CostMicroUSD: 5_000_000}, // last month
		store.UsageRecord{ProjectID: "a", Day: "2025-03-01", Model: "m1", CostMicroUSD: 8_000_000},
		store.UsageRecord{ProjectID: "a", Day: "2025-03-31", Model: "m2", PriceVersion: "v2", CostMicroUSD: 500_000},
		store.UsageRecord{ProjectID: "a", Day: "2025-04-01", Model: "m1", CostMicroUSD: 7}, // next month
		store.UsageRecord{ProjectID: "B", Day: "2025-03-15", Model: "m1", CostMicroUSD: 2_500_000},
		store.UsageRecord{ProjectID: "none", Day: "2025-03-15", Model: "m1", CostMicroUSD: 9},
		// Usage of a deleted project, or one never created, has no budget.
		store.UsageRecord{ProjectID: "gone", Day: "2025-03-15", Model: "m1", CostMicroUSD: 9},
	)
	check("2025-03-01", "2025-03-31",
		store.BudgetUse{ProjectID: "B", BudgetMicroUSD: 2_000_000, CostMicroUSD: 2_500_000},
		store.BudgetUse{ProjectID: "a", BudgetMicroUSD: 10_000_000, CostMicroUSD: 8_500_000},
		store.BudgetUse{ProjectID: "idle", BudgetMicroUSD: 0, CostMicroUSD: 0},
	)
	check("2025-02-01", "2025-02-28",
		store.BudgetUse{ProjectID: "B", BudgetMicroUSD: 2_000_000, CostMicroUSD: 0},
		store.BudgetUse{ProjectID: "a", BudgetMicroUSD: 10_000_000, CostMicroUSD: 5_000_000},
		store.BudgetUse{ProjectID: "idle", BudgetMicroUSD: 0, CostMicroUSD: 0},
	)

	// A budget removed takes the project off the list.
	if _, err := st.UpdateProject(ctx, "B", store.ProjectUpdate{SetMonthlyBudget: true}); err != nil {
		t.Fatal(err)
	}
	check("2025-03-01", "2025-03-31",
		store.BudgetUse{ProjectID: "a", BudgetMicroUSD: 10_000_000, CostMicroUSD: 8_500_000},
		store.BudgetUse{ProjectID: "idle", BudgetMicroUSD: 0, CostMicroUSD: 0},
	)

	for _, r := range [][2]string{{"2025-3-01", "2025-03-31"}, {"2025-03-01", "2025-02-30"}, {"", ""}} {
		if _, err := st.BudgetUses(ctx, r[0], r[1]); err == nil {
			t.Errorf("BudgetUses(%q, %q) accepted", r[0], r[1])
		}
	}
}
