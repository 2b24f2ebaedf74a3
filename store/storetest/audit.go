package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

func mustAddAudit(t *testing.T, st *store.Store, events ...store.AuditEvent) {
	t.Helper()
	if err := st.AddAudit(t.Context(), events); err != nil {
		t.Fatal(err)
	}
}

// auditEvent returns a complete event; every field is derived from id, so
// a mismatch shows which event it came from.
func auditEvent(id string, at time.Time, action, projectID string) store.AuditEvent {
	return store.AuditEvent{
		ID:            id,
		Time:          at,
		Action:        action,
		Actor:         "management:0a1b2c3d",
		ProjectID:     projectID,
		TargetType:    store.AuditTargetProject,
		TargetID:      "target-" + id,
		RequestID:     "req-" + id,
		ClientAddress: "192.0.2.7",
		Outcome:       store.AuditOutcomeSuccess,
		Detail:        "detail of " + id,
	}
}

func auditString(e store.AuditEvent) string {
	return fmt.Sprintf("{ID:%s Time:%s Action:%s Actor:%s ProjectID:%s TargetType:%s TargetID:%s "+
		"RequestID:%s ClientAddress:%s Outcome:%s Detail:%q}",
		e.ID, fmtTime(e.Time), e.Action, e.Actor, e.ProjectID, e.TargetType, e.TargetID,
		e.RequestID, e.ClientAddress, e.Outcome, e.Detail)
}

func auditStrings(events []store.AuditEvent) []string {
	out := []string{}
	for _, e := range events {
		out = append(out, auditString(e))
	}
	return out
}

// newestFirst sorts events the way ListAudit returns them: time, then id,
// both descending.
func newestFirst(events []store.AuditEvent) []store.AuditEvent {
	return slices.SortedFunc(slices.Values(events), func(a, b store.AuditEvent) int {
		return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(b.ID, a.ID))
	})
}

// stored is how the store returns an event: the time in UTC, to the microsecond.
func stored(e store.AuditEvent) store.AuditEvent {
	e.Time = e.Time.Truncate(time.Microsecond).UTC()
	return e
}

// checkAudit checks one ListAudit page, order included, and its next cursor
// ("" or not).
func checkAudit(t *testing.T, st *store.Store, q store.AuditQuery, want []store.AuditEvent, wantNext bool) string {
	t.Helper()
	got, next, err := st.ListAudit(t.Context(), q)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", q, err)
	}
	if got == nil {
		t.Errorf("ListAudit(%+v) = nil, want a non-nil slice", q)
	}
	if g, w := auditStrings(got), auditStrings(want); !slices.Equal(g, w) {
		t.Errorf("ListAudit(%+v):\n got %s\nwant %s", q, strings.Join(g, "\n     "), strings.Join(w, "\n     "))
	}
	if (next != "") != wantNext {
		t.Errorf("ListAudit(%+v): next cursor %q, want one: %t", q, next, wantNext)
	}
	return next
}

// walkAudit lists every page of q with the given page size, calling between
// (if set) after each page, and returns the ids in the order seen.
func walkAudit(t *testing.T, st *store.Store, q store.AuditQuery, between func(page int)) []string {
	t.Helper()
	var ids []string
	for page := 0; ; page++ {
		events, next, err := st.ListAudit(t.Context(), q)
		if err != nil {
			t.Fatalf("ListAudit page %d: %v", page, err)
		}
		if len(events) > max(q.Limit, 1) {
			t.Fatalf("page %d has %d events, limit %d", page, len(events), q.Limit)
		}
		for _, e := range events {
			ids = append(ids, e.ID)
		}
		if next == "" {
			return ids
		}
		if len(events) == 0 {
			t.Fatalf("page %d is empty yet has a next cursor", page)
		}
		if page > 1000 {
			t.Fatal("the walk does not end")
		}
		q.Cursor = next
		if between != nil {
			between(page)
		}
	}
}

func ids(events []store.AuditEvent) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

// testMigrateAudit rolls 00003 back and forth: projects survive, the audit
// log goes with it and comes back empty.
func testMigrateAudit(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	mustAddAudit(t, st, auditEvent("a1", t0, store.AuditProjectCreate, "p1"))

	// Roll back to just before 00003 (later migrations first). Projects are
	// then read only after migrating up again: the code reads the newest
	// schema.
	for range len(migrationFiles) - 2 {
		if err := st.Migrate(ctx, "down", nil); err != nil {
			t.Fatal(err)
		}
	}
	checkStates(t, migrationStatus(t, st), 2)
	if _, _, err := st.ListAudit(ctx, store.AuditQuery{}); err == nil {
		t.Error("ListAudit after rolling back 00003: want a missing-table error")
	}
	if err := st.Migrate(ctx, "up", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetProject(ctx, "p1"); err != nil {
		t.Errorf("project after rolling 00003 back and forth: %v", err)
	}
	checkAudit(t, st, store.AuditQuery{}, nil, false)
	mustAddAudit(t, st, auditEvent("a1", t0, store.AuditProjectCreate, "p1"))
	checkAudit(t, st, store.AuditQuery{}, []store.AuditEvent{auditEvent("a1", t0, store.AuditProjectCreate, "p1")}, false)
}

func testAudit(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)

	if err := st.AddAudit(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	checkAudit(t, st, store.AuditQuery{}, nil, false)

	// Times in another zone and below the microsecond come back in UTC,
	// truncated; an event without a project keeps ProjectID "".
	berlin := time.FixedZone("CET", 3600)
	denial := auditEvent("a2", t0.Add(time.Second+789*time.Nanosecond).In(berlin), store.AuditAuthUnknownToken, "")
	denial.Actor, denial.TargetType, denial.TargetID, denial.Outcome = "", store.AuditTargetToken, "", store.AuditOutcomeDenied
	create := auditEvent("a1", t0, store.AuditProjectCreate, "p1")
	revoke := auditEvent("a3", t0.Add(2*time.Second), store.AuditTokenRevoke, "p1")
	revoke.Detail = `quotes " and unicode … survive`
	mustAddAudit(t, st, revoke, create, denial)
	all := []store.AuditEvent{stored(revoke), stored(denial), stored(create)}
	checkAudit(t, st, store.AuditQuery{}, all, false)

	// Adding an id again is not an error and changes nothing, also within
	// one batch: a writer may retry a batch it is unsure about.
	changed := create
	changed.Detail = "rewritten"
	fresh := auditEvent("a4", t0.Add(3*time.Second), store.AuditTokenCreate, "p2")
	mustAddAudit(t, st, changed, fresh, fresh)
	all = append([]store.AuditEvent{fresh}, all...)
	checkAudit(t, st, store.AuditQuery{}, all, false)

	// One event by id, exactly as listed; an unknown id is ErrNotFound.
	if got, err := st.GetAudit(ctx, "a2"); err != nil || got != stored(denial) {
		t.Errorf("GetAudit(a2) = %+v, %v; want %+v", got, err, stored(denial))
	}
	if _, err := st.GetAudit(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAudit(nope): %v, want ErrNotFound", err)
	}

	// A zero time means now.
	before := time.Now()
	mustAddAudit(t, st, auditEvent("a5", time.Time{}, store.AuditProjectUpdate, "p1"))
	got, _, err := st.ListAudit(ctx, store.AuditQuery{Action: store.AuditProjectUpdate})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("events with a zero time: %v", auditStrings(got))
	}
	checkUpdatedSince(t, "zero Time", got[0].Time, before)
	if got[0].Time.Location() != time.UTC {
		t.Errorf("time in %s, want UTC", got[0].Time.Location())
	}

	// An empty outcome follows the action.
	mustAddAudit(t, st,
		store.AuditEvent{ID: "o1", Time: t0, Action: store.AuditAuthExpiredToken},
		store.AuditEvent{ID: "o2", Time: t0, Action: store.AuditTokenCreate})
	got, _, err = st.ListAudit(ctx, store.AuditQuery{From: t0, To: t0.Add(time.Microsecond)})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]string{}
	for _, e := range got {
		outcomes[e.ID] = e.Outcome
	}
	if outcomes["o1"] != store.AuditOutcomeDenied || outcomes["o2"] != store.AuditOutcomeSuccess {
		t.Errorf("defaulted outcomes = %v, want o1 denied, o2 success", outcomes)
	}

	// The audit log outlives the project it is about.
	mustCreateProject(t, st, newProject("p1", t0))
	if err := st.DeleteProject(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	checkAudit(t, st, store.AuditQuery{ProjectID: "p1", To: t0.Add(time.Hour)}, []store.AuditEvent{stored(revoke), stored(create)}, false)
}

func testAuditInvalid(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	good := auditEvent("good", t0, store.AuditProjectCreate, "p1")
	for _, tc := range []struct {
		name   string
		change func(*store.AuditEvent)
	}{
		{"no id", func(e *store.AuditEvent) { e.ID = "" }},
		{"no action", func(e *store.AuditEvent) { e.Action = "" }},
	} {
		bad := auditEvent("bad", t0, store.AuditProjectDelete, "p1")
		tc.change(&bad)
		// One bad event refuses the whole batch.
		if err := st.AddAudit(ctx, []store.AuditEvent{good, bad}); err == nil {
			t.Errorf("AddAudit with %s: want an error", tc.name)
		}
	}
	checkAudit(t, st, store.AuditQuery{}, nil, false)

	for _, limit := range []int{-1, store.MaxAuditLimit + 1} {
		if _, _, err := st.ListAudit(ctx, store.AuditQuery{Limit: limit}); err == nil {
			t.Errorf("ListAudit with limit %d: want an error", limit)
		}
	}
	for _, c := range invalidCursors() {
		_, _, err := st.ListAudit(ctx, store.AuditQuery{Cursor: c})
		if !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("ListAudit with cursor %q: err = %v, want ErrInvalidCursor", c, err)
		}
	}
}

// testAuditPaging walks the log page by page, with events sharing a time
// (ordered by id) and events added between the pages.
func testAuditPaging(t *testing.T, s suite) {
	st := s.migrated(t)
	var events []store.AuditEvent
	for i := range 25 {
		// Groups of three share a time, so pages end inside a tie.
		events = append(events, auditEvent(fmt.Sprintf("e%02d", i), t0.Add(time.Duration(i/3)*time.Second), store.AuditTokenCreate, "p1"))
	}
	mustAddAudit(t, st, events...)
	want := ids(newestFirst(events))

	// The default page holds everything.
	checkAudit(t, st, store.AuditQuery{}, newestFirst(events), false)
	for _, limit := range []int{1, 2, 3, 4, 7, 24, 25, 26, store.MaxAuditLimit} {
		got := walkAudit(t, st, store.AuditQuery{Limit: limit}, nil)
		if !slices.Equal(got, want) {
			t.Errorf("walk with limit %d:\n got %v\nwant %v", limit, got, want)
		}
	}
	// A page that ends exactly at the last event has no next cursor.
	checkAudit(t, st, store.AuditQuery{Limit: 25}, newestFirst(events), false)
	next := checkAudit(t, st, store.AuditQuery{Limit: 24}, newestFirst(events)[:24], true)
	checkAudit(t, st, store.AuditQuery{Limit: 24, Cursor: next}, newestFirst(events)[24:], false)
	// A cursor stays valid: reading the same page twice gives the same page.
	checkAudit(t, st, store.AuditQuery{Limit: 24, Cursor: next}, newestFirst(events)[24:], false)

	// Events added between pages: newer ones (and ones tied with the
	// cursor's time whose id sorts before it) are not in the walk; older
	// ones are, once. Every event that was there at the start is seen
	// exactly once, in order.
	var added, older []string
	n := 0
	got := walkAudit(t, st, store.AuditQuery{Limit: 4}, func(page int) {
		newer := auditEvent(fmt.Sprintf("n%02d", n), t0.Add(time.Hour+time.Duration(n)*time.Second), store.AuditTokenUpdate, "p1")
		// The page's last event is e(21-4*page) at (21-4*page)/3 seconds;
		// "z…" sorts after "e…", so before it in the walk's order.
		tieAfter := auditEvent(fmt.Sprintf("z%02d", n), t0.Add(time.Duration((21-4*page)/3)*time.Second), store.AuditTokenUpdate, "p1")
		old := auditEvent(fmt.Sprintf("o%02d", n), t0.Add(-time.Hour-time.Duration(n)*time.Second), store.AuditTokenUpdate, "p1")
		mustAddAudit(t, st, newer, tieAfter, old)
		added = append(added, newer.ID, tieAfter.ID)
		older = append(older, old.ID)
		n++
	})
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("walk saw %s %d times", id, c)
		}
	}
	var original []string
	for _, id := range got {
		if strings.HasPrefix(id, "e") {
			original = append(original, id)
		}
	}
	if !slices.Equal(original, want) {
		t.Errorf("walk with inserts saw the original events\n %v\nwant %v", original, want)
	}
	for _, id := range added {
		if seen[id] != 0 {
			t.Errorf("walk saw %s, added after its position was passed", id)
		}
	}
	for _, id := range older {
		if seen[id] != 1 {
			t.Errorf("walk saw %s (older than every page) %d times, want once", id, seen[id])
		}
	}
}

// testAuditPagingConcurrent walks the log while other goroutines append to
// it: no event is seen twice, and every event stored before the walk is
// seen.
func testAuditPagingConcurrent(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	base := time.Now().Add(-time.Hour)
	var before []store.AuditEvent
	for i := range 60 {
		before = append(before, auditEvent(fmt.Sprintf("b%03d", i), base.Add(time.Duration(i)*time.Millisecond), store.AuditAuthRevokedToken, ""))
	}
	mustAddAudit(t, st, before...)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Zero times: stamped now, newer than anything the walk started with.
				e := auditEvent(fmt.Sprintf("c%d-%04d", w, i), time.Time{}, store.AuditAuthUnknownToken, "")
				if err := st.AddAudit(ctx, []store.AuditEvent{e}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	got := walkAudit(t, st, store.AuditQuery{Limit: 7}, func(int) { time.Sleep(time.Millisecond) })
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			t.Errorf("walk saw %s twice", id)
		}
	}
	for _, e := range before {
		if seen[e.ID] != 1 {
			t.Errorf("walk saw %s %d times, want once", e.ID, seen[e.ID])
		}
	}
}

func testAuditFilters(t *testing.T, s suite) {
	st := s.migrated(t)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	events := []store.AuditEvent{
		auditEvent("f0", at(0), store.AuditProjectCreate, "p1"),
		auditEvent("f1", at(1), store.AuditTokenCreate, "p1"),
		auditEvent("f2", at(2), store.AuditProjectCreate, "p2"),
		auditEvent("f3", at(3), store.AuditAuthUnknownToken, ""),
		auditEvent("f4", at(4), store.AuditTokenCreate, "p1"),
		auditEvent("f5", at(5), store.AuditTokenRevoke, "p2"),
		auditEvent("f6", at(6), store.AuditTokenCreate, "p2"),
		auditEvent("f7", at(7), store.AuditProjectDelete, "p1"),
	}
	events[4].Actor, events[5].Actor = "admin-ui", "admin-ui"
	// f3 and f5 are about token tok1 (a denial and a revocation), f6 about
	// tok2; f1's target id is tok1 but its target is a project.
	events[3].TargetType, events[3].TargetID = store.AuditTargetToken, "tok1"
	events[5].TargetType, events[5].TargetID = store.AuditTargetToken, "tok1"
	events[6].TargetType, events[6].TargetID = store.AuditTargetToken, "tok2"
	events[1].TargetID = "tok1"
	events[3].Outcome = store.AuditOutcomeDenied
	events[3].ClientAddress, events[7].ClientAddress = "2001:db8::1", "2001:db8::1"
	mustAddAudit(t, st, events...)
	pick := func(idx ...int) []store.AuditEvent {
		var out []store.AuditEvent
		for _, i := range idx {
			out = append(out, stored(events[i]))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    store.AuditQuery
		want []store.AuditEvent
	}{
		{"all", store.AuditQuery{}, pick(7, 6, 5, 4, 3, 2, 1, 0)},
		{"project", store.AuditQuery{ProjectID: "p1"}, pick(7, 4, 1, 0)},
		{"unknown project", store.AuditQuery{ProjectID: "p9"}, nil},
		{"action", store.AuditQuery{Action: store.AuditTokenCreate}, pick(6, 4, 1)},
		{"project and action", store.AuditQuery{ProjectID: "p2", Action: store.AuditTokenCreate}, pick(6)},
		{"actor", store.AuditQuery{Actor: "admin-ui"}, pick(5, 4)},
		{"actor and action", store.AuditQuery{Actor: "admin-ui", Action: store.AuditTokenCreate}, pick(4)},
		{"unknown actor", store.AuditQuery{Actor: "admin"}, nil},
		{"from is inclusive", store.AuditQuery{From: at(5)}, pick(7, 6, 5)},
		{"to is exclusive", store.AuditQuery{To: at(2)}, pick(1, 0)},
		{"from and to", store.AuditQuery{From: at(2), To: at(5)}, pick(4, 3, 2)},
		{"from and to in another zone", store.AuditQuery{From: at(2).In(time.FixedZone("X", -7200)), To: at(5).In(time.FixedZone("Y", 3600))}, pick(4, 3, 2)},
		{"between events", store.AuditQuery{From: at(2).Add(time.Microsecond), To: at(3)}, nil},
		{"from equals to", store.AuditQuery{From: at(3), To: at(3)}, nil},
		{"from after to", store.AuditQuery{From: at(5), To: at(2)}, nil},
		{"everything", store.AuditQuery{ProjectID: "p1", Action: store.AuditTokenCreate, From: at(1), To: at(4)}, pick(1)},
		{"token", store.AuditQuery{TokenID: "tok1"}, pick(5, 3)},
		{"token and action", store.AuditQuery{TokenID: "tok1", Action: store.AuditTokenRevoke}, pick(5)},
		{"unknown token", store.AuditQuery{TokenID: "tok9"}, nil},
		{"outcome denied", store.AuditQuery{Outcome: store.AuditOutcomeDenied}, pick(3)},
		{"outcome success", store.AuditQuery{Outcome: store.AuditOutcomeSuccess, From: at(5)}, pick(7, 6, 5)},
		{"client address", store.AuditQuery{ClientAddress: "2001:db8::1"}, pick(7, 3)},
		{"client address and outcome", store.AuditQuery{ClientAddress: "2001:db8::1", Outcome: store.AuditOutcomeSuccess}, pick(7)},
		{"client address and time", store.AuditQuery{ClientAddress: "192.0.2.7", From: at(4), To: at(6)}, pick(5, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkAudit(t, st, tc.q, tc.want, false)
			// Paging applies within the filter.
			q := tc.q
			q.Limit = 1
			if got, want := walkAudit(t, st, q, nil), ids(tc.want); !slices.Equal(got, want) {
				t.Errorf("walk one by one: got %v, want %v", got, want)
			}
		})
	}
}

// testAuditChain: every appended event takes the next position in the
// chain, hashed over its content and the hash before it; an event stored
// again is skipped without taking one; VerifyAudit walks it all.
func testAuditChain(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	v, err := st.VerifyAudit(ctx)
	if err != nil || v != (store.AuditVerification{}) {
		t.Fatalf("empty log: %+v, %v; want nothing checked and no break", v, err)
	}
	var events []store.AuditEvent
	for i := range 2500 {
		events = append(events, auditEvent(fmt.Sprintf("c%04d", i), t0.Add(time.Duration(i%7)*time.Second), store.AuditTokenCreate, "p1"))
	}
	events[3].ProjectID = "" // NULL in the database, "" in the hash
	mustAddAudit(t, st, events[:1000]...)
	mustAddAudit(t, st, events[900:]...) // 100 already stored: skipped
	v, err = st.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Within a batch events are appended in id order, and c0000 … c2499 sort
	// as they were made: the chain holds them in that order.
	head := ""
	for i, e := range events {
		head = store.AuditHash(head, int64(i+1), e)
	}
	if want := (store.AuditVerification{Checked: 2500, Head: head}); v != want {
		t.Errorf("VerifyAudit = %+v, want %+v", v, want)
	}
}

// testAuditChainConcurrent: appends at once (on PostgreSQL, transactions on
// several pooled connections, as replicas would run them) never fork the
// chain nor fail; every event gets its own position.
func testAuditChainConcurrent(t *testing.T, s suite) {
	st := s.migrated(t)
	const writers, batches, size = 6, 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				var batch []store.AuditEvent
				for i := range size {
					batch = append(batch, auditEvent(fmt.Sprintf("w%d-%d-%d", w, b, i), t0, store.AuditTokenRevoke, "p1"))
				}
				errs <- st.AddAudit(t.Context(), batch)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent append: %v", err)
		}
	}
	v, err := st.VerifyAudit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v.Checked != writers*batches*size || v.Broken != nil || v.Unchained != 0 {
		t.Errorf("VerifyAudit = %+v, want %d events checked and no break", v, writers*batches*size)
	}
}
