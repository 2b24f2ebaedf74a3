package store_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// The audit chain is tamper-evident: whoever edits, deletes or re-hashes a
// row directly in the database (not through the store) is named by
// VerifyAudit, on both backends.
func TestAuditChainTamper(t *testing.T) {
	for _, b := range []struct {
		name, driver string
		url          func(t *testing.T) string
	}{
		{"SQLite", "sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "llm-proxy.db") }},
		{"PostgreSQL", "pgx", func(t *testing.T) string { testenv.Postgres(t); return testenv.NewPostgresDB(t) }},
	} {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				sql   string
				want  store.AuditBreak
				check int64
			}{
				{"edited detail", `UPDATE audit_events SET detail = 'nothing happened' WHERE id = 'e3'`,
					store.AuditBreak{Seq: 3, ID: "e3", Reason: "its content does not match its hash"}, 2},
				{"edited time", `UPDATE audit_events SET time = time + 1 WHERE id = 'e5'`,
					store.AuditBreak{Seq: 5, ID: "e5", Reason: "its content does not match its hash"}, 4},
				{"deleted", `DELETE FROM audit_events WHERE id = 'e2'`,
					store.AuditBreak{Seq: 2, Reason: "no event at this position (the next is at 3, event e3)"}, 1},
				{"taken out of the chain", `UPDATE audit_events SET seq = NULL WHERE id = 'e4'`,
					store.AuditBreak{Seq: 4, Reason: "no event at this position (the next is at 5, event e5)"}, 3},
				{"re-hashed after an edit", `UPDATE audit_events SET actor = 'someone else', hash = 'f00d' WHERE id = 'e2'`,
					store.AuditBreak{Seq: 2, ID: "e2", Reason: "its content does not match its hash"}, 1},
				{"re-linked", `UPDATE audit_events SET prev_hash = (SELECT hash FROM audit_events WHERE id = 'e1') WHERE id = 'e3'`,
					store.AuditBreak{Seq: 3, ID: "e3", Reason: "its prev_hash is not the hash of the event before it"}, 2},
			} {
				t.Run(tc.name, func(t *testing.T) {
					url := b.url(t)
					st := open(t, url)
					if err := st.Migrate(t.Context(), "up", nil); err != nil {
						t.Fatal(err)
					}
					at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
					var events []store.AuditEvent
					for i := 1; i <= 6; i++ {
						events = append(events, store.AuditEvent{ID: fmt.Sprintf("e%d", i), Time: at.Add(time.Duration(i) * time.Second),
							Action: store.AuditTokenCreate, Actor: "admin-ui", TargetType: store.AuditTargetToken, TargetID: "tok1"})
					}
					for _, e := range events { // one batch each: six transactions
						if err := st.AddAudit(t.Context(), []store.AuditEvent{e}); err != nil {
							t.Fatal(err)
						}
					}
					if v, err := st.VerifyAudit(t.Context()); err != nil || v.Broken != nil || v.Checked != 6 {
						t.Fatalf("before tampering: %+v, %v", v, err)
					}
					db, err := sql.Open(b.driver, url)
					if err != nil {
						t.Fatal(err)
					}
					defer db.Close()
					if _, err := db.ExecContext(t.Context(), tc.sql); err != nil {
						t.Fatalf("%s: %v", tc.sql, err)
					}
					v, err := st.VerifyAudit(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					if v.Broken == nil || *v.Broken != tc.want || v.Checked != tc.check {
						t.Errorf("VerifyAudit = %+v (broken %+v), want %+v after %d links", v, v.Broken, tc.want, tc.check)
					}
				})
			}
		})
	}
}
