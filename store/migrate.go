package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"text/tabwriter"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrations holds the schema, one goose SQL file per version, shared by
// both dialects. It is read-only.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Migrate runs a goose migration command against the database and reports
// what it did on w (which may be nil):
//
//   - "up" applies every pending migration;
//   - "down" rolls back the most recent one (an error if none is applied);
//   - "status" lists each migration's version, file and state.
//
// On PostgreSQL, concurrent Migrate calls (several replicas starting at once)
// are serialised with an advisory lock; SQLite serialises them on its write
// lock.
func (s *Store) Migrate(ctx context.Context, command string, w io.Writer) error {
	if w == nil {
		w = io.Discard
	}
	p, err := s.migrationProvider()
	if err != nil {
		return fmt.Errorf("migrate %s: %w", command, err)
	}
	// p is not closed: Provider.Close would close s.db.
	switch command {
	case "up":
		results, err := p.Up(ctx)
		for _, r := range results {
			fmt.Fprintln(w, r)
		}
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if len(results) == 0 {
			fmt.Fprintln(w, "no migrations to apply")
		}
		return nil
	case "down":
		r, err := p.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			return errors.New("migrate down: no migration to roll back")
		}
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		fmt.Fprintln(w, r)
		return nil
	case "status":
		statuses, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tMIGRATION\tSTATE\tAPPLIED AT")
		for _, st := range statuses {
			applied := ""
			if st.State == goose.StateApplied {
				applied = st.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", st.Source.Version, path.Base(st.Source.Path), st.State, applied)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("migrate: unknown command %q (want up, down or status)", command)
	}
}

// migrationProvider returns a goose provider for the embedded migrations.
// It is built per call, not kept: goose's Provider API holds no global state,
// and migrating is rare.
func (s *Store) migrationProvider() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	dialect := goose.DialectSQLite3
	if s.dialect == DialectPostgres {
		dialect = goose.DialectPostgres
		// An advisory lock is scoped to its session, so a crashed migrator
		// cannot leave it held. Poll every second for up to five minutes.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	return goose.NewProvider(dialect, s.db, fsys, opts...)
}
