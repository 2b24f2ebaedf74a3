package cli

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// llm-proxy audit verify reports an intact chain, and after a row is edited
// in the database, exits 1 naming the event.
func TestAuditVerifyCommand(t *testing.T) {
	o := newOperator(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var p struct {
		ID string `json:"id"`
	}
	o.json("Project", &p, "project", "create", "--name", "team-a", "--openai-key-file", keyFile)
	o.json("Project", nil, "project", "create", "--name", "team-b", "--openai-key-file", keyFile)
	o.json("AuditVerification", nil, "audit", "verify")
	out := o.mustRun("audit", "verify")
	for _, want := range []string{"chain:", "intact", "checked:", "2"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit verify printed %q, want %q in it", out, want)
		}
	}

	db, err := sql.Open("sqlite", filepath.Join(o.env["LLM_PROXY_DATA_DIR"], "llm-proxy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id string
	if err := db.QueryRow(`SELECT id FROM audit_events WHERE seq = 1`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_events SET actor = 'nobody' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := o.run("audit", "verify")
	want := "the audit chain is broken at position 1 (event " + id + "): its content does not match its hash"
	if err == nil || err.Error() != want || ExitCode(err) != ExitFailure {
		t.Errorf("after an edit: err %v (exit %d), want %q and exit 1", err, ExitCode(err), want)
	}
	if !strings.Contains(stdout, "BROKEN") || !strings.Contains(stdout, "position 1, event "+id) {
		t.Errorf("after an edit, audit verify printed %q", stdout)
	}
	var u *UsageError
	if errors.As(err, &u) {
		t.Error("a broken chain is not a usage error")
	}
}
