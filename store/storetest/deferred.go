package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

func newDeferred(id, kind, projectID string, created time.Time, reserved int64) store.Deferred {
	return store.Deferred{
		ID:               id,
		Kind:             kind,
		ProjectID:        projectID,
		TokenID:          "tok-" + projectID,
		Model:            "gpt-4o",
		Ticket:           []byte(fmt.Sprintf(`{"reserved":%d,"keys":["p:%s"]}`, reserved, projectID)),
		ReservedMicroUSD: reserved,
		CreatedAt:        created,
		NextCheckAt:      created.Add(time.Minute),
	}
}

func mustAddDeferred(t *testing.T, st *store.Store, ds ...store.Deferred) {
	t.Helper()
	for _, d := range ds {
		if err := st.AddDeferred(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
}

func mustGetDeferred(t *testing.T, st *store.Store, id string) store.Deferred {
	t.Helper()
	d, err := st.GetDeferred(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustSettle(t *testing.T, st *store.Store, id string, at time.Time, cost int64, usage ...store.UsageRecord) bool {
	t.Helper()
	ok, err := st.SettleDeferred(t.Context(), id, at, cost, usage)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// deferredString renders every field, the ticket quoted (nil and empty
// apart) and times exact.
func deferredString(d store.Deferred) string {
	ticket := "nil"
	if d.Ticket != nil {
		ticket = fmt.Sprintf("%q", d.Ticket)
	}
	return fmt.Sprintf("{ID:%s Kind:%s ProjectID:%s TokenID:%s Model:%q Ticket:%s ReservedMicroUSD:%d "+
		"CreatedAt:%s NextCheckAt:%s Checks:%d SettledAt:%s CostMicroUSD:%d}",
		d.ID, d.Kind, d.ProjectID, d.TokenID, d.Model, ticket, d.ReservedMicroUSD,
		fmtTime(d.CreatedAt), fmtTime(d.NextCheckAt), d.Checks, fmtTimePtr(d.SettledAt), d.CostMicroUSD)
}

func checkDeferred(t *testing.T, what string, got, want store.Deferred) {
	t.Helper()
	if g, w := deferredString(got), deferredString(want); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// checkDue checks the ids DueDeferred returns, in order.
func checkDue(t *testing.T, st *store.Store, now time.Time, limit int, want ...string) []store.Deferred {
	t.Helper()
	due, err := st.DueDeferred(t.Context(), now, limit)
	if err != nil {
		t.Fatalf("DueDeferred(%s, %d): %v", fmtTime(now), limit, err)
	}
	if due == nil {
		t.Errorf("DueDeferred(%s, %d) = nil, want a non-nil slice", fmtTime(now), limit)
	}
	got := []string{}
	for _, d := range due {
		got = append(got, d.ID)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("DueDeferred(%s, %d) = %v, want %v", fmtTime(now), limit, got, want)
	}
	return due
}

func checkOutstanding(t *testing.T, st *store.Store, projectID string, since time.Time, want int64) {
	t.Helper()
	got, err := st.OutstandingMicroUSD(t.Context(), projectID, since)
	if err != nil {
		t.Fatalf("OutstandingMicroUSD(%s, %s): %v", projectID, fmtTime(since), err)
	}
	if got != want {
		t.Errorf("OutstandingMicroUSD(%s, %s) = %d, want %d", projectID, fmtTime(since), got, want)
	}
}

// testMigrateDeferred rolls 00005 back and forth over existing data: the
// charges go with it and come back empty, and projects that predate the
// migration allow background work and batches, whatever they said before.
func testMigrateDeferred(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	p := newProject("p1", t0)
	p.AllowBackground, p.AllowBatches = false, false
	mustCreateProject(t, st, p)
	mustAddDeferred(t, st, newDeferred("resp_1", store.DeferredResponse, "p1", t0, 100))

	// Roll back to just before 00005 (later migrations first).
	for range len(migrationFiles) - 4 {
		if err := st.Migrate(ctx, "down", nil); err != nil {
			t.Fatal(err)
		}
	}
	checkStates(t, migrationStatus(t, st), 4)
	if _, err := st.GetDeferred(ctx, "resp_1"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDeferred after rolling back 00005: err = %v, want a missing-table error", err)
	}
	if _, err := st.DueDeferred(ctx, t0.Add(time.Hour), 10); err == nil {
		t.Error("DueDeferred after rolling back 00005: want a missing-table error")
	}

	if err := st.Migrate(ctx, "up", nil); err != nil {
		t.Fatal(err)
	}
	checkStates(t, migrationStatus(t, st), len(migrationFiles))
	got, err := st.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p.AllowBackground, p.AllowBatches = true, true
	checkProject(t, "project from before 00005", got, p)
	_, err = st.GetDeferred(ctx, "resp_1")
	checkErr(t, "GetDeferred after down and up of 00005", err, store.ErrNotFound)
	checkOutstanding(t, st, "p1", time.Time{}, 0)
	mustAddDeferred(t, st, newDeferred("resp_1", store.DeferredResponse, "p1", t0, 100))
	checkOutstanding(t, st, "p1", time.Time{}, 100)
}

func testDeferred(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)

	full := newDeferred("resp_full", store.DeferredResponse, "p1", t0, 12_345)
	full.Checks = 2
	full.NextCheckAt = t0.Add(-time.Hour) // as given, even before CreatedAt
	batch := newDeferred("batch_1", store.DeferredBatch, "p2", t0, 0)
	batch.Model, batch.Ticket = "", nil // nothing reserved, no model named
	settled := newDeferred("resp_settled", store.DeferredResponse, "p1", t0, 7)
	settled.SettledAt, settled.CostMicroUSD = ptr(t0.Add(time.Hour)), 5
	mustAddDeferred(t, st, full, batch, settled)
	checkDeferred(t, "GetDeferred", mustGetDeferred(t, st, "resp_full"), full)
	checkDeferred(t, "GetDeferred without model or ticket", mustGetDeferred(t, st, "batch_1"), batch)
	checkDeferred(t, "GetDeferred of a charge added settled", mustGetDeferred(t, st, "resp_settled"), settled)

	// An empty ticket is no ticket.
	empty := newDeferred("resp_empty", store.DeferredResponse, "p1", t0, 1)
	empty.Ticket = []byte{}
	mustAddDeferred(t, st, empty)
	empty.Ticket = nil
	checkDeferred(t, "empty ticket", mustGetDeferred(t, st, "resp_empty"), empty)

	// Nanoseconds and a zone go in; microseconds in UTC come back.
	zone := time.FixedZone("UTC-3", -3*3600)
	precise := newDeferred("resp_precise", store.DeferredResponse, "p1", time.Date(2031, 1, 2, 3, 4, 5, 999_999_999, zone), 1)
	precise.NextCheckAt = precise.CreatedAt.Add(time.Nanosecond)
	mustAddDeferred(t, st, precise)
	want := precise
	want.CreatedAt = precise.CreatedAt.Truncate(time.Microsecond).UTC()
	want.NextCheckAt = want.CreatedAt.Add(time.Microsecond)
	checkDeferred(t, "times", mustGetDeferred(t, st, "resp_precise"), want)

	// Zero times: created now, due at once.
	before := time.Now()
	mustAddDeferred(t, st, store.Deferred{ID: "resp_now", Kind: store.DeferredResponse, ProjectID: "p1", TokenID: "t1"})
	now := mustGetDeferred(t, st, "resp_now")
	checkUpdatedSince(t, "CreatedAt defaulted", now.CreatedAt, before)
	if !now.NextCheckAt.Equal(now.CreatedAt) {
		t.Errorf("defaulted NextCheckAt %s != CreatedAt %s", fmtTime(now.NextCheckAt), fmtTime(now.CreatedAt))
	}

	// An id is added once, settled or not; the stored charge stays as it was.
	dup := newDeferred("resp_full", store.DeferredBatch, "p9", t0.Add(time.Hour), 1)
	checkErr(t, "AddDeferred duplicate id", st.AddDeferred(ctx, dup), store.ErrConflict)
	dup.ID = "resp_settled"
	checkErr(t, "AddDeferred duplicate of a settled id", st.AddDeferred(ctx, dup), store.ErrConflict)
	checkDeferred(t, "after a duplicate", mustGetDeferred(t, st, "resp_full"), full)
	checkDeferred(t, "after a duplicate of a settled one", mustGetDeferred(t, st, "resp_settled"), settled)

	_, err := st.GetDeferred(ctx, "resp_nope")
	checkErr(t, "GetDeferred unknown", err, store.ErrNotFound)

	// Like usage, a charge needs no project row and outlives its project.
	mustCreateProject(t, st, newProject("p2", t0))
	if err := st.DeleteProject(ctx, "p2"); err != nil {
		t.Fatal(err)
	}
	checkDeferred(t, "charge of a deleted project", mustGetDeferred(t, st, "batch_1"), batch)
}

func testDeferredInvalid(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	for _, tc := range []struct {
		name   string
		change func(*store.Deferred)
	}{
		{"no id", func(d *store.Deferred) { d.ID = "" }},
		{"no kind", func(d *store.Deferred) { d.Kind = "" }},
		{"unknown kind", func(d *store.Deferred) { d.Kind = "Response" }},
		{"no project", func(d *store.Deferred) { d.ProjectID = "" }},
		{"no token", func(d *store.Deferred) { d.TokenID = "" }},
		{"negative reservation", func(d *store.Deferred) { d.ReservedMicroUSD = -1 }},
		{"negative cost", func(d *store.Deferred) { d.CostMicroUSD = -1 }},
		{"negative checks", func(d *store.Deferred) { d.Checks = -1 }},
		{"ticket not UTF-8", func(d *store.Deferred) { d.Ticket = []byte{'{', 0xff, '}'} }},
		{"ticket with NUL", func(d *store.Deferred) { d.Ticket = []byte("{\x00}") }},
	} {
		d := newDeferred("resp_bad", store.DeferredResponse, "p1", t0, 10)
		tc.change(&d)
		err := st.AddDeferred(ctx, d)
		if err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("AddDeferred with %s: err = %v, want a validation error", tc.name, err)
		}
		if _, err := st.GetDeferred(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after AddDeferred with %s: GetDeferred err = %v, want ErrNotFound (nothing stored)", tc.name, err)
		}
	}
	checkOutstanding(t, st, "p1", time.Time{}, 0)

	for _, limit := range []int{0, -1} {
		if _, err := st.DueDeferred(ctx, t0, limit); err == nil {
			t.Errorf("DueDeferred with limit %d: want an error", limit)
		}
	}
}

func testDueDeferred(t *testing.T, s suite) {
	st := s.migrated(t)
	now := t0.Add(time.Hour)
	due := func(id, projectID string, at time.Time) store.Deferred {
		d := newDeferred(id, store.DeferredResponse, projectID, t0, 10)
		d.NextCheckAt = at
		return d
	}
	// Added out of order; x1 and x2 tie on time and go in id order.
	mustAddDeferred(t, st,
		due("a", "p1", now.Add(-30*time.Minute)),
		due("c", "p1", now), // due at exactly now
		due("d", "p1", now.Add(time.Microsecond)),
		due("x2", "p1", now.Add(-time.Hour)),
		due("b", "p1", now.Add(-50*time.Minute)),
		due("e", "p1", now.Add(-40*time.Minute)), // settled below
		due("f", "p1", now.Add(-10*time.Minute)),
		due("g", "p2", now.Add(-20*time.Minute)), // any project
		due("x1", "p1", now.Add(-time.Hour)),
	)
	if !mustSettle(t, st, "e", now, 10) {
		t.Fatal("settling e: false")
	}

	got := checkDue(t, st, now, 100, "x1", "x2", "b", "a", "g", "f", "c")
	if len(got) > 2 {
		checkDeferred(t, "due charge", got[2], due("b", "p1", now.Add(-50*time.Minute)))
	}
	checkDue(t, st, now, 7, "x1", "x2", "b", "a", "g", "f", "c")
	checkDue(t, st, now, 3, "x1", "x2", "b")
	checkDue(t, st, now, 1, "x1")
	checkDue(t, st, now.Add(time.Microsecond), 100, "x1", "x2", "b", "a", "g", "f", "c", "d")
	checkDue(t, st, now.Add(-45*time.Minute), 100, "x1", "x2", "b")
	checkDue(t, st, now.Add(-2*time.Hour), 100)
}

func testPostponeDeferred(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	want := newDeferred("resp_1", store.DeferredResponse, "p1", t0, 500)
	other := newDeferred("resp_2", store.DeferredResponse, "p1", t0, 1)
	mustAddDeferred(t, st, want, other)

	postpone := func(what string, next time.Time) {
		t.Helper()
		if err := st.PostponeDeferred(ctx, "resp_1", next); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		want.NextCheckAt = next.Truncate(time.Microsecond).UTC()
		want.Checks++
		checkDeferred(t, what, mustGetDeferred(t, st, "resp_1"), want)
	}
	postpone("first postponement", t0.Add(5*time.Minute))
	postpone("second postponement", t0.Add(15*time.Minute+time.Nanosecond))
	checkDue(t, st, t0.Add(10*time.Minute), 10, "resp_2")
	checkDue(t, st, t0.Add(15*time.Minute+time.Microsecond), 10, "resp_2", "resp_1")
	postpone("postponed to an earlier time", t0)
	checkDeferred(t, "another charge", mustGetDeferred(t, st, "resp_2"), other)

	// Once settled, a postponement (from a replica that polled meanwhile)
	// changes nothing and is no error.
	at := t0.Add(time.Hour)
	if !mustSettle(t, st, "resp_1", at, 450) {
		t.Fatal("settling resp_1: false")
	}
	want.SettledAt, want.CostMicroUSD = &at, 450
	if err := st.PostponeDeferred(ctx, "resp_1", t0.Add(2*time.Hour)); err != nil {
		t.Errorf("PostponeDeferred of a settled charge: %v", err)
	}
	checkDeferred(t, "settled, then postponed", mustGetDeferred(t, st, "resp_1"), want)

	checkErr(t, "PostponeDeferred unknown", st.PostponeDeferred(ctx, "resp_nope", t0), store.ErrNotFound)
}

func testSettleDeferred(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	rec := store.UsageRecord{
		ProjectID: "p1", Day: "2025-03-04", Model: "gpt-4o", PriceVersion: "v1",
		Requests: 1, PromptTokens: 1000, CompletionTokens: 200, CachedTokens: 100, ReasoningTokens: 50, CostMicroUSD: 4321,
	}
	want := newDeferred("resp_1", store.DeferredResponse, "p1", t0, 10_000)
	mustAddDeferred(t, st, want)

	// Invalid settlements write nothing.
	if _, err := st.SettleDeferred(ctx, "resp_1", t0, -1, []store.UsageRecord{rec}); err == nil {
		t.Error("SettleDeferred with a negative cost: want an error")
	}
	bad := rec
	bad.Day = "2025-3-4"
	if _, err := st.SettleDeferred(ctx, "resp_1", t0, 4321, []store.UsageRecord{rec, bad}); err == nil {
		t.Error("SettleDeferred with an invalid usage record: want an error")
	}
	checkDeferred(t, "after invalid settlements", mustGetDeferred(t, st, "resp_1"), want)
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", nil)

	// The first settlement marks the charge and adds its usage.
	at := t0.Add(90*time.Minute + time.Nanosecond)
	if !mustSettle(t, st, "resp_1", at, 4321, rec) {
		t.Fatal("first SettleDeferred = false, want true")
	}
	want.SettledAt, want.CostMicroUSD = ptr(at.Truncate(time.Microsecond)), 4321
	checkDeferred(t, "settled", mustGetDeferred(t, st, "resp_1"), want)
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", []store.UsageRecord{rec})
	checkCost(t, st, "p1", "2025-03-01", "2025-03-31", 4321)
	checkDue(t, st, t0.Add(24*time.Hour), 10)

	// Any later one, whatever it carries, changes and adds nothing.
	other := rec
	other.Day, other.CostMicroUSD = "2025-03-05", 99
	if mustSettle(t, st, "resp_1", at.Add(time.Hour), 99, rec, other) {
		t.Error("second SettleDeferred = true, want false")
	}
	checkDeferred(t, "settled twice", mustGetDeferred(t, st, "resp_1"), want)
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", []store.UsageRecord{rec})

	ok, err := st.SettleDeferred(ctx, "resp_nope", at, 99, []store.UsageRecord{other})
	checkErr(t, "SettleDeferred unknown", err, store.ErrNotFound)
	if ok {
		t.Error("SettleDeferred unknown = true")
	}
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", []store.UsageRecord{rec})

	// Without usage (a batch cancelled before it ran), at zero meaning now.
	cancelled := newDeferred("batch_1", store.DeferredBatch, "p1", t0, 800)
	mustAddDeferred(t, st, cancelled)
	before := time.Now()
	if !mustSettle(t, st, "batch_1", time.Time{}, 0) {
		t.Fatal("SettleDeferred without usage = false")
	}
	got := mustGetDeferred(t, st, "batch_1")
	if got.SettledAt == nil {
		t.Fatal("batch_1 not settled")
	}
	checkUpdatedSince(t, "SettledAt defaulted", *got.SettledAt, before)
	cancelled.SettledAt = got.SettledAt
	checkDeferred(t, "settled without usage", got, cancelled)
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", []store.UsageRecord{rec})

	// A batch's usage spans models and days; records with one key are
	// summed, and add to rows already there.
	mustAddDeferred(t, st, newDeferred("batch_2", store.DeferredBatch, "p1", t0, 20_000))
	mini := store.UsageRecord{ProjectID: "p1", Day: "2025-03-05", Model: "gpt-4o-mini", PriceVersion: "v1", Requests: 3, PromptTokens: 30, CostMicroUSD: 6}
	if !mustSettle(t, st, "batch_2", at, 4321+12, rec, mini, mini) {
		t.Fatal("SettleDeferred of batch_2 = false")
	}
	sum := rec
	sum.Requests, sum.PromptTokens, sum.CompletionTokens = 2, 2000, 400
	sum.CachedTokens, sum.ReasoningTokens, sum.CostMicroUSD = 200, 100, 8642
	mini.Requests, mini.PromptTokens, mini.CostMicroUSD = 6, 60, 12
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", []store.UsageRecord{sum, mini})
	checkCost(t, st, "p1", "2025-03-01", "2025-03-31", 8642+12)
}

// testSettleDeferredConcurrent has replicas settle the same charges at once,
// in opposite orders, while other usage is flushed into the same roll-up
// row: each charge is settled by exactly one of them, with that one's cost,
// and its usage is added exactly once.
func testSettleDeferredConcurrent(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	const workers, charges = 8, 5
	var ids []string
	for i := range charges {
		id := fmt.Sprintf("resp_%d", i)
		ids = append(ids, id)
		mustAddDeferred(t, st, newDeferred(id, store.DeferredResponse, "p1", t0, 1000))
	}
	rec := store.UsageRecord{ProjectID: "p1", Day: "2025-03-04", Model: "gpt-4o", PriceVersion: "v1",
		Requests: 1, PromptTokens: 100, CompletionTokens: 10, CostMicroUSD: 777}
	plain := store.UsageRecord{ProjectID: "p1", Day: "2025-03-04", Model: "gpt-4o", PriceVersion: "v1", Requests: 1, CostMicroUSD: 1}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners = map[string][]int{} // charge id → workers that got true
	)
	errs := make(chan error, 2*workers*charges)
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			<-start
			order := slices.Clone(ids)
			if w%2 == 1 {
				slices.Reverse(order)
			}
			for _, id := range order {
				ok, err := st.SettleDeferred(ctx, id, t0.Add(time.Duration(w)*time.Second), int64(1000+w), []store.UsageRecord{rec})
				if err != nil {
					errs <- err
					continue
				}
				if ok {
					mu.Lock()
					winners[id] = append(winners[id], w)
					mu.Unlock()
				}
				if err := st.AddUsage(ctx, []store.UsageRecord{plain}); err != nil {
					errs <- err
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		ws := winners[id]
		if len(ws) != 1 {
			t.Errorf("charge %s settled by workers %v, want exactly one", id, ws)
			continue
		}
		d := mustGetDeferred(t, st, id)
		w := ws[0]
		if d.CostMicroUSD != int64(1000+w) || d.SettledAt == nil || !d.SettledAt.Equal(t0.Add(time.Duration(w)*time.Second)) {
			t.Errorf("charge %s: cost %d, settled at %s; want the winner's (worker %d) %d and %s",
				id, d.CostMicroUSD, fmtTimePtr(d.SettledAt), w, 1000+w, fmtTime(t0.Add(time.Duration(w)*time.Second)))
		}
	}
	// charges settlements of rec, plus workers*charges plain flushes.
	checkUsage(t, st, "p1", "2025-03-04", "2025-03-04", []store.UsageRecord{{
		ProjectID: "p1", Day: "2025-03-04", Model: "gpt-4o", PriceVersion: "v1",
		Requests:         charges + workers*charges,
		PromptTokens:     100 * charges,
		CompletionTokens: 10 * charges,
		CostMicroUSD:     777*charges + workers*charges,
	}})
	checkOutstanding(t, st, "p1", time.Time{}, 0)
	checkDue(t, st, t0.Add(24*time.Hour), 10)
}

func testOutstandingMicroUSD(t *testing.T, s suite) {
	st := s.migrated(t)
	checkOutstanding(t, st, "p1", time.Time{}, 0)
	mustAddDeferred(t, st,
		newDeferred("a", store.DeferredResponse, "p1", t0, 100),
		newDeferred("b", store.DeferredBatch, "p1", t0.Add(time.Hour), 20),
		newDeferred("c", store.DeferredResponse, "p1", t0.Add(-time.Microsecond), 4000), // before t0
		newDeferred("d", store.DeferredResponse, "p1", t0.Add(2*time.Hour), 300),        // settled below
		newDeferred("e", store.DeferredResponse, "p1", t0, 0),                           // nothing reserved
		newDeferred("f", store.DeferredBatch, "p2", t0.Add(time.Hour), 50_000),
		newDeferred("big1", store.DeferredBatch, "p3", t0, 1<<52),
		newDeferred("big2", store.DeferredBatch, "p3", t0, 1<<52),
	)
	if !mustSettle(t, st, "d", t0.Add(3*time.Hour), 280) {
		t.Fatal("settling d: false")
	}
	for _, tc := range []struct {
		project string
		since   time.Time
		want    int64
	}{
		{"p1", time.Time{}, 4120},
		{"p1", t0.Add(-time.Microsecond), 4120},
		{"p1", t0, 120},
		{"p1", t0.Add(time.Hour), 20},
		{"p1", t0.Add(time.Hour + time.Microsecond), 0},
		{"p2", t0, 50_000},
		{"p3", t0, 1 << 53},
		{"nope", time.Time{}, 0},
	} {
		checkOutstanding(t, st, tc.project, tc.since, tc.want)
	}
	if !mustSettle(t, st, "b", t0.Add(3*time.Hour), 25) {
		t.Fatal("settling b: false")
	}
	checkOutstanding(t, st, "p1", t0, 100)
	checkOutstanding(t, st, "p2", t0, 50_000)
}
