// Package storetest is the conformance suite of [store.Store]: one set of
// tests that every backend (SQLite, PostgreSQL) must pass unchanged.
package storetest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

// Run runs the suite. open must return a Store on a new, empty database
// (not migrated) and close it when its test ends; Run calls it once per
// subtest, from parallel subtests.
func Run(t *testing.T, open func(t *testing.T) *store.Store) {
	s := suite{open: open}
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s suite)
	}{
		{"Migrate", testMigrate},
		{"Project", testProject},
		{"ProjectErrors", testProjectErrors},
		{"ListProjects", testListProjects},
		{"DeleteProject", testDeleteProject},
		{"Token", testToken},
		{"TokenErrors", testTokenErrors},
		{"TokenNullableFields", testTokenNullableFields},
		{"TimePrecision", testTimePrecision},
		{"ListTokens", testListTokens},
		{"ListPages", testListPages},
		{"ListPagesInvalid", testListPagesInvalid},
		{"UpdateToken", testUpdateToken},
		{"RevokeToken", testRevokeToken},
		{"RevokeProjectTokens", testRevokeProjectTokens},
		{"AddTokenUsage", testAddTokenUsage},
		{"AddTokenUsageConcurrent", testAddTokenUsageConcurrent},
		{"MigrateLimitsUsage", testMigrateLimitsUsage},
		{"ProjectLimits", testProjectLimits},
		{"ProjectCachePOST", testProjectCachePOST},
		{"ProjectCapture", testProjectCapture},
		{"Rules", testRules},
		{"TokenLimits", testTokenLimits},
		{"Usage", testUsage},
		{"UsageInvalid", testUsageInvalid},
		{"UsageConcurrent", testUsageConcurrent},
		{"BudgetUses", testBudgetUses},
		{"MigrateAudit", testMigrateAudit},
		{"Audit", testAudit},
		{"AuditInvalid", testAuditInvalid},
		{"AuditPaging", testAuditPaging},
		{"AuditPagingConcurrent", testAuditPagingConcurrent},
		{"AuditFilters", testAuditFilters},
		{"AuditChain", testAuditChain},
		{"AuditChainConcurrent", testAuditChainConcurrent},
		{"MigrateDeferred", testMigrateDeferred},
		{"ProjectAllowFlags", testProjectAllowFlags},
		{"Deferred", testDeferred},
		{"DeferredInvalid", testDeferredInvalid},
		{"DueDeferred", testDueDeferred},
		{"PostponeDeferred", testPostponeDeferred},
		{"SettleDeferred", testSettleDeferred},
		{"SettleDeferredConcurrent", testSettleDeferredConcurrent},
		{"OutstandingMicroUSD", testOutstandingMicroUSD},
		{"LegacyToken", testLegacyToken},
		{"MigrateLegacy", testMigrateLegacy},
		{"MigrateUsageErrors", testMigrateUsageErrors},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.test(t, s)
		})
	}
}

type suite struct {
	open func(t *testing.T) *store.Store
}

// migrated returns a new store with the schema applied.
func (s suite) migrated(t *testing.T) *store.Store {
	t.Helper()
	st := s.open(t)
	if err := st.Migrate(t.Context(), "up", nil); err != nil {
		t.Fatal(err)
	}
	return st
}

// t0 has a non-zero microsecond part, so that truncation would show.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)

func newProject(id string, created time.Time) store.Project {
	return store.Project{
		ID:              id,
		Name:            "project " + id,
		KeyCiphertext:   "sealed:" + id,
		KeyID:           "k1",
		KeyHint:         "sk-a…wxyz",
		Active:          true,
		AllowBackground: true, // as the management API creates projects by default
		AllowBatches:    true,
		CreatedAt:       created,
		UpdatedAt:       created,
	}
}

func newToken(id, projectID string, created time.Time) store.Token {
	return store.Token{
		ID:        id,
		ProjectID: projectID,
		Name:      "token " + id,
		Hash:      "hash-" + id,
		Prefix:    "llmp_" + id,
		Active:    true,
		CreatedAt: created,
		UpdatedAt: created,
	}
}

func mustCreateProject(t *testing.T, st *store.Store, p store.Project) {
	t.Helper()
	if err := st.CreateProject(t.Context(), p); err != nil {
		t.Fatal(err)
	}
}

func mustCreateToken(t *testing.T, st *store.Store, tok store.Token) {
	t.Helper()
	if err := st.CreateToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
}

func mustGetToken(t *testing.T, st *store.Store, id string) store.Token {
	t.Helper()
	tok, err := st.GetToken(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func ptr[T any](v T) *T { return &v }

// fmtTime shows a time exactly, with its location.
func fmtTime(t time.Time) string {
	return t.Format(time.RFC3339Nano) + "[" + t.Location().String() + "]"
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return fmtTime(*t)
}

func fmtInt64Ptr(p *int64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// projectString and tokenString render every field, pointers dereferenced
// and times exact, so that comparing them compares values and a mismatch
// prints readably.
func projectString(p store.Project) string {
	return fmt.Sprintf("{ID:%s Name:%s KeyCiphertext:%s KeyID:%s KeyHint:%s Active:%t Limits:%s "+
		"MonthlyBudgetMicroUSD:%s CachePOST:%t AllowBackground:%t AllowBatches:%t Capture:%+v Rules:%s CreatedAt:%s UpdatedAt:%s}",
		p.ID, p.Name, p.KeyCiphertext, p.KeyID, p.KeyHint, p.Active, limitsString(p.Limits),
		fmtInt64Ptr(p.MonthlyBudgetMicroUSD), p.CachePOST, p.AllowBackground, p.AllowBatches, p.Capture, rulesString(p.Rules),
		fmtTime(p.CreatedAt), fmtTime(p.UpdatedAt))
}

func tokenString(t store.Token) string {
	return fmt.Sprintf("{ID:%s ProjectID:%s Name:%s Hash:%s Prefix:%s Active:%t ExpiresAt:%s MaxRequests:%s "+
		"RequestCount:%d CacheHitCount:%d LastUsedAt:%s RevokedAt:%s Limits:%s CreatedAt:%s UpdatedAt:%s Legacy:%t Rules:%s}",
		t.ID, t.ProjectID, t.Name, t.Hash, t.Prefix, t.Active, fmtTimePtr(t.ExpiresAt), fmtInt64Ptr(t.MaxRequests),
		t.RequestCount, t.CacheHitCount, fmtTimePtr(t.LastUsedAt), fmtTimePtr(t.RevokedAt), limitsString(t.Limits),
		fmtTime(t.CreatedAt), fmtTime(t.UpdatedAt), t.Legacy, rulesString(t.Rules))
}

// rulesString renders rules as their JSON, which is what the store keeps.
func rulesString(r policy.Rules) string {
	b, err := json.Marshal(r)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func limitsString(l store.Limits) string {
	return fmt.Sprintf("{RequestsPerMinute:%s TokensPerMinute:%s MaxConcurrent:%s}",
		fmtInt64Ptr(l.RequestsPerMinute), fmtInt64Ptr(l.TokensPerMinute), fmtInt64Ptr(l.MaxConcurrent))
}

func checkProject(t *testing.T, what string, got, want store.Project) {
	t.Helper()
	if g, w := projectString(got), projectString(want); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func checkToken(t *testing.T, what string, got, want store.Token) {
	t.Helper()
	if g, w := tokenString(got), tokenString(want); g != w {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

// checkUpdatedSince checks that an update stamped UpdatedAt with the
// store's clock, no earlier than since.
func checkUpdatedSince(t *testing.T, what string, updated, since time.Time) {
	t.Helper()
	if updated.Before(since.Truncate(time.Microsecond)) || updated.After(time.Now().Add(time.Minute)) {
		t.Errorf("%s: UpdatedAt = %s, want the time of the update (after %s)", what, fmtTime(updated), fmtTime(since))
	}
}

// migrationFiles are the migrations the store embeds, oldest first.
var migrationFiles = []string{
	"00001_projects_tokens.sql", "00002_limits_usage.sql", "00003_audit.sql", "00004_cache_post.sql",
	"00005_deferred_charges.sql", "00006_legacy_tokens.sql", "00007_usage_errors.sql",
	"00008_audit_search.sql", "00009_audit_chain.sql", "00010_project_capture.sql", "00011_rules.sql",
}

func migrationStatus(t *testing.T, st *store.Store) string {
	t.Helper()
	var buf bytes.Buffer
	if err := st.Migrate(t.Context(), "status", &buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// migrationStates parses a status listing into each migration file's state.
func migrationStates(status string) map[string]string {
	states := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(status), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) >= 3 && strings.HasSuffix(fields[1], ".sql") {
			states[fields[1]] = fields[2]
		}
	}
	return states
}

// checkStates checks that the status lists exactly [migrationFiles], the
// first applied of them applied and the rest pending.
func checkStates(t *testing.T, status string, applied int) {
	t.Helper()
	states := migrationStates(status)
	if len(states) != len(migrationFiles) {
		t.Errorf("status lists %d migrations, want %d:\n%s", len(states), len(migrationFiles), status)
	}
	for i, f := range migrationFiles {
		want := "pending"
		if i < applied {
			want = "applied"
		}
		if states[f] != want {
			t.Errorf("migration %s is %q, want %s:\n%s", f, states[f], want, status)
		}
	}
}

func testMigrate(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.open(t)

	checkStates(t, migrationStatus(t, st), 0)
	if err := st.Migrate(ctx, "down", nil); err == nil {
		t.Error("down with nothing applied: want an error")
	}
	var out bytes.Buffer
	if err := st.Migrate(ctx, "up", &out); err != nil {
		t.Fatal(err)
	}
	for _, f := range migrationFiles {
		if !strings.Contains(out.String(), f) {
			t.Errorf("up output does not name %s:\n%s", f, out.String())
		}
	}
	status := migrationStatus(t, st)
	t.Logf("status after up:\n%s", status)
	checkStates(t, status, len(migrationFiles))
	if !strings.Contains(status, "VERSION") || !strings.Contains(status, "1 ") {
		t.Errorf("status lacks the version:\n%s", status)
	}
	out.Reset()
	if err := st.Migrate(ctx, "up", &out); err != nil {
		t.Fatalf("up again: %v", err)
	}
	mustCreateProject(t, st, newProject("p1", t0))

	// Each down rolls back one migration, newest first.
	for i := len(migrationFiles) - 1; i >= 0; i-- {
		if err := st.Migrate(ctx, "down", nil); err != nil {
			t.Fatal(err)
		}
		checkStates(t, migrationStatus(t, st), i)
	}
	if err := st.Migrate(ctx, "down", nil); err == nil {
		t.Error("down with everything rolled back: want an error")
	}
	if _, err := st.GetProject(ctx, "p1"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetProject after down: err = %v, want a missing-table error", err)
	}

	if err := st.Migrate(ctx, "up", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetProject(ctx, "p1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetProject after down and up: err = %v, want ErrNotFound (fresh tables)", err)
	}
	mustCreateProject(t, st, newProject("p1", t0))

	if err := st.Migrate(ctx, "sideways", nil); err == nil {
		t.Error("unknown command: want an error")
	}
}

func testProject(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	p := newProject("p1", t0)
	mustCreateProject(t, st, p)

	got, err := st.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	checkProject(t, "GetProject", got, p)

	before := time.Now()
	got, err = st.UpdateProject(ctx, "p1", store.ProjectUpdate{Name: ptr("renamed"), Active: ptr(false)})
	if err != nil {
		t.Fatal(err)
	}
	checkUpdatedSince(t, "UpdateProject", got.UpdatedAt, before)
	want := p
	want.Name, want.Active, want.UpdatedAt = "renamed", false, got.UpdatedAt
	checkProject(t, "UpdateProject result", got, want)

	got, err = st.UpdateProject(ctx, "p1", store.ProjectUpdate{
		KeyCiphertext: ptr("sealed:new"), KeyID: ptr("k2"), KeyHint: ptr("sk-b…1234"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want.KeyCiphertext, want.KeyID, want.KeyHint, want.UpdatedAt = "sealed:new", "k2", "sk-b…1234", got.UpdatedAt
	checkProject(t, "UpdateProject key", got, want)
	stored, err := st.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	checkProject(t, "GetProject after updates", stored, want)

	// An empty update only touches UpdatedAt.
	got, err = st.UpdateProject(ctx, "p1", store.ProjectUpdate{})
	if err != nil {
		t.Fatal(err)
	}
	want.UpdatedAt = got.UpdatedAt
	checkProject(t, "empty UpdateProject", got, want)

	// A zero CreatedAt means now.
	before = time.Now()
	mustCreateProject(t, st, store.Project{ID: "p2", Name: "two"})
	p2, err := st.GetProject(ctx, "p2")
	if err != nil {
		t.Fatal(err)
	}
	checkUpdatedSince(t, "CreatedAt defaulted", p2.CreatedAt, before)
	if !p2.UpdatedAt.Equal(p2.CreatedAt) {
		t.Errorf("defaulted UpdatedAt %s != CreatedAt %s", fmtTime(p2.UpdatedAt), fmtTime(p2.CreatedAt))
	}
}

func testProjectErrors(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))

	checkErr(t, "CreateProject duplicate id", st.CreateProject(ctx, newProject("p1", t0)), store.ErrConflict)
	_, err := st.GetProject(ctx, "nope")
	checkErr(t, "GetProject", err, store.ErrNotFound)
	_, err = st.UpdateProject(ctx, "nope", store.ProjectUpdate{Name: ptr("x")})
	checkErr(t, "UpdateProject", err, store.ErrNotFound)
	checkErr(t, "DeleteProject", st.DeleteProject(ctx, "nope"), store.ErrNotFound)
	_, err = st.RevokeProjectTokens(ctx, "nope", t0)
	checkErr(t, "RevokeProjectTokens", err, store.ErrNotFound)

	if _, err := st.UpdateProject(ctx, "p1", store.ProjectUpdate{KeyCiphertext: ptr("sealed:x")}); err == nil {
		t.Error("UpdateProject with a ciphertext but no key id: want an error")
	}
	got, err := st.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	checkProject(t, "project after failed updates", got, newProject("p1", t0))
}

func testListProjects(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	got, err := st.ListProjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("ListProjects on an empty store = %#v, want an empty, non-nil slice", got)
	}

	// Inserted out of order; equal times are ordered by id.
	for _, p := range []store.Project{
		newProject("c", t0.Add(time.Microsecond)),
		newProject("b", t0),
		newProject("z", t0.Add(-time.Hour)),
		newProject("a", t0),
	} {
		mustCreateProject(t, st, p)
	}
	got, err = st.ListProjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range got {
		ids = append(ids, p.ID)
	}
	if want := []string{"z", "a", "b", "c"}; !slices.Equal(ids, want) {
		t.Errorf("ListProjects order = %v, want %v", ids, want)
	}
	checkProject(t, "listed project", got[0], newProject("z", t0.Add(-time.Hour)))
}

func testDeleteProject(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	mustCreateProject(t, st, newProject("p2", t0))
	mustCreateToken(t, st, newToken("t1", "p1", t0))
	mustCreateToken(t, st, newToken("t2", "p1", t0))
	mustCreateToken(t, st, newToken("t3", "p2", t0))

	if err := st.DeleteProject(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	_, err := st.GetProject(ctx, "p1")
	checkErr(t, "GetProject after delete", err, store.ErrNotFound)
	for _, id := range []string{"t1", "t2"} {
		_, err := st.GetToken(ctx, id)
		checkErr(t, "token of deleted project", err, store.ErrNotFound)
	}
	mustGetToken(t, st, "t3")
	if _, err := st.GetProject(ctx, "p2"); err != nil {
		t.Errorf("other project: %v", err)
	}
	// The hash of a deleted token is free again.
	mustCreateToken(t, st, newToken("t1", "p2", t0))
}

func testToken(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	tok := newToken("t1", "p1", t0)
	tok.RequestCount, tok.CacheHitCount = 7, 3
	mustCreateToken(t, st, tok)

	checkToken(t, "GetToken", mustGetToken(t, st, "t1"), tok)
	got, err := st.GetTokenByHash(ctx, "hash-t1")
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, "GetTokenByHash", got, tok)

	before := time.Now()
	mustCreateToken(t, st, store.Token{ID: "t2", ProjectID: "p1", Hash: "hash-t2", Active: true})
	t2 := mustGetToken(t, st, "t2")
	checkUpdatedSince(t, "CreatedAt defaulted", t2.CreatedAt, before)
	if !t2.UpdatedAt.Equal(t2.CreatedAt) {
		t.Errorf("defaulted UpdatedAt %s != CreatedAt %s", fmtTime(t2.UpdatedAt), fmtTime(t2.CreatedAt))
	}
}

func testTokenErrors(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	mustCreateToken(t, st, newToken("t1", "p1", t0))

	checkErr(t, "CreateToken for a missing project", st.CreateToken(ctx, newToken("t2", "nope", t0)), store.ErrNotFound)
	dupHash := newToken("t2", "p1", t0)
	dupHash.Hash = "hash-t1"
	err := st.CreateToken(ctx, dupHash)
	checkErr(t, "CreateToken duplicate hash", err, store.ErrConflict)
	if err != nil && strings.Contains(err.Error(), "hash-t1") {
		t.Errorf("error quotes the token hash: %v", err)
	}
	dupID := newToken("t1", "p1", t0)
	dupID.Hash = "hash-other"
	checkErr(t, "CreateToken duplicate id", st.CreateToken(ctx, dupID), store.ErrConflict)

	_, err = st.GetToken(ctx, "nope")
	checkErr(t, "GetToken", err, store.ErrNotFound)
	_, err = st.GetTokenByHash(ctx, "nope")
	checkErr(t, "GetTokenByHash", err, store.ErrNotFound)
	_, err = st.UpdateToken(ctx, "nope", store.TokenUpdate{Name: ptr("x")})
	checkErr(t, "UpdateToken", err, store.ErrNotFound)
	_, err = st.RevokeToken(ctx, "nope", t0)
	checkErr(t, "RevokeToken", err, store.ErrNotFound)

	checkToken(t, "token after failed writes", mustGetToken(t, st, "t1"), newToken("t1", "p1", t0))
}

func testTokenNullableFields(t *testing.T, s suite) {
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))

	unset := newToken("unset", "p1", t0)
	mustCreateToken(t, st, unset)
	checkToken(t, "nil fields", mustGetToken(t, st, "unset"), unset)

	set := newToken("set", "p1", t0)
	set.ExpiresAt = ptr(t0.Add(24 * time.Hour))
	set.MaxRequests = ptr(int64(1000))
	set.LastUsedAt = ptr(t0.Add(time.Minute))
	set.RevokedAt = ptr(t0.Add(time.Hour))
	set.Active = false
	mustCreateToken(t, st, set)
	checkToken(t, "set fields", mustGetToken(t, st, "set"), set)

	// Zero is a value, not NULL.
	zero := newToken("zero", "p1", t0)
	zero.MaxRequests = ptr(int64(0))
	zero.ExpiresAt = ptr(time.Unix(0, 0).UTC())
	mustCreateToken(t, st, zero)
	checkToken(t, "zero values", mustGetToken(t, st, "zero"), zero)
}

func testTimePrecision(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	// Nanoseconds and a non-UTC zone go in; the same instant comes back at
	// microsecond precision, in UTC.
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	in := time.Date(2031, 12, 31, 23, 59, 59, 999_999_999, zone)
	want := in.Truncate(time.Microsecond).UTC()

	p := newProject("p1", in)
	mustCreateProject(t, st, p)
	gotP, err := st.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	wantP := p
	wantP.CreatedAt, wantP.UpdatedAt = want, want
	checkProject(t, "project times", gotP, wantP)

	tok := newToken("t1", "p1", in)
	tok.ExpiresAt, tok.LastUsedAt, tok.RevokedAt = ptr(in), ptr(in), ptr(in)
	mustCreateToken(t, st, tok)
	wantT := tok
	wantT.CreatedAt, wantT.UpdatedAt = want, want
	wantT.ExpiresAt, wantT.LastUsedAt, wantT.RevokedAt = ptr(want), ptr(want), ptr(want)
	checkToken(t, "token times", mustGetToken(t, st, "t1"), wantT)

	// Times before 1970 are negative microseconds.
	old := newToken("t2", "p1", time.Date(1969, 7, 20, 20, 17, 40, 1000, time.UTC))
	mustCreateToken(t, st, old)
	checkToken(t, "pre-1970 time", mustGetToken(t, st, "t2"), old)
}

func testListTokens(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	mustCreateProject(t, st, newProject("p2", t0))
	for _, tok := range []store.Token{
		newToken("b", "p1", t0),
		newToken("x", "p2", t0.Add(-time.Minute)),
		newToken("a", "p1", t0),
		newToken("c", "p1", t0.Add(-time.Second)),
	} {
		mustCreateToken(t, st, tok)
	}
	for _, tc := range []struct {
		project string
		want    []string
	}{
		{"p1", []string{"c", "a", "b"}},
		{"p2", []string{"x"}},
		{"", []string{"x", "c", "a", "b"}},
		{"nope", []string{}},
	} {
		got, err := st.ListTokens(ctx, tc.project)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			t.Errorf("ListTokens(%q) = nil, want a non-nil slice", tc.project)
		}
		ids := []string{}
		for _, tok := range got {
			ids = append(ids, tok.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("ListTokens(%q) = %v, want %v", tc.project, ids, tc.want)
		}
	}
	got, err := st.ListTokens(ctx, "p2")
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, "listed token", got[0], newToken("x", "p2", t0.Add(-time.Minute)))
}

// testListPages walks the project and token lists page by page, with rows
// sharing a creation time (ordered by id) and rows added during the walk.
func testListPages(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	var wantProjects, wantP1, wantAll []string
	for i := range 13 {
		// Groups of three share a time, so pages end inside a tie.
		id := fmt.Sprintf("p%02d", i)
		mustCreateProject(t, st, newProject(id, t0.Add(time.Duration(i/3)*time.Second)))
		wantProjects = append(wantProjects, id)
	}
	for i := range 11 {
		tok := newToken(fmt.Sprintf("t%02d", i), "p0"+strconv.Itoa(i%2), t0.Add(time.Duration(i/3)*time.Second))
		mustCreateToken(t, st, tok)
		wantAll = append(wantAll, tok.ID)
		if tok.ProjectID == "p01" {
			wantP1 = append(wantP1, tok.ID)
		}
	}
	for _, limit := range []int{0, 1, 2, 3, 4, 5, 11, 12, 13, 14, store.MaxPageLimit} {
		var got []string
		q := store.PageQuery{Limit: limit}
		added := fmt.Sprintf("new%04d", limit)
		for pages := 0; ; pages++ {
			page, next, err := st.ListProjectsPage(ctx, q)
			if err != nil {
				t.Fatalf("ListProjectsPage(%+v): %v", q, err)
			}
			if page == nil || (limit > 0 && len(page) > limit) || pages > len(wantProjects) {
				t.Fatalf("ListProjectsPage(%+v) = %d projects", q, len(page))
			}
			for _, p := range page {
				got = append(got, p.ID)
			}
			if next == "" {
				break
			}
			if pages == 0 {
				// Added during the walk, newer than every project: on the last page.
				mustCreateProject(t, st, newProject(added, t0.Add(time.Hour+time.Duration(limit))))
				wantProjects = append(wantProjects, added)
			}
			q.Cursor = next
		}
		if !slices.Equal(got, wantProjects) {
			t.Errorf("projects walked with limit %d:\n got %v\nwant %v", limit, got, wantProjects)
		}
	}
	for _, tc := range []struct {
		project string
		want    []string
	}{{"p01", wantP1}, {"", wantAll}, {"nope", nil}} {
		for _, limit := range []int{1, 2, 3, 4, 6, 11, 12} {
			var got []string
			q := store.PageQuery{Limit: limit}
			for {
				page, next, err := st.ListTokensPage(ctx, tc.project, q)
				if err != nil {
					t.Fatalf("ListTokensPage(%q, %+v): %v", tc.project, q, err)
				}
				if page == nil || len(page) > limit {
					t.Fatalf("ListTokensPage(%q, %+v) = %d tokens", tc.project, q, len(page))
				}
				for _, tok := range page {
					got = append(got, tok.ID)
				}
				if next == "" {
					break
				}
				q.Cursor = next
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("tokens of %q walked with limit %d:\n got %v\nwant %v", tc.project, limit, got, tc.want)
			}
		}
	}
	page, next, err := st.ListTokensPage(ctx, "p01", store.PageQuery{Limit: 1})
	if err != nil || next == "" {
		t.Fatalf("first page: %v, next %q", err, next)
	}
	checkToken(t, "paged token", page[0], newToken("t01", "p01", t0))
}

// testListPagesInvalid: a bad page size is an error, and a cursor the
// listing did not write is ErrInvalidCursor — never a query the database
// refuses (PostgreSQL refuses NUL and invalid UTF-8 in text).
func testListPagesInvalid(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	for _, limit := range []int{-1, store.MaxPageLimit + 1} {
		if _, _, err := st.ListProjectsPage(ctx, store.PageQuery{Limit: limit}); err == nil {
			t.Errorf("ListProjectsPage with limit %d: want an error", limit)
		}
		if _, _, err := st.ListTokensPage(ctx, "", store.PageQuery{Limit: limit}); err == nil {
			t.Errorf("ListTokensPage with limit %d: want an error", limit)
		}
	}
	for _, c := range invalidCursors() {
		if _, _, err := st.ListProjectsPage(ctx, store.PageQuery{Cursor: c}); !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("ListProjectsPage with cursor %q: err = %v, want ErrInvalidCursor", c, err)
		}
		if _, _, err := st.ListTokensPage(ctx, "p1", store.PageQuery{Cursor: c}); !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("ListTokensPage with cursor %q: err = %v, want ErrInvalidCursor", c, err)
		}
	}
}

// invalidCursors are cursors no listing writes: garbled, malformed, or
// well-formed but holding what no stored id holds.
func invalidCursors() []string {
	b64 := base64.RawURLEncoding.EncodeToString
	return []string{
		"!!!",                     // not base64
		b64([]byte("1741064767")), // no id
		b64([]byte("1741064767,")),
		b64([]byte("soon,a1")),
		b64([]byte(",a1")),
		b64([]byte("+1741064767,a1")), // not how a time is written
		b64([]byte("01741064767,a1")),
		b64([]byte("1741064767,a\x00")),              // NUL
		b64([]byte("1741064767,\xff\xfe")),           // invalid UTF-8
		b64([]byte("1741064767,a b")),                // space
		b64([]byte("1," + strings.Repeat("a", 129))), // over-long id
		"MTc0MTA2NDc2NyxhMQ==",                       // padded, and so not what a listing writes
		"MTc0MTA2NDc2NyxhMR",                         // non-zero padding bits: not canonical
	}
}

func testUpdateToken(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	want := newToken("t1", "p1", t0)
	want.MaxRequests = ptr(int64(10))
	mustCreateToken(t, st, want)

	update := func(what string, u store.TokenUpdate, change func(*store.Token)) {
		t.Helper()
		before := time.Now()
		got, err := st.UpdateToken(ctx, "t1", u)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		checkUpdatedSince(t, what, got.UpdatedAt, before)
		change(&want)
		want.UpdatedAt = got.UpdatedAt
		checkToken(t, what, got, want)
		checkToken(t, what+" (stored)", mustGetToken(t, st, "t1"), want)
	}
	expires := t0.Add(48 * time.Hour)
	update("name and active", store.TokenUpdate{Name: ptr("renamed"), Active: ptr(false)}, func(w *store.Token) {
		w.Name, w.Active = "renamed", false
	})
	update("set expiry", store.TokenUpdate{SetExpiresAt: true, ExpiresAt: &expires}, func(w *store.Token) {
		w.ExpiresAt = &expires
	})
	update("pointers without Set flags change nothing",
		store.TokenUpdate{ExpiresAt: ptr(t0), MaxRequests: ptr(int64(99))}, func(*store.Token) {})
	update("set max requests", store.TokenUpdate{SetMaxRequests: true, MaxRequests: ptr(int64(500))}, func(w *store.Token) {
		w.MaxRequests = ptr(int64(500))
	})
	update("clear both", store.TokenUpdate{SetExpiresAt: true, SetMaxRequests: true}, func(w *store.Token) {
		w.ExpiresAt, w.MaxRequests = nil, nil
	})
	update("reactivate", store.TokenUpdate{Active: ptr(true)}, func(w *store.Token) {
		w.Active = true
	})
}

func testRevokeToken(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	want := newToken("t1", "p1", t0)
	mustCreateToken(t, st, want)

	at := t0.Add(time.Hour)
	got, err := st.RevokeToken(ctx, "t1", at)
	if err != nil {
		t.Fatal(err)
	}
	want.Active, want.RevokedAt, want.UpdatedAt = false, &at, got.UpdatedAt
	checkToken(t, "RevokeToken", got, want)
	checkToken(t, "RevokeToken (stored)", mustGetToken(t, st, "t1"), want)

	// A second revocation keeps the first time.
	got, err = st.RevokeToken(ctx, "t1", at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want.UpdatedAt = got.UpdatedAt
	checkToken(t, "second RevokeToken", got, want)
}

func testRevokeProjectTokens(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	mustCreateProject(t, st, newProject("p2", t0))
	mustCreateProject(t, st, newProject("empty", t0))
	earlier := t0.Add(time.Minute)
	for _, tok := range []store.Token{
		newToken("b", "p1", t0),
		newToken("a", "p1", t0),
		func() store.Token { // paused, not revoked
			tok := newToken("paused", "p1", t0)
			tok.Active = false
			return tok
		}(),
		func() store.Token { // revoked before
			tok := newToken("old", "p1", t0)
			tok.Active, tok.RevokedAt = false, &earlier
			return tok
		}(),
		newToken("other", "p2", t0),
	} {
		mustCreateToken(t, st, tok)
	}

	at := t0.Add(time.Hour)
	ids, err := st.RevokeProjectTokens(ctx, "p1", at)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b"}; !slices.Equal(ids, want) {
		t.Errorf("RevokeProjectTokens = %v, want the previously active %v", ids, want)
	}
	for id, wantRevoked := range map[string]time.Time{"a": at, "b": at, "paused": at, "old": earlier} {
		tok := mustGetToken(t, st, id)
		if tok.Active || tok.RevokedAt == nil || !tok.RevokedAt.Equal(wantRevoked) {
			t.Errorf("token %s after revoke-all: Active=%t RevokedAt=%s, want false and %s",
				id, tok.Active, fmtTimePtr(tok.RevokedAt), fmtTime(wantRevoked))
		}
	}
	checkToken(t, "token of another project", mustGetToken(t, st, "other"), newToken("other", "p2", t0))

	ids, err = st.RevokeProjectTokens(ctx, "p1", at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Errorf("second RevokeProjectTokens = %v, want none", ids)
	}
	ids, err = st.RevokeProjectTokens(ctx, "empty", at)
	if err != nil || len(ids) != 0 {
		t.Errorf("RevokeProjectTokens of a project without tokens = %v, %v; want none, nil", ids, err)
	}
}

func testAddTokenUsage(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	a, b := newToken("a", "p1", t0), newToken("b", "p1", t0)
	mustCreateToken(t, st, a)
	mustCreateToken(t, st, b)

	if err := st.AddTokenUsage(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	err := st.AddTokenUsage(ctx, []store.TokenUsage{
		{TokenID: "b", Requests: 1, LastUsedAt: t1},
		{TokenID: "a", Requests: 5, CacheHits: 2, LastUsedAt: t2},
		{TokenID: "a", Requests: 1, CacheHits: 1, LastUsedAt: t1}, // same token twice: both count
		{TokenID: "deleted", Requests: 9, LastUsedAt: t2},         // skipped
	})
	if err != nil {
		t.Fatal(err)
	}
	a.RequestCount, a.CacheHitCount, a.LastUsedAt = 6, 3, &t2
	b.RequestCount, b.LastUsedAt = 1, &t1
	checkToken(t, "a after first batch", mustGetToken(t, st, "a"), a)
	checkToken(t, "b after first batch", mustGetToken(t, st, "b"), b)

	// An older LastUsedAt never moves it back; a zero one leaves it alone.
	err = st.AddTokenUsage(ctx, []store.TokenUsage{
		{TokenID: "a", Requests: 10, LastUsedAt: t0},
		{TokenID: "b", CacheHits: 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	a.RequestCount = 16
	b.CacheHitCount = 4
	checkToken(t, "a after older time", mustGetToken(t, st, "a"), a)
	checkToken(t, "b after zero time", mustGetToken(t, st, "b"), b)

	// A never-used token gets its first LastUsedAt only from a non-zero time.
	c := newToken("c", "p1", t0)
	mustCreateToken(t, st, c)
	if err := st.AddTokenUsage(ctx, []store.TokenUsage{{TokenID: "c", Requests: 1}}); err != nil {
		t.Fatal(err)
	}
	c.RequestCount = 1
	checkToken(t, "c after zero time", mustGetToken(t, st, "c"), c)
}

func testAddTokenUsageConcurrent(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	mustCreateToken(t, st, newToken("a", "p1", t0))
	mustCreateToken(t, st, newToken("b", "p1", t0))

	const workers, batches = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*batches)
	for w := range workers {
		wg.Go(func() {
			for i := range batches {
				// Half the workers list the tokens in the other order, which
				// would deadlock two transactions without a fixed lock order.
				usage := []store.TokenUsage{
					{TokenID: "a", Requests: 1, LastUsedAt: t0.Add(time.Duration(w*batches+i) * time.Second)},
					{TokenID: "b", CacheHits: 1},
				}
				if w%2 == 1 {
					slices.Reverse(usage)
				}
				if err := st.AddTokenUsage(ctx, usage); err != nil {
					errs <- err
				}
				// Reads interleave with the writes.
				if _, err := st.GetToken(ctx, "a"); err != nil {
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
	a, b := mustGetToken(t, st, "a"), mustGetToken(t, st, "b")
	if a.RequestCount != workers*batches || b.CacheHitCount != workers*batches {
		t.Errorf("counts = %d requests, %d cache hits; want %d each", a.RequestCount, b.CacheHitCount, workers*batches)
	}
	if want := t0.Add(time.Duration(workers*batches-1) * time.Second); a.LastUsedAt == nil || !a.LastUsedAt.Equal(want) {
		t.Errorf("LastUsedAt = %s, want the latest %s", fmtTimePtr(a.LastUsedAt), fmtTime(want))
	}
}
