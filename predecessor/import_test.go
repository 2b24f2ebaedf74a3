package predecessor_test

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/predecessor"
	"github.com/llm-proxy/llm-proxy/predecessor/predecessortest"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var predecessorKey = bytes.Repeat([]byte{9}, 32)

// sqliteSource builds a predecessor SQLite file and returns its path.
func sqliteSource(t *testing.T, v predecessortest.Variant) (string, predecessortest.Data) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return path, predecessortest.Build(t, db, v)
}

// postgresSource builds a predecessor schema in a fresh PostgreSQL database.
func postgresSource(t *testing.T, v predecessortest.Variant) (string, predecessortest.Data) {
	t.Helper()
	url := testenv.NewPostgresDB(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v.Postgres = true
	return url, predecessortest.Build(t, db, v)
}

type target struct {
	st     *store.Store
	keys   *authz.Keyring
	hasher authz.Hasher
}

func newTarget(t *testing.T, url string) target {
	t.Helper()
	st, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(t.Context(), "up", nil); err != nil {
		t.Fatal(err)
	}
	keys, _ := authz.NewKeyring(bytes.Repeat([]byte{1}, 32))
	hasher, _ := authz.NewHasher(bytes.Repeat([]byte{2}, 32))
	return target{st: st, keys: keys, hasher: hasher}
}

func (tg target) options(from string) predecessor.Options {
	return predecessor.Options{From: from, Keys: tg.keys, Hasher: tg.hasher,
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}
}

func TestImport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		variant  predecessortest.Variant
		postgres bool
	}{
		{"sqlite plaintext", predecessortest.Variant{KeyColumn: "openai_api_key"}, false},
		{"sqlite hashed tokens encrypted keys", predecessortest.Variant{KeyColumn: "api_key", HashTokens: true, EncryptionKey: predecessorKey}, false},
		{"postgres plaintext", predecessortest.Variant{KeyColumn: "api_key"}, true},
		{"postgres hashed tokens encrypted keys", predecessortest.Variant{KeyColumn: "openai_api_key", HashTokens: true, EncryptionKey: predecessorKey}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, data := "", predecessortest.Data{}
			if tc.postgres {
				from, data = postgresSource(t, tc.variant)
			} else {
				from, data = sqliteSource(t, tc.variant)
			}
			tg := newTarget(t, filepath.Join(t.TempDir(), "new.db"))
			ctx := context.Background()
			o := tg.options(from)
			o.EncryptionKey = tc.variant.EncryptionKey

			// A dry run writes nothing and says what a real one will do.
			o.DryRun = true
			dry, err := predecessor.Import(ctx, tg.st, o)
			if err != nil {
				t.Fatal(err)
			}
			if ps, _ := tg.st.ListProjects(ctx); len(ps) != 0 {
				t.Fatalf("dry run wrote %d projects", len(ps))
			}
			o.DryRun = false
			sum, err := predecessor.Import(ctx, tg.st, o)
			if err != nil {
				t.Fatal(err)
			}
			want := predecessor.Summary{
				Projects: predecessor.Counts{Imported: 3},
				Tokens:   predecessor.Counts{Imported: 9},
				Events:   predecessor.Counts{Imported: 4},
			}
			if got := summaryString(sum); got != summaryString(want) {
				t.Errorf("summary:\n%s\nwant\n%s", got, summaryString(want))
			}
			dry.DryRun = false
			if summaryString(dry) != summaryString(sum) {
				t.Errorf("dry run said\n%s\nthe import did\n%s", summaryString(dry), summaryString(sum))
			}
			checkImported(t, tg, data, tc.variant.HashTokens)

			// Twice: nothing more, nothing changed.
			again, err := predecessor.Import(ctx, tg.st, o)
			if err != nil {
				t.Fatal(err)
			}
			wantAgain := predecessor.Summary{
				Projects: predecessor.Counts{Skipped: map[string]int{"already imported": 3}},
				Tokens:   predecessor.Counts{Skipped: map[string]int{"already imported": 9}},
				Events:   predecessor.Counts{Skipped: map[string]int{"already imported": 4}},
			}
			if summaryString(again) != summaryString(wantAgain) {
				t.Errorf("second run:\n%s\nwant\n%s", summaryString(again), summaryString(wantAgain))
			}
			checkImported(t, tg, data, tc.variant.HashTokens)
		})
	}
}

func summaryString(s predecessor.Summary) string {
	var b strings.Builder
	s.Write(&b)
	return b.String()
}

// checkImported compares the store with what was built.
func checkImported(t *testing.T, tg target, data predecessortest.Data, hashed bool) {
	t.Helper()
	ctx := context.Background()
	for _, p := range data.Projects {
		got, err := tg.st.GetProject(ctx, p.ID)
		if err != nil {
			t.Fatalf("project %s: %v", p.ID, err)
		}
		key, err := tg.keys.Open(got.KeyCiphertext, got.KeyID)
		if err != nil || key != p.Key || got.Name != p.Name || got.Active != p.Active || !strings.Contains(got.KeyHint, "…") {
			t.Errorf("project %s: %+v (key opens: %v)", p.ID, got, err)
		}
	}
	for _, want := range data.Tokens {
		hash := tg.hasher.Hash(want.Secret)
		if hashed {
			hash = authz.LegacySHA256(want.Secret)
		}
		got, err := tg.st.GetTokenByHash(ctx, hash)
		if err != nil {
			t.Fatalf("token %s by its hash: %v", want.ID, err)
		}
		ok := got.ID == want.ID && got.ProjectID == want.ProjectID && got.Legacy && got.Active == want.Active &&
			got.RequestCount == want.RequestCount && got.CacheHitCount == want.CacheHits &&
			equalTime(got.ExpiresAt, want.ExpiresAt) && equalTime(got.LastUsedAt, want.LastUsedAt) &&
			got.CreatedAt.Equal(want.CreatedAt) && equalInt(got.MaxRequests, want.MaxRequests) &&
			(want.Active == (got.RevokedAt == nil))
		if !ok {
			t.Errorf("token %s:\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
	events, _, err := tg.st.ListAudit(ctx, store.AuditQuery{Action: store.AuditPredecessorEvent})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != data.Events {
		t.Fatalf("%d imported events, want %d", len(events), data.Events)
	}
	last := events[0] // newest first: the denial
	if !last.Time.Equal(predecessortest.T0.Add(72*time.Hour)) || last.Outcome != store.AuditOutcomeDenied ||
		last.ClientAddress != "198.51.100.2" || last.Detail != "imported from the standalone proxy: action=proxy_request, outcome=failure, reason=invalid token" {
		t.Errorf("imported denial: %+v", last)
	}
	for _, e := range events {
		if strings.Contains(e.Detail, "sk-") {
			t.Errorf("event %s copied metadata: %q", e.ID, e.Detail)
		}
	}
}

func equalTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

func equalInt(a, b *int64) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// A key that cannot be decrypted stops the import before anything is
// written, naming the project.
func TestImportUndecryptableKey(t *testing.T) {
	from, _ := sqliteSource(t, predecessortest.Variant{KeyColumn: "api_key", EncryptionKey: predecessorKey})
	tg := newTarget(t, filepath.Join(t.TempDir(), "new.db"))
	ctx := context.Background()
	for _, tc := range []struct {
		key  []byte
		want string
	}{
		{nil, `project 6f1c2a9e-0b7d-4c3e-9a51-2d8f7e6b1a01 ("team-a"): its OpenAI key is encrypted (enc:v1:); give the predecessor's ENCRYPTION_KEY with --encryption-key`},
		{bytes.Repeat([]byte{8}, 32), `project 6f1c2a9e-0b7d-4c3e-9a51-2d8f7e6b1a01 ("team-a"): its OpenAI key cannot be decrypted with the encryption key given`},
	} {
		o := tg.options(from)
		o.EncryptionKey = tc.key
		_, err := predecessor.Import(ctx, tg.st, o)
		if err == nil || err.Error() != tc.want {
			t.Errorf("import with key %x: %v, want %q", tc.key, err, tc.want)
		}
		if ps, _ := tg.st.ListProjects(ctx); len(ps) != 0 {
			t.Errorf("a failed import wrote %d projects", len(ps))
		}
	}
	o := tg.options(filepath.Join(t.TempDir(), "missing.db"))
	if _, err := predecessor.Import(ctx, tg.st, o); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing database: %v", err)
	}
}

// --expire-legacy-after bounds every imported token's expiry.
func TestImportExpireLegacyAfter(t *testing.T) {
	from, data := sqliteSource(t, predecessortest.Variant{KeyColumn: "api_key"})
	tg := newTarget(t, filepath.Join(t.TempDir(), "new.db"))
	o := tg.options(from)
	o.ExpireLegacyAfter = 90 * 24 * time.Hour
	if _, err := predecessor.Import(context.Background(), tg.st, o); err != nil {
		t.Fatal(err)
	}
	deadline := o.Now().Add(o.ExpireLegacyAfter)
	for _, tok := range data.Tokens {
		got, err := tg.st.GetToken(context.Background(), tok.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ExpiresAt == nil || !got.ExpiresAt.Equal(deadline) {
			t.Errorf("token %s expires %v, want %v", tok.ID, got.ExpiresAt, deadline)
		}
	}
}
