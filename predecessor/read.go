package predecessor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for a PostgreSQL source
	_ "modernc.org/sqlite"             // the "sqlite" driver, for a SQLite source
)

// source is the predecessor's database, opened read-only in spirit: only
// SELECTs are sent.
type source struct {
	db *sql.DB
}

// openSource opens a postgres:// URL or a SQLite file path (which must
// exist: a typo must not create an empty database and import nothing).
func openSource(ctx context.Context, from string) (*source, error) {
	driver, dsn := "sqlite", strings.TrimPrefix(strings.TrimPrefix(from, "sqlite://"), "file:")
	if strings.HasPrefix(from, "postgres://") || strings.HasPrefix(from, "postgresql://") {
		driver, dsn = "pgx", from
	} else {
		path, _, _ := strings.Cut(dsn, "?")
		if _, err := statFile(path); err != nil {
			return nil, fmt.Errorf("predecessor database %s: %w", path, err)
		}
		dsn = path + "?mode=ro&_pragma=busy_timeout(5000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("open predecessor database: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to predecessor database: %w", err)
	}
	return &source{db: db}, nil
}

func (s *source) Close() error { return s.db.Close() }

// row is one source row by column name, values as the driver returned them.
type row map[string]any

// rows reads a whole table. Columns are discovered, not assumed, so
// migrations that renamed or added columns are all read; a column the
// schema lacks reads as nil. A missing table is an error only if required.
func (s *source) rows(ctx context.Context, table string, required bool) ([]row, error) {
	rs, err := s.db.QueryContext(ctx, "SELECT * FROM "+table)
	if err != nil {
		if !required {
			return nil, nil
		}
		return nil, fmt.Errorf("read predecessor table %s: %w", table, err)
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	for i := range cols {
		cols[i] = strings.ToLower(cols[i])
	}
	var out []row
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("read predecessor table %s: %w", table, err)
		}
		r := make(row, len(cols))
		for i, c := range cols {
			r[c] = vals[i]
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read predecessor table %s: %w", table, err)
	}
	return out, nil
}

// str reads the first of the named columns that is present and not null.
func (r row) str(names ...string) string {
	for _, n := range names {
		switch v := r[n].(type) {
		case string:
			return v
		case []byte:
			return string(v)
		case int64:
			return strconv.FormatInt(v, 10)
		case nil:
			continue
		default:
			return fmt.Sprint(v)
		}
	}
	return ""
}

// boolean reads a flag stored as a boolean, an integer or text; absent or
// null is def.
func (r row) boolean(name string, def bool) bool {
	switch v := r[name].(type) {
	case bool:
		return v
	case int64:
		return v != 0
	case string, []byte:
		if b, err := strconv.ParseBool(r.str(name)); err == nil {
			return b
		}
	}
	return def
}

// integer reads a count; absent or null is nil.
func (r row) integer(name string) *int64 {
	switch v := r[name].(type) {
	case int64:
		return &v
	case int32:
		n := int64(v)
		return &n
	case float64:
		n := int64(v)
		return &n
	case string, []byte:
		n, err := strconv.ParseInt(strings.TrimSpace(r.str(name)), 10, 64)
		if err == nil {
			return &n
		}
	}
	return nil
}

// timeLayouts are how SQLite drivers write DATETIME values as text.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"2006-01-02",
}

// when reads a time; absent, null or unreadable is nil. Times without a
// zone are UTC.
func (r row) when(name string) (*time.Time, error) {
	switch v := r[name].(type) {
	case nil:
		return nil, nil
	case time.Time:
		u := v.UTC()
		return &u, nil
	case int64: // unix seconds
		u := time.Unix(v, 0).UTC()
		return &u, nil
	case string, []byte:
		s := strings.TrimSpace(r.str(name))
		if s == "" {
			return nil, nil
		}
		// Go's time.Time.String() adds a monotonic clock reading.
		s, _, _ = strings.Cut(s, " m=")
		for _, layout := range timeLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				u := t.UTC()
				return &u, nil
			}
		}
		return nil, fmt.Errorf("column %s: unreadable time %q", name, s)
	}
	return nil, fmt.Errorf("column %s: unreadable time of type %T", name, r[name])
}

// statFile is os.Stat, refusing a directory.
func statFile(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		return false, errors.New("is a directory")
	}
	return true, nil
}

// sortedKeys returns m's keys in order, for summaries that read the same
// every run.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
