package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// deferredColumns is the column list every deferred charge query selects,
// in the order [scanDeferred] reads.
const deferredColumns = "id, kind, project_id, token_id, model, ticket, reserved_micro_usd, " +
	"created_at, next_check_at, checks, settled_at, cost_micro_usd"

func scanDeferred(row scanner) (Deferred, error) {
	var (
		d                     Deferred
		ticket                string
		created, next, checks int64
		settled               sql.NullInt64
	)
	err := row.Scan(&d.ID, &d.Kind, &d.ProjectID, &d.TokenID, &d.Model, &ticket, &d.ReservedMicroUSD,
		&created, &next, &checks, &settled, &d.CostMicroUSD)
	if err != nil {
		return Deferred{}, err
	}
	if ticket != "" {
		d.Ticket = []byte(ticket)
	}
	d.CreatedAt, d.NextCheckAt = fromMicros(created), fromMicros(next)
	d.Checks = int(checks)
	d.SettledAt = fromNullMicros(settled)
	return d, nil
}

// rowQuerier is what deferredExists needs: a *sql.DB or a *sql.Tx.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// deferredExists returns [ErrNotFound] if there is no deferred charge with
// the id.
func deferredExists(ctx context.Context, q rowQuerier, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM deferred_charges WHERE id = $1`, id).Scan(&one)
	return notFound(err)
}

// checkDeferred reports what makes d unfit to store, if anything.
func checkDeferred(d Deferred) error {
	switch {
	case d.ID == "":
		return errors.New("no id")
	case d.Kind != DeferredResponse && d.Kind != DeferredBatch:
		return fmt.Errorf("kind %q is neither %q nor %q", d.Kind, DeferredResponse, DeferredBatch)
	case d.ProjectID == "":
		return errors.New("no project id")
	case d.TokenID == "":
		return errors.New("no token id")
	case d.ReservedMicroUSD < 0 || d.CostMicroUSD < 0:
		return errors.New("negative amount")
	case d.Checks < 0:
		return errors.New("negative check count")
	case !utf8.Valid(d.Ticket) || bytes.IndexByte(d.Ticket, 0) >= 0:
		// PostgreSQL's TEXT holds neither; refusing them on both backends
		// keeps them alike.
		return errors.New("ticket is not UTF-8 text without NUL bytes")
	}
	return nil
}

// AddDeferred records a deferred charge. A zero CreatedAt is set to now and
// a zero NextCheckAt to CreatedAt (due at once); the other fields are
// stored as given. d must have an ID, a Kind of [DeferredResponse] or
// [DeferredBatch], a ProjectID and a TokenID, no negative amount or check
// count, and a Ticket of UTF-8 text without NUL bytes; otherwise nothing is
// stored. The project need not exist, as with usage. It returns
// [ErrConflict] if a charge with the id exists, settled or not, and leaves
// that one alone.
func (s *Store) AddDeferred(ctx context.Context, d Deferred) error {
	if err := checkDeferred(d); err != nil {
		return fmt.Errorf("add deferred charge %s: %w", d.ID, err)
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = s.now()
	}
	if d.NextCheckAt.IsZero() {
		d.NextCheckAt = d.CreatedAt
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO deferred_charges (`+deferredColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		d.ID, d.Kind, d.ProjectID, d.TokenID, d.Model, string(d.Ticket), d.ReservedMicroUSD,
		toMicros(d.CreatedAt), toMicros(d.NextCheckAt), d.Checks, nullMicros(d.SettledAt), d.CostMicroUSD)
	if err != nil {
		return fmt.Errorf("add deferred charge %s: %w", d.ID, conflict(err))
	}
	return nil
}

// GetDeferred returns the deferred charge with the given id, settled or
// not, or [ErrNotFound].
func (s *Store) GetDeferred(ctx context.Context, id string) (Deferred, error) {
	d, err := scanDeferred(s.db.QueryRowContext(ctx,
		`SELECT `+deferredColumns+` FROM deferred_charges WHERE id = $1`, id))
	if err != nil {
		return Deferred{}, fmt.Errorf("get deferred charge %s: %w", id, notFound(err))
	}
	return d, nil
}

// DueDeferred returns at most limit unsettled charges whose NextCheckAt is
// at or before now, earliest NextCheckAt first (ties broken by id). limit
// must be at least 1. The result is never nil. It only reads: replicas
// polling at once may get the same charges, which [Store.SettleDeferred]
// settles once whoever asks.
func (s *Store) DueDeferred(ctx context.Context, now time.Time, limit int) ([]Deferred, error) {
	if limit < 1 {
		return nil, fmt.Errorf("due deferred charges: limit %d is not positive", limit)
	}
	due, err := queryAll(ctx, s.db, scanDeferred,
		`SELECT `+deferredColumns+` FROM deferred_charges
		 WHERE settled_at IS NULL AND next_check_at <= $1
		 ORDER BY next_check_at, id LIMIT $2`,
		toMicros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("due deferred charges: %w", err)
	}
	return due, nil
}

// PostponeDeferred records a poll that found the object still running: an
// unsettled charge gets NextCheckAt next and one more Checks. A settled
// charge is left alone without error (another replica settled it
// meanwhile); an unknown id is [ErrNotFound].
func (s *Store) PostponeDeferred(ctx context.Context, id string, next time.Time) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE deferred_charges SET next_check_at = $2, checks = checks + 1
		 WHERE id = $1 AND settled_at IS NULL`,
		id, toMicros(next))
	if err != nil {
		return fmt.Errorf("postpone deferred charge %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("postpone deferred charge %s: %w", id, err)
	}
	if n == 0 {
		// Charges are never deleted: absent now means never added.
		if err := deferredExists(ctx, s.db, id); err != nil {
			return fmt.Errorf("postpone deferred charge %s: %w", id, err)
		}
	}
	return nil
}

// SettleDeferred settles a charge, exactly once: in one transaction it
// marks the charge settled at at (zero means now) with its final cost and
// adds usage to the daily roll-up as [Store.AddUsage] does (usage may be
// empty). It reports true when this call settled the charge, and false,
// having changed and added nothing, when it was already settled (by another
// replica or an earlier call), whatever cost and usage this call carried.
// An unknown id is [ErrNotFound]. cost must not be negative and every usage
// record must be valid for AddUsage; otherwise nothing is written. Usage is
// taken as given: the store does not check it belongs to the charge's
// project.
func (s *Store) SettleDeferred(ctx context.Context, id string, at time.Time, cost int64, usage []UsageRecord) (bool, error) {
	if cost < 0 {
		return false, fmt.Errorf("settle deferred charge %s: negative cost", id)
	}
	if err := checkUsage(usage); err != nil {
		return false, fmt.Errorf("settle deferred charge %s: %w", id, err)
	}
	if at.IsZero() {
		at = s.now()
	}
	settled := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Of concurrent settlers, PostgreSQL makes all but the first wait
		// on the row lock and then re-check settled_at, so they update
		// nothing; SQLite runs them one after the other.
		res, err := tx.ExecContext(ctx,
			`UPDATE deferred_charges SET settled_at = $2, cost_micro_usd = $3
			 WHERE id = $1 AND settled_at IS NULL`,
			id, toMicros(at), cost)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return deferredExists(ctx, tx, id)
		}
		settled = true
		if len(usage) == 0 {
			return nil
		}
		return addUsage(ctx, tx, usage)
	})
	if err != nil {
		return false, fmt.Errorf("settle deferred charge %s: %w", id, err)
	}
	return settled, nil
}

// OutstandingMicroUSD returns the sum of ReservedMicroUSD over the
// project's unsettled charges created at or after since; 0 when there are
// none. After a restart, a month's budget spend is [Store.ProjectCost]
// of the month plus this, with since the month's start.
func (s *Store) OutstandingMicroUSD(ctx context.Context, projectID string, since time.Time) (int64, error) {
	// SUM of BIGINT is NUMERIC on PostgreSQL; the cast brings it back to int64.
	var sum int64
	err := s.db.QueryRowContext(ctx,
		`SELECT CAST(COALESCE(SUM(reserved_micro_usd), 0) AS BIGINT) FROM deferred_charges
		 WHERE project_id = $1 AND settled_at IS NULL AND created_at >= $2`,
		projectID, toMicros(since)).Scan(&sum)
	if err != nil {
		return 0, fmt.Errorf("outstanding charges of project %s: %w", projectID, err)
	}
	return sum, nil
}
