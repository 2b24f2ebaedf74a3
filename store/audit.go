package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
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
//
// Each stored event takes the next position of the audit chain, in id
// order within the batch, with its hash over its content and the hash
// before it ([AuditHash]; [Store.VerifyAudit] checks them). Appends are
// serialised, across every process sharing the database (an advisory lock
// on PostgreSQL, the database's single writer on SQLite), so the chain
// never forks.
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
		seq, prev, err := s.lockAuditChain(ctx, tx)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx,
			`INSERT INTO audit_events (`+auditColumns+`, seq, prev_hash, hash)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			 ON CONFLICT (id) DO NOTHING`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range rows {
			hash := AuditHash(prev, seq+1, e)
			res, err := stmt.ExecContext(ctx, e.ID, toMicros(e.Time), e.Action, e.Actor, nullString(e.ProjectID),
				e.TargetType, e.TargetID, e.RequestID, e.ClientAddress, e.Outcome, e.Detail, seq+1, prev, hash)
			if err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			}
			// An event already stored is skipped and takes no position.
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			} else if n == 1 {
				seq, prev = seq+1, hash
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
	if q.TokenID != "" {
		where = append(where, "target_type = '"+AuditTargetToken+"' AND target_id = "+arg(q.TokenID))
	}
	if q.Outcome != "" {
		where = append(where, "outcome = "+arg(q.Outcome))
	}
	if q.ClientAddress != "" {
		where = append(where, "client_address = "+arg(q.ClientAddress))
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

// auditChainLock is the PostgreSQL advisory lock (a transaction lock) that
// serialises appends to the audit chain across every replica sharing the
// database; SQLite needs none: its one writer at a time takes the database
// lock when the transaction begins (_txlock=immediate).
const auditChainLock int64 = 0x6c6c6d7061756474 // "llmpaudt"

// lockAuditChain takes the audit chain for tx, until it ends, and returns
// the position and hash of its last event (0 and "" while it is empty).
func (s *Store) lockAuditChain(ctx context.Context, tx *sql.Tx) (seq int64, hash string, err error) {
	if s.dialect == DialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, auditChainLock); err != nil {
			return 0, "", fmt.Errorf("lock the audit chain: %w", err)
		}
	}
	err = tx.QueryRowContext(ctx,
		`SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("read the end of the audit chain: %w", err)
	}
	return seq, hash, nil
}

// AuditHash returns the hash the audit chain stores for e at position seq
// after an event whose hash is prev ("" for the first): the hex SHA-256 of
// prev, a newline, and the JSON array of seq and e's stored fields in
// column order (id, time in unix microseconds, action, actor, project id,
// target type and id, request id, client address, outcome, detail). Anyone
// holding an export can recompute it.
func AuditHash(prev string, seq int64, e AuditEvent) string {
	content, _ := json.Marshal([]any{seq, e.ID, toMicros(e.Time), e.Action, e.Actor, e.ProjectID,
		e.TargetType, e.TargetID, e.RequestID, e.ClientAddress, e.Outcome, e.Detail}) // strings and integers always marshal
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}

// AuditVerification is what [Store.VerifyAudit] found.
type AuditVerification struct {
	Checked   int64       // chained events checked, up to the first broken link
	Unchained int64       // events stored before the chain began (no position)
	Head      string      // the hash of the last event checked: record it elsewhere to detect a truncated log later
	Broken    *AuditBreak // the first broken link; nil when the whole chain holds
}

// AuditBreak is the first link of the audit chain that does not hold.
type AuditBreak struct {
	Seq    int64  // its position in the chain
	ID     string // the event stored there ("" when the position is missing)
	Reason string // what does not hold, e.g. "its content does not match its hash"
}

// auditVerifyBatch is how many events VerifyAudit reads at once.
const auditVerifyBatch = 1000

// VerifyAudit walks the audit chain from its first event and reports the
// first link that does not hold: a missing position (an event deleted, or
// taken out of the chain), an event whose prev_hash is not the hash of the
// one before it, or whose content (any field) no longer matches its hash.
// Deleting the newest events leaves a chain that holds: compare Head with
// one recorded earlier to see that.
func (s *Store) VerifyAudit(ctx context.Context) (AuditVerification, error) {
	var v AuditVerification
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events WHERE seq IS NULL`).Scan(&v.Unchained); err != nil {
		return v, fmt.Errorf("verify audit: %w", err)
	}
	type link struct {
		e              AuditEvent
		seq            int64
		prevHash, hash string
	}
	scan := func(row scanner) (link, error) {
		var (
			l       link
			micros  int64
			project sql.NullString
		)
		err := row.Scan(&l.e.ID, &micros, &l.e.Action, &l.e.Actor, &project, &l.e.TargetType, &l.e.TargetID,
			&l.e.RequestID, &l.e.ClientAddress, &l.e.Outcome, &l.e.Detail, &l.seq, &l.prevHash, &l.hash)
		l.e.Time = fromMicros(micros)
		l.e.ProjectID = project.String
		return l, err
	}
	var last int64
	for {
		links, err := queryAll(ctx, s.db, scan, `SELECT `+auditColumns+`, seq, prev_hash, hash FROM audit_events
			WHERE seq > $1 ORDER BY seq LIMIT $2`, last, auditVerifyBatch)
		if err != nil {
			return v, fmt.Errorf("verify audit: %w", err)
		}
		for _, l := range links {
			var reason string
			switch {
			case l.seq != last+1:
				v.Broken = &AuditBreak{Seq: last + 1, Reason: fmt.Sprintf("no event at this position (the next is at %d, event %s)", l.seq, l.e.ID)}
				return v, nil
			case l.prevHash != v.Head:
				reason = "its prev_hash is not the hash of the event before it"
			case AuditHash(v.Head, l.seq, l.e) != l.hash:
				reason = "its content does not match its hash"
			}
			if reason != "" {
				v.Broken = &AuditBreak{Seq: l.seq, ID: l.e.ID, Reason: reason}
				return v, nil
			}
			v.Checked++
			v.Head, last = l.hash, l.seq
		}
		if len(links) < auditVerifyBatch {
			return v, nil
		}
	}
}
