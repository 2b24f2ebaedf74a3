package store

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSQLitePath(t *testing.T) {
	for _, tc := range []struct {
		in, path, query string
	}{
		{"/var/lib/llm-proxy/db.sqlite", "/var/lib/llm-proxy/db.sqlite", ""},
		{"data/db.sqlite", "data/db.sqlite", ""},
		{"sqlite:///abs/db.sqlite", "/abs/db.sqlite", ""},
		{"sqlite://rel/db.sqlite?_pragma=cache_size(-2000)", "rel/db.sqlite", "_pragma=cache_size(-2000)"},
		{"file:rel.db", "rel.db", ""},
		{"file:///abs/x.db?_txlock=deferred", "/abs/x.db", "_txlock=deferred"},
	} {
		path, query := sqlitePath(tc.in)
		if path != tc.path || query != tc.query {
			t.Errorf("sqlitePath(%q) = %q, %q; want %q, %q", tc.in, path, query, tc.path, tc.query)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"postgres://app:s3cret@db:5432/llm?sslmode=require", "postgres://app:xxxxx@db:5432/llm?sslmode=require"},
		{"postgres://app@db/llm", "postgres://app@db/llm"},
		{"postgresql://db/llm?password=s3cret&user=app", "postgresql://db/llm?password=xxxxx&user=app"},
		{"postgres://app:s3cret@db:bad port/llm", "(unparsable URL)"},
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestScrubSecrets(t *testing.T) {
	inner := errors.New("dial failed for postgres://app:s3cret@db/llm")
	err := scrubSecrets(inner, "postgres://app:s3cret@db/llm")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("password not scrubbed: %v", err)
	}
	if !errors.Is(err, inner) {
		t.Error("scrubbed error no longer wraps the original")
	}
	if clean := errors.New("refused"); scrubSecrets(clean, "postgres://app:s3cret@db/llm") != clean {
		t.Error("an error without secrets should be returned as is")
	}
}

func TestOpenPostgresErrorHidesPassword(t *testing.T) {
	// A port nothing listens on: the connection is refused at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, u := range []string{
		"postgres://app:pw-in-userinfo@" + addr + "/llm?connect_timeout=2",
		"postgresql://app@" + addr + "/llm?password=pw-in-query&connect_timeout=2",
		"postgres://app:pw-in-userinfo@" + addr + "/llm?sslmode=nonsense",
	} {
		s, err := Open(t.Context(), u)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s) succeeded", redactURL(u))
		}
		t.Logf("error: %v", err)
		if strings.Contains(err.Error(), "pw-in-") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestOpenSQLiteCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := Open(t.Context(), "sqlite://"+filepath.Join(dir, "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Dialect() != DialectSQLite {
		t.Errorf("Dialect() = %q", s.Dialect())
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode %o, want 700", perm)
	}
	var mode string
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	var fk, busy int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA foreign_keys").Scan(&fk); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA busy_timeout").Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || fk != 1 || busy != 5000 {
		t.Errorf("journal_mode=%s foreign_keys=%d busy_timeout=%d; want wal, 1, 5000", mode, fk, busy)
	}
}

func TestOpenSQLiteEmptyPath(t *testing.T) {
	if _, err := Open(t.Context(), ""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}
