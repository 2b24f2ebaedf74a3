package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// auditColumns is the column list every audit query selects, in the order
// [scanAudit] reads.
const auditColumns = "id, time, action, actor, project_id, target_type, target_id, " +
	"request_id, client_address, outcome, detail"

func scanAudit(row scanner) (AuditEvent, error) {
	var (
		e       AuditEvent
		micros  int64
		project sql.NullString
	)
	err := row.Scan(&e.ID, &micros, &e.Action, &e.Actor, &project, &e.TargetType, &e.TargetID,
		&e.RequestID, &e.ClientAddress, &e.Outcome, &e.Detail)
	if err != nil {
		return AuditEvent{}, err
	}
	e.Time = fromMicros(micros)
	e.ProjectID = project.String
	return e, nil
}

// nullString is the stored form of an optional text: NULL for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// AddAudit appends events to the audit log in one transaction: all are
// stored or, on error, none. A zero Time is set to now, and an empty Outcome
// to [AuditOutcomeDenied] for an "auth." action and [AuditOutcomeSuccess]
// for any other. It is idempotent by
// id: an event whose ID is already stored (by an earlier call whose outcome
// the caller never learnt, say) is skipped, not an error, so a writer may
// retry a batch safely. Every event must have an ID and an Action;
// otherwise nothing is written.
func (s *Store) AddAudit(ctx context.Context, events []AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	now := s.now()
	rows := make([]AuditEvent, 0, len(events))
	for i, e := range events {
		switch {
		case e.ID == "":
			return fmt.Errorf("add audit: event %d (%s) has no id", i, e.Action)
		case e.Action == "":
			return fmt.Errorf("add audit: event %s has no action", e.ID)
		}
		if e.Time.IsZero() {
			e.Time = now
		}
		if e.Outcome == "" {
			e.Outcome = AuditOutcomeSuccess
			if strings.HasPrefix(e.Action, "auth.") {
				e.Outcome = AuditOutcomeDenied
			}
		}
		rows = append(rows, e)
	}
	// Inserting in id order makes concurrent batches that share ids wait for
	// each other in one order, so they cannot deadlock on PostgreSQL.
	slices.SortFunc(rows, func(a, b AuditEvent) int { return cmp.Compare(a.ID, b.ID) })
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx,
			`INSERT INTO audit_events (`+auditColumns+`)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			 ON CONFLICT (id) DO NOTHING`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range rows {
			_, err := stmt.ExecContext(ctx, e.ID, toMicros(e.Time), e.Action, e.Actor, nullString(e.ProjectID),
				e.TargetType, e.TargetID, e.RequestID, e.ClientAddress, e.Outcome, e.Detail)
			if err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add audit (%d events): %w", len(events), err)
	}
	return nil
}

// GetAudit returns the audit event with the given id, or [ErrNotFound].
func (s *Store) GetAudit(ctx context.Context, id string) (AuditEvent, error) {
	e, err := scanAudit(s.db.QueryRowContext(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE id = $1`, id))
	if err != nil {
		return AuditEvent{}, fmt.Errorf("get audit event %s: %w", id, notFound(err))
	}
	return e, nil
}

// ListAudit returns one page of the audit events q selects, newest first
// (ties in time broken by id, descending), and the cursor of the next page,
// "" when this page is the last. The page is never nil.
//
// Pages are cut by position, not offset: a cursor names the last event of
// its page, and the next page holds the events that sort after it. A walk
// from the first page to the last therefore returns every event that was
// stored when it began exactly once, however many events are added
// meanwhile; an event added during the walk shows up in it only if its time
// is older than the page being read. A cursor is opaque and stays valid
// indefinitely; one that ListAudit did not return is [ErrInvalidCursor].
func (s *Store) ListAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, string, error) {
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultAuditLimit
	case limit < 0 || limit > MaxAuditLimit:
		return nil, "", fmt.Errorf("list audit: limit %d is not between 1 and %d", q.Limit, MaxAuditLimit)
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.ProjectID != "" {
		where = append(where, "project_id = "+arg(q.ProjectID))
	}
	if q.Action != "" {
		where = append(where, "action = "+arg(q.Action))
	}
	if q.Actor != "" {
		where = append(where, "actor = "+arg(q.Actor))
	}
	if !q.From.IsZero() {
		where = append(where, "time >= "+arg(toMicros(q.From)))
	}
	if !q.To.IsZero() {
		where = append(where, "time < "+arg(toMicros(q.To)))
	}
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("list audit: %w", err)
		}
		// A row value compares like the ORDER BY below, on both backends.
		where = append(where, "(time, id) < ("+arg(at)+", "+arg(id)+")")
	}
	query := `SELECT ` + auditColumns + ` FROM audit_events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	// One row more than the page tells whether there is a next page.
	query += ` ORDER BY time DESC, id DESC LIMIT ` + arg(limit+1)

	events, err := queryAll(ctx, s.db, scanAudit, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	events, next := cutPage(events, limit, func(e AuditEvent) (time.Time, string) { return e.Time, e.ID })
	return events, next, nil
}

// encodeCursor returns the cursor naming a keyset position: the time
// (unix microseconds) and id of the last row of a page, as unpadded
// URL-safe base64 of "micros,id", safe in a query string as is. The audit
// log and the project and token lists share it.
func encodeCursor(micros int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(micros, 10) + "," + id))
}

// maxCursorIDLen bounds the id in a cursor; ids this package stores are far
// shorter.
const maxCursorIDLen = 128

// decodeCursor is the inverse of [encodeCursor]. It accepts only what
// encodeCursor returns — canonical base64, a decimal time and an id of
// visible ASCII characters (so never a NUL or invalid UTF-8, which
// PostgreSQL would refuse with an error) — and its errors are
// [ErrInvalidCursor].
func decodeCursor(cursor string) (micros int64, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != cursor {
		return 0, "", ErrInvalidCursor
	}
	t, id, ok := strings.Cut(string(b), ",")
	if !ok || id == "" || len(id) > maxCursorIDLen {
		return 0, "", ErrInvalidCursor
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return 0, "", ErrInvalidCursor
		}
	}
	micros, err = strconv.ParseInt(t, 10, 64)
	if err != nil || strconv.FormatInt(micros, 10) != t {
		return 0, "", ErrInvalidCursor
	}
	return micros, id, nil
}
