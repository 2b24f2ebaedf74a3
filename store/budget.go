package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// BudgetUse is a project's monthly budget beside what the usage roll-up
// holds of its spend in a span of days, both in micro-USD.
type BudgetUse struct {
	ProjectID      string
	BudgetMicroUSD int64
	CostMicroUSD   int64
}

// BudgetUses returns, for every project that has a monthly budget, the
// budget and its cost in the roll-up from fromDay to toDay, both included
// (days in [DayLayout]); 0 for a project without usage in the span. One
// query answers for all projects, ordered by project id (byte-wise). The
// result is never nil. Spend still pending in a replica's roll-up or
// reserved by unsettled background work is not in it.
func (s *Store) BudgetUses(ctx context.Context, fromDay, toDay string) ([]BudgetUse, error) {
	if err := checkDayRange(fromDay, toDay); err != nil {
		return nil, fmt.Errorf("budget use: %w", err)
	}
	// The join's conditions on day sit in ON, not WHERE, so a project with
	// no usage in the span keeps its row (cost 0). SUM of BIGINT is NUMERIC
	// on PostgreSQL; the cast brings it back to int64.
	uses, err := queryAll(ctx, s.db, func(row scanner) (BudgetUse, error) {
		var b BudgetUse
		err := row.Scan(&b.ProjectID, &b.BudgetMicroUSD, &b.CostMicroUSD)
		return b, err
	},
		`SELECT p.id, p.monthly_budget_micro_usd, CAST(COALESCE(SUM(u.cost_micro_usd), 0) AS BIGINT)
		 FROM projects p
		 LEFT JOIN usage_daily u ON u.project_id = p.id AND u.day >= $1 AND u.day <= $2
		 WHERE p.monthly_budget_micro_usd IS NOT NULL
		 GROUP BY p.id, p.monthly_budget_micro_usd`,
		fromDay, toDay)
	if err != nil {
		return nil, fmt.Errorf("budget use: %w", err)
	}
	// Sorted here, not by ORDER BY, for one order on both backends (see
	// [Store.ProjectUsage]).
	slices.SortFunc(uses, func(a, b BudgetUse) int { return cmp.Compare(a.ProjectID, b.ProjectID) })
	return uses, nil
}
