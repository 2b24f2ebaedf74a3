package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

// testMigrateLimitsUsage rolls 00002 back and forth over existing data: the
// rows of 00001 survive, and what 00002 added (limits, budgets, usage) goes
// with it and comes back empty.
func testMigrateLimitsUsage(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	p := newProject("p1", t0)
	p.Limits = store.Limits{RequestsPerMinute: ptr(int64(60)), TokensPerMinute: ptr(int64(1000)), MaxConcurrent: ptr(int64(2))}
	p.MonthlyBudgetMicroUSD = ptr(int64(5_000_000))
	mustCreateProject(t, st, p)
	tok := newToken("t1", "p1", t0)
	tok.MaxRequests = ptr(int64(7))
	tok.Limits = store.Limits{RequestsPerMinute: ptr(int64(10))}
	mustCreateToken(t, st, tok)
	mustAddUsage(t, st, store.UsageRecord{ProjectID: "p1", Day: "2025-03-04", Model: "gpt-4o", PriceVersion: "v1", Requests: 1, CostMicroUSD: 5})

	// Roll back every migration after 00001 (newest first), 00002 included.
	for range len(migrationFiles) - 1 {
		if err := st.Migrate(ctx, "down", nil); err != nil {
			t.Fatal(err)
		}
	}
	checkStates(t, migrationStatus(t, st), 1)
	if _, err := st.ProjectUsage(ctx, "p1", "2025-03-01", "2025-03-31"); err == nil {
		t.Error("ProjectUsage after rolling back 00002: want a missing-table error")
	}

	if err := st.Migrate(ctx, "up", nil); err != nil {
		t.Fatal(err)
	}
	checkStates(t, migrationStatus(t, st), len(migrationFiles))
	p.Limits, p.MonthlyBudgetMicroUSD = store.Limits{}, nil
	tok.Limits = store.Limits{}
	got, err := st.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	checkProject(t, "project after down and up of 00002", got, p)
	checkToken(t, "token after down and up of 00002", mustGetToken(t, st, "t1"), tok)
	checkUsage(t, st, "p1", "2025-03-01", "2025-03-31", nil)

	// The schema is whole again.
	got, err = st.UpdateProject(ctx, "p1", store.ProjectUpdate{SetLimits: true, Limits: store.Limits{MaxConcurrent: ptr(int64(3))}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Limits.MaxConcurrent == nil || *got.Limits.MaxConcurrent != 3 {
		t.Errorf("limits after re-migration = %s", limitsString(got.Limits))
	}
	mustAddUsage(t, st, store.UsageRecord{ProjectID: "p1", Day: "2025-03-04", Model: "gpt-4o", PriceVersion: "v1", Requests: 2})
	checkUsage(t, st, "p1", "2025-03-04", "2025-03-04", []store.UsageRecord{
		{ProjectID: "p1", Day: "2025-03-04", Model: "gpt-4o", PriceVersion: "v1", Requests: 2},
	})
}

func testProjectLimits(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)

	unset := newProject("unset", t0)
	mustCreateProject(t, st, unset)
	getProject := func(id string) store.Project {
		t.Helper()
		p, err := st.GetProject(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	checkProject(t, "nil limits and budget", getProject("unset"), unset)

	set := newProject("set", t0)
	set.Limits = store.Limits{
		RequestsPerMinute: ptr(int64(600)),
		TokensPerMinute:   ptr(int64(5_000_000_000)), // beyond 32 bits
		MaxConcurrent:     ptr(int64(8)),
	}
	set.MonthlyBudgetMicroUSD = ptr(int64(9_000_000_000_000_000))
	mustCreateProject(t, st, set)
	checkProject(t, "set limits and budget", getProject("set"), set)

	// Zero is a value, not NULL: a zero budget allows no spend at all.
	zero := newProject("zero", t0)
	zero.Limits = store.Limits{RequestsPerMinute: ptr(int64(0)), TokensPerMinute: ptr(int64(0)), MaxConcurrent: ptr(int64(0))}
	zero.MonthlyBudgetMicroUSD = ptr(int64(0))
	mustCreateProject(t, st, zero)
	checkProject(t, "zero limits and budget", getProject("zero"), zero)

	// Each field independently.
	partial := newProject("partial", t0)
	partial.Limits = store.Limits{TokensPerMinute: ptr(int64(1000))}
	mustCreateProject(t, st, partial)
	checkProject(t, "one limit set", getProject("partial"), partial)

	projects, err := st.ListProjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range projects {
		if p.ID == "set" {
			checkProject(t, "listed project", p, set)
		}
	}

	want := set
	update := func(what string, u store.ProjectUpdate, change func(*store.Project)) {
		t.Helper()
		got, err := st.UpdateProject(ctx, "set", u)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		change(&want)
		want.UpdatedAt = got.UpdatedAt
		checkProject(t, what, got, want)
		checkProject(t, what+" (stored)", getProject("set"), want)
	}
	update("values without Set flags change nothing", store.ProjectUpdate{
		Limits:                store.Limits{RequestsPerMinute: ptr(int64(1))},
		MonthlyBudgetMicroUSD: ptr(int64(1)),
	}, func(*store.Project) {})
	update("SetLimits replaces all three", store.ProjectUpdate{
		SetLimits: true, Limits: store.Limits{RequestsPerMinute: ptr(int64(30))},
	}, func(w *store.Project) {
		w.Limits = store.Limits{RequestsPerMinute: ptr(int64(30))}
	})
	update("set budget alone", store.ProjectUpdate{SetMonthlyBudget: true, MonthlyBudgetMicroUSD: ptr(int64(1_500_000))}, func(w *store.Project) {
		w.MonthlyBudgetMicroUSD = ptr(int64(1_500_000))
	})
	update("limits, budget and name together", store.ProjectUpdate{
		Name:      ptr("renamed"),
		SetLimits: true, Limits: store.Limits{TokensPerMinute: ptr(int64(10)), MaxConcurrent: ptr(int64(1))},
		SetMonthlyBudget: true, MonthlyBudgetMicroUSD: ptr(int64(0)),
	}, func(w *store.Project) {
		w.Name = "renamed"
		w.Limits = store.Limits{TokensPerMinute: ptr(int64(10)), MaxConcurrent: ptr(int64(1))}
		w.MonthlyBudgetMicroUSD = ptr(int64(0))
	})
	update("other fields keep limits and budget", store.ProjectUpdate{Active: ptr(false)}, func(w *store.Project) {
		w.Active = false
	})
	update("clear all", store.ProjectUpdate{SetLimits: true, SetMonthlyBudget: true}, func(w *store.Project) {
		w.Limits, w.MonthlyBudgetMicroUSD = store.Limits{}, nil
	})

	_, err = st.UpdateProject(ctx, "nope", store.ProjectUpdate{SetLimits: true, SetMonthlyBudget: true})
	checkErr(t, "UpdateProject limits of a missing project", err, store.ErrNotFound)
	checkProject(t, "untouched project", getProject("partial"), partial)
}

func testTokenLimits(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	p := newProject("p1", t0)
	p.Limits = store.Limits{RequestsPerMinute: ptr(int64(100))}
	mustCreateProject(t, st, p)

	unset := newToken("unset", "p1", t0)
	mustCreateToken(t, st, unset)
	checkToken(t, "nil limits (not the project's)", mustGetToken(t, st, "unset"), unset)

	set := newToken("set", "p1", t0)
	set.Limits = store.Limits{RequestsPerMinute: ptr(int64(5)), TokensPerMinute: ptr(int64(1 << 40)), MaxConcurrent: ptr(int64(1))}
	set.MaxRequests = ptr(int64(50))
	mustCreateToken(t, st, set)
	checkToken(t, "set limits", mustGetToken(t, st, "set"), set)
	byHash, err := st.GetTokenByHash(ctx, "hash-set")
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, "GetTokenByHash", byHash, set)

	zero := newToken("zero", "p1", t0)
	zero.Limits = store.Limits{MaxConcurrent: ptr(int64(0))}
	mustCreateToken(t, st, zero)
	checkToken(t, "zero limit", mustGetToken(t, st, "zero"), zero)

	listed, err := st.ListTokens(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range listed {
		if tok.ID == "set" {
			checkToken(t, "listed token", tok, set)
		}
	}

	want := set
	update := func(what string, u store.TokenUpdate, change func(*store.Token)) {
		t.Helper()
		got, err := st.UpdateToken(ctx, "set", u)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		change(&want)
		want.UpdatedAt = got.UpdatedAt
		checkToken(t, what, got, want)
		checkToken(t, what+" (stored)", mustGetToken(t, st, "set"), want)
	}
	update("limits without SetLimits change nothing", store.TokenUpdate{
		Limits: store.Limits{RequestsPerMinute: ptr(int64(1))},
	}, func(*store.Token) {})
	update("SetLimits replaces all three", store.TokenUpdate{
		SetLimits: true, Limits: store.Limits{MaxConcurrent: ptr(int64(4))},
	}, func(w *store.Token) {
		w.Limits = store.Limits{MaxConcurrent: ptr(int64(4))}
	})
	update("limits with the cap", store.TokenUpdate{
		SetLimits: true, Limits: store.Limits{TokensPerMinute: ptr(int64(2000))},
		SetMaxRequests: true,
	}, func(w *store.Token) {
		w.Limits = store.Limits{TokensPerMinute: ptr(int64(2000))}
		w.MaxRequests = nil
	})
	update("clear", store.TokenUpdate{SetLimits: true}, func(w *store.Token) {
		w.Limits = store.Limits{}
	})

	// Revocation and usage flushes leave limits alone.
	update("set again", store.TokenUpdate{SetLimits: true, Limits: store.Limits{RequestsPerMinute: ptr(int64(9))}}, func(w *store.Token) {
		w.Limits = store.Limits{RequestsPerMinute: ptr(int64(9))}
	})
	if err := st.AddTokenUsage(ctx, []store.TokenUsage{{TokenID: "set", Requests: 1}}); err != nil {
		t.Fatal(err)
	}
	revoked, err := st.RevokeToken(ctx, "set", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if g, w := limitsString(revoked.Limits), limitsString(want.Limits); g != w {
		t.Errorf("limits after usage and revocation = %s, want %s", g, w)
	}

	_, err = st.UpdateToken(ctx, "nope", store.TokenUpdate{SetLimits: true})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateToken limits of a missing token: err = %v, want ErrNotFound", err)
	}
	got, err := st.GetProject(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	checkProject(t, "project untouched by token limits", got, p)
}

func testProjectCachePOST(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	p := newProject("cp", t0)
	p.CachePOST = true
	mustCreateProject(t, st, p)
	got, err := st.GetProject(ctx, "cp")
	if err != nil || !got.CachePOST {
		t.Fatalf("CachePOST after create: %v, %v", got.CachePOST, err)
	}
	off := false
	got, err = st.UpdateProject(ctx, "cp", store.ProjectUpdate{CachePOST: &off})
	if err != nil || got.CachePOST {
		t.Fatalf("CachePOST after update: %v, %v", got.CachePOST, err)
	}
	if got, _ = st.UpdateProject(ctx, "cp", store.ProjectUpdate{Name: ptr("renamed")}); got.CachePOST {
		t.Fatal("an unrelated update changed CachePOST")
	}
}

// testProjectCapture: capture settings are stored whole on create and on
// update, an unrelated update keeps them, and a zero value turns them off.
func testProjectCapture(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	p := newProject("cap", t0)
	p.Capture = policy.Capture{Enabled: true, RequestMaxBytes: 1000, Redact: []string{"email", `re:ACME-\d+`}}
	mustCreateProject(t, st, p)
	plain := newProject("plain", t0)
	mustCreateProject(t, st, plain)
	check := func(what, id string, want store.Project) {
		t.Helper()
		got, err := st.GetProject(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want.UpdatedAt = got.UpdatedAt
		checkProject(t, what, got, want)
	}
	check("created with capture", "cap", p)
	check("created without", "plain", plain)

	if _, err := st.UpdateProject(ctx, "cap", store.ProjectUpdate{Name: ptr("renamed")}); err != nil {
		t.Fatal(err)
	}
	p.Name = "renamed"
	check("unrelated update", "cap", p)

	p.Capture = policy.Capture{Enabled: true, ResponseMaxBytes: 2048}
	if _, err := st.UpdateProject(ctx, "cap", store.ProjectUpdate{Capture: &p.Capture}); err != nil {
		t.Fatal(err)
	}
	check("replaced", "cap", p)

	p.Capture = policy.Capture{}
	if _, err := st.UpdateProject(ctx, "cap", store.ProjectUpdate{Capture: &p.Capture}); err != nil {
		t.Fatal(err)
	}
	check("turned off", "cap", p)
}

// testRules: a project's and a token's rules are stored whole on create and
// update, kept by unrelated updates, and cleared by a zero value.
func testRules(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	p := newProject("ruled", t0)
	p.Rules = policy.Rules{Models: []string{"gpt-4o*"}, MaxOutputTokens: 500, OverMax: policy.OverMaxClamp,
		Params: map[string][]json.RawMessage{"n": {json.RawMessage("1")}}, NoTools: true, MaxBodyBytes: 4096,
		CORS: &policy.CORS{Origins: []string{"https://*.example.com"}, MaxAgeSeconds: 60}}
	mustCreateProject(t, st, p)
	tok := newToken("tr", "ruled", t0)
	tok.Rules = policy.Rules{Models: []string{"gpt-4o-mini"}}
	mustCreateToken(t, st, tok)
	plain := newToken("tp", "ruled", t0)
	mustCreateToken(t, st, plain)

	got, err := st.GetProject(ctx, "ruled")
	if err != nil {
		t.Fatal(err)
	}
	checkProject(t, "created with rules", got, p)
	checkToken(t, "token created with rules", mustGetToken(t, st, "tr"), tok)
	checkToken(t, "token created without", mustGetToken(t, st, "tp"), plain)
	if byHash, err := st.GetTokenByHash(ctx, tok.Hash); err != nil || rulesString(byHash.Rules) != rulesString(tok.Rules) {
		t.Errorf("token by hash: rules %s, %v", rulesString(byHash.Rules), err)
	}

	got, err = st.UpdateProject(ctx, "ruled", store.ProjectUpdate{Name: ptr("renamed")})
	if err != nil {
		t.Fatal(err)
	}
	p.Name, p.UpdatedAt = "renamed", got.UpdatedAt
	checkProject(t, "unrelated update", got, p)
	p.Rules = policy.Rules{Models: []string{"o3-mini"}}
	if got, err = st.UpdateProject(ctx, "ruled", store.ProjectUpdate{Rules: &p.Rules}); err != nil {
		t.Fatal(err)
	}
	p.UpdatedAt = got.UpdatedAt
	checkProject(t, "rules replaced", got, p)

	upd, err := st.UpdateToken(ctx, "tr", store.TokenUpdate{Name: ptr("renamed")})
	if err != nil || rulesString(upd.Rules) != rulesString(tok.Rules) {
		t.Errorf("an unrelated token update: rules %s, %v", rulesString(upd.Rules), err)
	}
	if upd, err = st.UpdateToken(ctx, "tr", store.TokenUpdate{Rules: &policy.Rules{}}); err != nil || !upd.Rules.IsZero() {
		t.Errorf("token rules cleared: %s, %v", rulesString(upd.Rules), err)
	}
}

// testProjectAllowFlags: the flags are stored as given on create, each
// changes alone on update, and an unrelated update keeps them. (That
// projects from before migration 00005 allow both is testMigrateDeferred's.)
func testProjectAllowFlags(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	both := newProject("both", t0)
	none := newProject("none", t0)
	none.AllowBackground, none.AllowBatches = false, false
	bg := newProject("bg", t0)
	bg.AllowBatches = false
	for _, p := range []store.Project{both, none, bg} {
		mustCreateProject(t, st, p)
		got, err := st.GetProject(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkProject(t, "created "+p.ID, got, p)
	}

	want := none
	update := func(what string, u store.ProjectUpdate, change func(*store.Project)) {
		t.Helper()
		got, err := st.UpdateProject(ctx, "none", u)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		change(&want)
		want.UpdatedAt = got.UpdatedAt
		checkProject(t, what, got, want)
		stored, err := st.GetProject(ctx, "none")
		if err != nil {
			t.Fatal(err)
		}
		checkProject(t, what+" (stored)", stored, want)
	}
	update("allow batches", store.ProjectUpdate{AllowBatches: ptr(true)}, func(p *store.Project) { p.AllowBatches = true })
	update("allow background, refuse batches", store.ProjectUpdate{AllowBackground: ptr(true), AllowBatches: ptr(false)},
		func(p *store.Project) { p.AllowBackground, p.AllowBatches = true, false })
	update("unrelated update", store.ProjectUpdate{Name: ptr("renamed"), CachePOST: ptr(true)},
		func(p *store.Project) { p.Name, p.CachePOST = "renamed", true })
	update("refuse background", store.ProjectUpdate{AllowBackground: ptr(false)}, func(p *store.Project) { p.AllowBackground = false })

	for _, p := range []store.Project{both, bg} {
		got, err := st.GetProject(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkProject(t, "other project "+p.ID, got, p)
	}
}
