package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Queries are written once, with $N placeholders: PostgreSQL requires them
// and modernc.org/sqlite binds "$N" to the N-th argument, so no per-dialect
// rebinding is needed.

// scanner is the part of *sql.Row and *sql.Rows that the scan helpers use.
type scanner interface {
	Scan(dest ...any) error
}

// queryAll runs a query and scans each row it returns with scan. The result
// is never nil. Errors come back as they are, for the caller to wrap.
func queryAll[T any](ctx context.Context, db *sql.DB, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	all := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		all = append(all, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return all, nil
}

// cutPage cuts a keyset page queried with one row more than limit: the first
// limit rows, and the cursor of the next page ("" when there is none) from
// the position (time and id) key gives of the page's last row.
func cutPage[T any](rows []T, limit int, key func(T) (time.Time, string)) ([]T, string) {
	if len(rows) <= limit {
		return rows, ""
	}
	rows = rows[:limit]
	at, id := key(rows[limit-1])
	return rows, encodeCursor(toMicros(at), id)
}

// toMicros is how every non-null time is stored: unix microseconds.
func toMicros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros is the inverse of [toMicros]; times come back in UTC.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullMicros is the stored form of a nullable time: NULL for nil.
func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return toMicros(*t)
}

// fromNullMicros is the inverse of [nullMicros].
func fromNullMicros(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMicros(n.Int64)
	return &t
}

// nullInt64 is the stored form of a nullable integer: NULL for nil.
func nullInt64(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func fromNullInt64(n sql.NullInt64) *int64 {
	if !n.Valid {
		return nil
	}
	v := n.Int64
	return &v
}

// isUniqueViolation reports whether err is a primary-key or unique
// constraint violation on either backend.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505" // unique_violation
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		c := liteErr.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKeyViolation reports whether err is a foreign key violation on
// either backend.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23503" // foreign_key_violation
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return liteErr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}

// notFound maps sql.ErrNoRows to [ErrNotFound] and leaves other errors alone.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// conflict marks a unique violation as [ErrConflict], keeping the driver's
// message (which names the constraint, never the value) for the logs.
func conflict(err error) error {
	if isUniqueViolation(err) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// inTx runs fn in a transaction, committing if it returns nil and rolling
// back otherwise. fn must use only tx: on SQLite the pool has a single
// connection, which tx holds.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error from fn is the one worth reporting
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// assignments builds the SET list of a partial UPDATE, numbering the
// placeholders as it goes.
type assignments struct {
	sets []string
	args []any
}

func (a *assignments) set(column string, value any) {
	a.args = append(a.args, value)
	a.sets = append(a.sets, column+" = $"+strconv.Itoa(len(a.args)))
}

// setLimits sets the three limit columns projects and tokens share.
func (a *assignments) setLimits(l Limits) {
	a.set("requests_per_minute", nullInt64(l.RequestsPerMinute))
	a.set("tokens_per_minute", nullInt64(l.TokensPerMinute))
	a.set("max_concurrent", nullInt64(l.MaxConcurrent))
}

// update returns "UPDATE table SET … WHERE id = $n RETURNING columns" and
// its arguments, with id as the last one.
func (a *assignments) update(table, id, columns string) (string, []any) {
	args := append(a.args, id)
	q := "UPDATE " + table + " SET " + strings.Join(a.sets, ", ") +
		" WHERE id = $" + strconv.Itoa(len(args)) + " RETURNING " + columns
	return q, args
}
