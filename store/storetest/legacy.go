package storetest

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
)

// testLegacyToken: a token imported from the predecessor keeps its flag and
// is found by whichever hash it was stored under; tokens of ours are not
// legacy.
func testLegacyToken(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	ours := newToken("t1", "p1", t0)
	hashed := newToken("t2", "p1", t0)
	hashed.Hash, hashed.Prefix, hashed.Legacy = store.LegacySHA256Prefix+"0123abcd", "sk-", true
	hashed.RequestCount, hashed.CacheHitCount, hashed.MaxRequests = 41, 7, ptr(int64(100))
	mustCreateToken(t, st, ours)
	mustCreateToken(t, st, hashed)

	got, err := st.GetTokenByHash(ctx, store.LegacySHA256Prefix+"0123abcd")
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, "legacy token by its SHA-256", got, hashed)
	checkToken(t, "token of ours", mustGetToken(t, st, "t1"), ours)
	list, err := st.ListTokens(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Legacy || !list[1].Legacy {
		t.Errorf("listed tokens: %v", list)
	}
}

// testMigrateLegacy: rolling 00006 back and forth keeps the tokens, which
// come back as not legacy.
func testMigrateLegacy(t *testing.T, s suite) {
	ctx := t.Context()
	st := s.migrated(t)
	mustCreateProject(t, st, newProject("p1", t0))
	tok := newToken("t1", "p1", t0)
	tok.Legacy = true
	mustCreateToken(t, st, tok)
	for range len(migrationFiles) - 5 {
		if err := st.Migrate(ctx, "down", nil); err != nil {
			t.Fatal(err)
		}
	}
	checkStates(t, migrationStatus(t, st), 5)
	if err := st.Migrate(ctx, "up", nil); err != nil {
		t.Fatal(err)
	}
	tok.Legacy = false
	checkToken(t, "token after down and up of 00006", mustGetToken(t, st, "t1"), tok)
}
