package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// usageColumns is the column list every usage query selects, in the order
// [scanUsage] reads.
const usageColumns = "project_id, day, model, price_version, requests, errors, prompt_tokens, " +
	"completion_tokens, cached_tokens, reasoning_tokens, cost_micro_usd"

func scanUsage(row scanner) (UsageRecord, error) {
	var u UsageRecord
	err := row.Scan(&u.ProjectID, &u.Day, &u.Model, &u.PriceVersion, &u.Requests, &u.Errors, &u.PromptTokens,
		&u.CompletionTokens, &u.CachedTokens, &u.ReasoningTokens, &u.CostMicroUSD)
	return u, err
}

// compareUsageKey orders records by their roll-up key, the primary key's order.
func compareUsageKey(a, b UsageRecord) int {
	return cmp.Or(
		cmp.Compare(a.ProjectID, b.ProjectID),
		cmp.Compare(a.Day, b.Day),
		cmp.Compare(a.Model, b.Model),
		cmp.Compare(a.PriceVersion, b.PriceVersion),
	)
}

// AddUsage adds the records into the daily usage roll-up, in one
// transaction: a record whose key (ProjectID, Day, Model, PriceVersion) has
// no row yet inserts one, and otherwise its counts and cost are added to the
// row's. Records with the same key in one batch are summed first. Rows are
// written in key order, so replicas flushing overlapping batches at once
// cannot deadlock, and concurrent calls never lose an addition.
//
// Every record must have a ProjectID, a Day in [DayLayout] and no negative
// count or cost; otherwise nothing is written. The project need not exist:
// usage of a project deleted meanwhile is kept, like the rest of its history.
func (s *Store) AddUsage(ctx context.Context, records []UsageRecord) error {
	if len(records) == 0 {
		return nil
	}
	if err := checkUsage(records); err != nil {
		return fmt.Errorf("add usage: %w", err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error { return addUsage(ctx, tx, records) })
	if err != nil {
		return fmt.Errorf("add usage (%d records): %w", len(records), err)
	}
	return nil
}

// addUsage adds records, already checked with [checkUsage], into the
// roll-up within tx: summed by key and written in key order, as
// [Store.AddUsage] describes.
func addUsage(ctx context.Context, tx *sql.Tx, records []UsageRecord) error {
	// excluded is the row proposed for insertion; qualified names are
	// the stored row. SQLite (3.24+) and PostgreSQL spell it alike.
	stmt, err := tx.PrepareContext(ctx,
		`INSERT INTO usage_daily (`+usageColumns+`)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		 ON CONFLICT (project_id, day, model, price_version) DO UPDATE SET
		   requests          = usage_daily.requests          + excluded.requests,
		   errors            = usage_daily.errors            + excluded.errors,
		   prompt_tokens     = usage_daily.prompt_tokens     + excluded.prompt_tokens,
		   completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
		   cached_tokens     = usage_daily.cached_tokens     + excluded.cached_tokens,
		   reasoning_tokens  = usage_daily.reasoning_tokens  + excluded.reasoning_tokens,
		   cost_micro_usd    = usage_daily.cost_micro_usd    + excluded.cost_micro_usd`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range mergeUsage(records) {
		_, err := stmt.ExecContext(ctx, r.ProjectID, r.Day, r.Model, r.PriceVersion, r.Requests, r.Errors,
			r.PromptTokens, r.CompletionTokens, r.CachedTokens, r.ReasoningTokens, r.CostMicroUSD)
		if err != nil {
			return fmt.Errorf("project %s, day %s, model %q: %w", r.ProjectID, r.Day, r.Model, err)
		}
	}
	return nil
}

// checkUsage reports the first record unfit for the roll-up, if any.
func checkUsage(records []UsageRecord) error {
	for _, r := range records {
		if err := checkUsageRecord(r); err != nil {
			return err
		}
	}
	return nil
}

// checkUsageRecord reports what makes r unfit for the roll-up, if anything.
func checkUsageRecord(r UsageRecord) error {
	if r.ProjectID == "" {
		return errors.New("record without a project id")
	}
	if err := checkDay(r.Day); err != nil {
		return fmt.Errorf("project %s: %w", r.ProjectID, err)
	}
	if min(r.Requests, r.Errors, r.PromptTokens, r.CompletionTokens, r.CachedTokens, r.ReasoningTokens, r.CostMicroUSD) < 0 {
		return fmt.Errorf("project %s, day %s, model %q: negative count or cost", r.ProjectID, r.Day, r.Model)
	}
	return nil
}

// mergeUsage returns the records sorted by key, those with equal keys summed
// into one. records is left alone.
func mergeUsage(records []UsageRecord) []UsageRecord {
	sorted := slices.SortedFunc(slices.Values(records), compareUsageKey)
	merged := sorted[:0]
	for _, r := range sorted {
		if n := len(merged); n > 0 && compareUsageKey(merged[n-1], r) == 0 {
			merged[n-1].Add(r)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// checkDay accepts exactly the [DayLayout] form of a real date.
func checkDay(day string) error {
	t, err := time.Parse(DayLayout, day)
	if err != nil || t.Format(DayLayout) != day {
		return fmt.Errorf("day %q is not a date in the form YYYY-MM-DD", day)
	}
	return nil
}

// checkDayRange checks both bounds of a day range.
func checkDayRange(fromDay, toDay string) error {
	if err := checkDay(fromDay); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	if err := checkDay(toDay); err != nil {
		return fmt.Errorf("to: %w", err)
	}
	return nil
}

// ProjectUsage returns the project's roll-up rows from fromDay to toDay, both
// included (days in [DayLayout]), ordered by day, then model, then price
// version (byte-wise). The result is never nil; it is empty when there is no usage,
// when fromDay is after toDay, and for a project that never existed (the
// store does not check: usage outlives deleted projects).
func (s *Store) ProjectUsage(ctx context.Context, projectID, fromDay, toDay string) ([]UsageRecord, error) {
	if err := checkDayRange(fromDay, toDay); err != nil {
		return nil, fmt.Errorf("usage of project %s: %w", projectID, err)
	}
	usage, err := queryAll(ctx, s.db, scanUsage,
		`SELECT `+usageColumns+` FROM usage_daily
		 WHERE project_id = $1 AND day >= $2 AND day <= $3`,
		projectID, fromDay, toDay)
	if err != nil {
		return nil, fmt.Errorf("usage of project %s: %w", projectID, err)
	}
	// Sorted here, not by ORDER BY: PostgreSQL would order model names by the
	// database's collation (often case- and punctuation-blind), SQLite by
	// bytes. Days, all of one fixed form, compare alike on both, which the
	// range in WHERE relies on.
	slices.SortFunc(usage, compareUsageKey)
	return usage, nil
}

// ProjectCost returns the project's total cost in micro-USD from fromDay to
// toDay, both included (days in [DayLayout]); 0 when there is no usage. It
// is how a month's budget spend is recovered after a restart.
func (s *Store) ProjectCost(ctx context.Context, projectID, fromDay, toDay string) (int64, error) {
	if err := checkDayRange(fromDay, toDay); err != nil {
		return 0, fmt.Errorf("cost of project %s: %w", projectID, err)
	}
	// SUM of BIGINT is NUMERIC on PostgreSQL; the cast brings it back to int64.
	var cost int64
	err := s.db.QueryRowContext(ctx,
		`SELECT CAST(COALESCE(SUM(cost_micro_usd), 0) AS BIGINT) FROM usage_daily
		 WHERE project_id = $1 AND day >= $2 AND day <= $3`,
		projectID, fromDay, toDay).Scan(&cost)
	if err != nil {
		return 0, fmt.Errorf("cost of project %s: %w", projectID, err)
	}
	return cost, nil
}
