package storetest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
)

func mustAddUsage(t *testing.T, st *store.Store, records ...store.UsageRecord) {
	t.Helper()
	if err := st.AddUsage(t.Context(), records); err != nil {
		t.Fatal(err)
	}
}

func usageString(u store.UsageRecord) string {
	return fmt.Sprintf("{%s %s %q %q requests:%d errors:%d prompt:%d completion:%d cached:%d reasoning:%d cost:%d}",
		u.ProjectID, u.Day, u.Model, u.PriceVersion, u.Requests, u.Errors, u.PromptTokens, u.CompletionTokens,
		u.CachedTokens, u.ReasoningTokens, u.CostMicroUSD)
}

// checkUsage checks ProjectUsage's answer, order included.
func checkUsage(t *testing.T, st *store.Store, projectID, from, to string, want []store.UsageRecord) {
	t.Helper()
	got, err := st.ProjectUsage(t.Context(), projectID, from, to)
	if err != nil {
		t.Fatalf("ProjectUsage(%s, %s, %s): %v", projectID, from, to, err)
	}
	if got == nil {
		t.Errorf("ProjectUsage(%s, %s, %s) = nil, want a non-nil slice", projectID, from, to)
	}
	var g, w []string
	for _, u := range got {
		g = append(g, usageString(u))
	}
	for _, u := range want {
		w = append(w, usageString(u))
	}
	if !slices.Equal(g, w) {
		t.Errorf("ProjectUsage(%s, %s, %s):\n got %s\nwant %s", projectID, from, to,
			strings.Join(g, "\n     "), strings.Join(w, "\n     "))
	}
}

func checkCost(t *testing.T, st *store.Store, projectID, from, to string, want int64) {
	t.Helper()
	got, err := st.ProjectCost(t.Context(), projectID, from, to)
	if err != nil {
		t.Fatalf("ProjectCost(%s, %s, %s): %v", projectID, from, to, err)
	}
	if got != want {
		t.Errorf("ProjectCost(%s, %s, %s) = %d, want %d", projectID, from, to, got, want)
	}
}

func testUsage(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	mustCreateProject(t, st, newProject("p2", t0))

	if err := st.AddUsage(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	checkUsage(t, st, "p1", "2000-01-01", "2099-12-31", nil)
	checkCost(t, st, "p1", "2000-01-01", "2099-12-31", 0)

	rec := func(project, day, model, version string, n int64) store.UsageRecord {
		return store.UsageRecord{
			ProjectID: project, Day: day, Model: model, PriceVersion: version,
			Requests: n, Errors: 2 * n, PromptTokens: 100 * n, CompletionTokens: 10 * n, CachedTokens: 50 * n,
			ReasoningTokens: 5 * n, CostMicroUSD: 123 * n,
		}
	}
	// Out of order, with a key repeated in the batch and models whose byte
	// order differs from a case-insensitive or punctuation-blind collation.
	mustAddUsage(t, st,
		rec("p1", "2025-03-02", "o1", "v1", 1),
		rec("p1", "2025-03-01", "gpt-4o-mini", "v1", 2),
		rec("p1", "2025-03-01", "GPT-5", "v1", 1),
		rec("p1", "2025-03-01", "gpt-4.1", "v1", 1),
		rec("p1", "2025-03-01", "gpt-4o", "v2", 1),
		rec("p1", "2025-03-01", "gpt-4o", "v1", 3),
		rec("p1", "2025-03-01", "gpt-4o-mini", "v1", 5), // same key as above: summed
		rec("p1", "2025-02-28", "gpt-4o", "v1", 1),
		rec("p1", "2025-04-01", "gpt-4o", "v1", 1),
		rec("p2", "2025-03-01", "gpt-4o", "v1", 7),
		rec("gone", "2025-03-01", "gpt-4o", "v1", 1), // no such project: kept anyway
	)
	march := []store.UsageRecord{
		rec("p1", "2025-03-01", "GPT-5", "v1", 1),
		rec("p1", "2025-03-01", "gpt-4.1", "v1", 1),
		rec("p1", "2025-03-01", "gpt-4o", "v1", 3),
		rec("p1", "2025-03-01", "gpt-4o", "v2", 1),
		rec("p1", "2025-03-01", "gpt-4o-mini", "v1", 7),
		rec("p1", "2025-03-02", "o1", "v1", 1),
	}
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", march)
	checkCost(t, st, "p1", "2025-03-01", "2025-03-31", 123*14)

	// Adding to existing rows sums every column; a new key inserts a row.
	mustAddUsage(t, st,
		rec("p1", "2025-03-01", "gpt-4o", "v1", 10),
		store.UsageRecord{ProjectID: "p1", Day: "2025-03-02", Model: "o1", PriceVersion: "v1", CostMicroUSD: 1},
		rec("p1", "2025-03-03", "o1", "v1", 1),
	)
	march[2] = rec("p1", "2025-03-01", "gpt-4o", "v1", 13)
	march[5].CostMicroUSD++
	march = append(march, rec("p1", "2025-03-03", "o1", "v1", 1))
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", march)
	checkCost(t, st, "p1", "2025-03-01", "2025-03-31", 123*25+1)

	// Ranges include both ends.
	for _, tc := range []struct {
		from, to string
		want     []store.UsageRecord
	}{
		{"2025-03-02", "2025-03-02", march[5:6]},
		{"2025-03-02", "2025-03-03", march[5:]},
		{"2025-02-28", "2025-03-01", append([]store.UsageRecord{rec("p1", "2025-02-28", "gpt-4o", "v1", 1)}, march[:5]...)},
		{"2025-03-03", "2025-04-01", append(slices.Clone(march[6:]), rec("p1", "2025-04-01", "gpt-4o", "v1", 1))},
		{"2025-03-04", "2025-03-31", nil},
		{"2025-03-31", "2025-03-01", nil}, // from after to
		{"2024-01-01", "2025-02-27", nil},
	} {
		checkUsage(t, st, "p1", tc.from, tc.to, tc.want)
		var cost int64
		for _, u := range tc.want {
			cost += u.CostMicroUSD
		}
		checkCost(t, st, "p1", tc.from, tc.to, cost)
	}
	checkUsage(t, st, "p2", "2025-03-01", "2025-03-01", []store.UsageRecord{rec("p2", "2025-03-01", "gpt-4o", "v1", 7)})
	checkUsage(t, st, "nope", "2025-01-01", "2025-12-31", nil)
	checkCost(t, st, "nope", "2025-01-01", "2025-12-31", 0)

	// Usage is billing history: it outlives its project.
	if err := st.DeleteProject(ctx, "p2"); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, st, "p2", "2025-03-01", "2025-03-01", []store.UsageRecord{rec("p2", "2025-03-01", "gpt-4o", "v1", 7)})
	checkUsage(t, st, "gone", "2025-03-01", "2025-03-01", []store.UsageRecord{rec("gone", "2025-03-01", "gpt-4o", "v1", 1)})

	// Large sums stay exact.
	big := store.UsageRecord{ProjectID: "p3", Day: "2025-03-01", Model: "m", PriceVersion: "v", CostMicroUSD: 1 << 52, PromptTokens: 1 << 40}
	mustAddUsage(t, st, big, big)
	big.CostMicroUSD, big.PromptTokens = 1<<53, 1<<41
	checkUsage(t, st, "p3", "2025-03-01", "2025-03-01", []store.UsageRecord{big})
	checkCost(t, st, "p3", "2025-03-01", "2025-03-01", 1<<53)
}

// testMigrateUsageErrors: rolling 00007 (and those after it) back and forth keeps the roll-up
// but its error counts, which come back as 0; more errors add up again.
func testMigrateUsageErrors(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	rec := store.UsageRecord{ProjectID: "p1", Day: "2025-03-01", Model: "gpt-4o", PriceVersion: "v1",
		Requests: 3, Errors: 2, PromptTokens: 30, CompletionTokens: 6, CostMicroUSD: 135}
	mustAddUsage(t, st, rec)
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-01", []store.UsageRecord{rec})
	for range len(migrationFiles) - 6 { // down to 00006
		if err := st.Migrate(ctx, "down", nil); err != nil {
			t.Fatal(err)
		}
	}
	checkStates(t, migrationStatus(t, st), 6)
	if err := st.Migrate(ctx, "up", nil); err != nil {
		t.Fatal(err)
	}
	rec.Errors = 0
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-01", []store.UsageRecord{rec})
	mustAddUsage(t, st, store.UsageRecord{ProjectID: "p1", Day: "2025-03-01", Model: "gpt-4o", PriceVersion: "v1", Errors: 1})
	rec.Errors = 1
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-01", []store.UsageRecord{rec})
}

func testUsageInvalid(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	good := store.UsageRecord{ProjectID: "p1", Day: "2025-03-01", Model: "gpt-4o", PriceVersion: "v1", Requests: 1, CostMicroUSD: 10}
	for _, tc := range []struct {
		name   string
		change func(*store.UsageRecord)
	}{
		{"no project", func(u *store.UsageRecord) { u.ProjectID = "" }},
		{"empty day", func(u *store.UsageRecord) { u.Day = "" }},
		{"day without zero padding", func(u *store.UsageRecord) { u.Day = "2025-3-1" }},
		{"impossible day", func(u *store.UsageRecord) { u.Day = "2025-02-30" }},
		{"timestamp, not a day", func(u *store.UsageRecord) { u.Day = "2025-03-01T00:00:00Z" }},
		{"negative requests", func(u *store.UsageRecord) { u.Requests = -1 }},
		{"negative errors", func(u *store.UsageRecord) { u.Errors = -1 }},
		{"negative tokens", func(u *store.UsageRecord) { u.ReasoningTokens = -1 }},
		{"negative cost", func(u *store.UsageRecord) { u.CostMicroUSD = -1 }},
	} {
		bad := good
		tc.change(&bad)
		// One bad record refuses the whole batch.
		if err := st.AddUsage(ctx, []store.UsageRecord{good, bad}); err == nil {
			t.Errorf("AddUsage with %s: want an error", tc.name)
		}
	}
	checkUsage(t, st, "p1", "2025-01-01", "2025-12-31", nil)

	for _, r := range [][2]string{{"2025-3-1", "2025-03-31"}, {"2025-03-01", ""}, {"", ""}, {"2025-03-01", "2025-13-01"}} {
		if _, err := st.ProjectUsage(ctx, "p1", r[0], r[1]); err == nil {
			t.Errorf("ProjectUsage(%q, %q): want an error", r[0], r[1])
		}
		if _, err := st.ProjectCost(ctx, "p1", r[0], r[1]); err == nil {
			t.Errorf("ProjectCost(%q, %q): want an error", r[0], r[1])
		}
	}
}

// testUsageConcurrent has replicas flush overlapping batches at once, keys
// listed in opposite orders and new rows inserted by several writers at the
// same moment: no addition is lost and no transaction deadlocks.
func testUsageConcurrent(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	const workers, batches = 4, 25
	models := []string{"gpt-4o", "gpt-4o-mini", "o1"}
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches)
	for w := range workers {
		wg.Go(func() {
			for i := range batches {
				day := fmt.Sprintf("2025-03-%02d", 1+i%5) // rows created by whoever comes first
				var batch []store.UsageRecord
				for _, m := range models {
					batch = append(batch,
						store.UsageRecord{ProjectID: "p1", Day: day, Model: m, PriceVersion: "v1", Requests: 1, PromptTokens: 3, CostMicroUSD: 7},
						store.UsageRecord{ProjectID: "p2", Day: day, Model: m, PriceVersion: "v1", Requests: 1, CompletionTokens: 2, CostMicroUSD: 1})
				}
				if w%2 == 1 {
					slices.Reverse(batch)
				}
				if err := st.AddUsage(ctx, batch); err != nil {
					errs <- err
				}
				if _, err := st.ProjectCost(ctx, "p1", "2025-03-01", "2025-03-31"); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	const perCell = workers * batches / 5 // adds per (day, model) row
	var want []store.UsageRecord
	for d := 1; d <= 5; d++ {
		for _, m := range models {
			want = append(want, store.UsageRecord{ProjectID: "p1", Day: fmt.Sprintf("2025-03-%02d", d), Model: m, PriceVersion: "v1",
				Requests: perCell, PromptTokens: 3 * perCell, CostMicroUSD: 7 * perCell})
		}
	}
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", want)
	checkCost(t, st, "p1", "2025-03-01", "2025-03-31", 7*workers*batches*int64(len(models)))
	checkCost(t, st, "p2", "2025-03-01", "2025-03-31", workers*batches*int64(len(models)))
}
