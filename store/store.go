package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// Dialect names returned by [Store.Dialect].
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// sqlitePragmas is applied, in this order, on every new SQLite connection.
// busy_timeout comes first so that switching to WAL waits for, rather than
// fails on, another process (e.g. `llm-proxy migrate`) holding the file.
// WAL lets readers in other processes proceed while we write; synchronous
// NORMAL is the documented safe pairing with WAL; foreign keys are off by
// default in SQLite and the schema relies on them. _txlock=immediate takes
// the write lock at BEGIN, so a transaction never fails half-way with
// SQLITE_BUSY when it upgrades from reading to writing.
const sqlitePragmas = "_pragma=busy_timeout(5000)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(NORMAL)" +
	"&_pragma=foreign_keys(1)" +
	"&_txlock=immediate"

// Store is the SQL store of projects and tokens. It is safe for concurrent
// use; create it with [Open] and release it with [Store.Close].
type Store struct {
	db      *sql.DB
	dialect string
	now     func() time.Time // the clock for created_at/updated_at; time.Now outside tests
}

// Open connects to the database named by url and checks that it answers.
// It does not migrate: call [Store.Migrate] with "up" for that.
//
// A url starting with "postgres://" or "postgresql://" selects PostgreSQL
// (any libpq-style URL parameter pgx understands may be given). Anything else
// is a SQLite database file; a "sqlite://" or "file:" prefix is accepted and
// stripped, and a query string, if any, is passed on to the driver after the
// store's own settings (so it may override them). The file's parent directory
// is created with mode 0700 if missing.
//
// Errors never contain the password from url.
func Open(ctx context.Context, url string) (*Store, error) {
	if isPostgresURL(url) {
		return openPostgres(ctx, url)
	}
	return openSQLite(ctx, url)
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

func openPostgres(ctx context.Context, rawURL string) (*Store, error) {
	shown := redactURL(rawURL)
	db, err := sql.Open("pgx", rawURL)
	if err != nil {
		return nil, scrubSecrets(fmt.Errorf("open postgres %s: %w", shown, err), rawURL)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, scrubSecrets(fmt.Errorf("connect to postgres %s: %w", shown, err), rawURL)
	}
	return &Store{db: db, dialect: DialectPostgres, now: time.Now}, nil
}

func openSQLite(ctx context.Context, rawURL string) (*Store, error) {
	path, query := sqlitePath(rawURL)
	if path == "" {
		return nil, errors.New("open sqlite: empty database path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open sqlite %s: create data dir: %w", path, err)
	}
	dsn := path + "?" + sqlitePragmas
	if query != "" {
		dsn += "&" + query
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// SQLite allows one writer at a time. With several pooled connections,
	// concurrent writers queue on the file lock and, past busy_timeout, fail
	// with SQLITE_BUSY; one connection instead queues them in database/sql,
	// in order and without a timeout, and never deadlocks a read transaction
	// against a writer. Reads serialise too, which is fine for this store:
	// the request path reads through authz's cache, not through SQL. Keep
	// the one connection open forever, so the pragmas above run only once.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &Store{db: db, dialect: DialectSQLite, now: time.Now}, nil
}

// sqlitePath splits a SQLite url into the file path and the driver query
// string, dropping an optional "sqlite://" or "file:" ("file://") prefix.
func sqlitePath(rawURL string) (path, query string) {
	s := rawURL
	switch {
	case strings.HasPrefix(s, "sqlite://"):
		s = strings.TrimPrefix(s, "sqlite://")
	case strings.HasPrefix(s, "file://"):
		s = strings.TrimPrefix(s, "file://")
	case strings.HasPrefix(s, "file:"):
		s = strings.TrimPrefix(s, "file:")
	}
	path, query, _ = strings.Cut(s, "?")
	return path, query
}

// Dialect reports the backend: [DialectSQLite] or [DialectPostgres].
func (s *Store) Dialect() string { return s.dialect }

// Close closes the database. The Store must not be used afterwards.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s store: %w", s.dialect, err)
	}
	return nil
}

// secretQueryParams are the URL query parameters that carry a password.
var secretQueryParams = []string{"password", "sslpassword"}

// redactURL returns rawURL fit for an error message: passwords, in the user
// info and in the query, are masked.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's own error quotes the input, so it must not be shown either.
		return "(unparsable URL)"
	}
	q := u.Query()
	masked := false
	for _, k := range secretQueryParams {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			masked = true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// scrubSecrets guards against a driver error that quotes the connection
// string: if err's message contains a password from rawURL, the message is
// rewritten with the password masked. errors.Is/As still see the chain.
func scrubSecrets(err error, rawURL string) error {
	u, perr := url.Parse(rawURL)
	if perr != nil {
		return err
	}
	var secrets []string
	if p, ok := u.User.Password(); ok && p != "" {
		secrets = append(secrets, p, url.QueryEscape(p), url.PathEscape(p))
	}
	for _, k := range secretQueryParams {
		if p := u.Query().Get(k); p != "" {
			secrets = append(secrets, p, url.QueryEscape(p))
		}
	}
	msg := err.Error()
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error whose message had secrets masked.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
