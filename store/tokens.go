package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// tokenColumns is the column list every token query selects, in the order
// [scanToken] reads.
const tokenColumns = "id, project_id, name, hash, prefix, active, expires_at, max_requests, " +
	"request_count, cache_hit_count, last_used_at, revoked_at, " +
	"requests_per_minute, tokens_per_minute, max_concurrent, created_at, updated_at, legacy, rules"

func scanToken(row scanner) (Token, error) {
	var (
		t                                       Token
		expires, maxRequests, lastUsed, revoked sql.NullInt64
		rpm, tpm, conc                          sql.NullInt64
		created, updated                        int64
		rules                                   string
	)
	err := row.Scan(&t.ID, &t.ProjectID, &t.Name, &t.Hash, &t.Prefix, &t.Active,
		&expires, &maxRequests, &t.RequestCount, &t.CacheHitCount, &lastUsed, &revoked,
		&rpm, &tpm, &conc, &created, &updated, &t.Legacy, &rules)
	if err != nil {
		return Token{}, err
	}
	if err := decodeDoc(rules, &t.Rules); err != nil {
		return Token{}, fmt.Errorf("token %s: rules: %w", t.ID, err)
	}
	t.ExpiresAt = fromNullMicros(expires)
	t.MaxRequests = fromNullInt64(maxRequests)
	t.LastUsedAt = fromNullMicros(lastUsed)
	t.RevokedAt = fromNullMicros(revoked)
	t.Limits = Limits{RequestsPerMinute: fromNullInt64(rpm), TokensPerMinute: fromNullInt64(tpm), MaxConcurrent: fromNullInt64(conc)}
	t.CreatedAt = fromMicros(created)
	t.UpdatedAt = fromMicros(updated)
	return t, nil
}

// CreateToken inserts t, counters included. A zero CreatedAt is set to now
// and a zero UpdatedAt to CreatedAt. It returns [ErrNotFound] if t.ProjectID
// names no project and [ErrConflict] if the id or the hash is taken.
func (s *Store) CreateToken(ctx context.Context, t Token) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.now()
	}
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = t.CreatedAt
	}
	// The foreign key, not a prior SELECT, detects a missing project, so a
	// project deleted concurrently cannot slip in between check and insert.
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO tokens (`+tokenColumns+`)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
		t.ID, t.ProjectID, t.Name, t.Hash, t.Prefix, t.Active,
		nullMicros(t.ExpiresAt), nullInt64(t.MaxRequests), t.RequestCount, t.CacheHitCount,
		nullMicros(t.LastUsedAt), nullMicros(t.RevokedAt),
		nullInt64(t.Limits.RequestsPerMinute), nullInt64(t.Limits.TokensPerMinute), nullInt64(t.Limits.MaxConcurrent),
		toMicros(t.CreatedAt), toMicros(t.UpdatedAt), t.Legacy, encodeDoc(t.Rules))
	if isForeignKeyViolation(err) {
		return fmt.Errorf("create token %s: project %s: %w", t.ID, t.ProjectID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, conflict(err))
	}
	return nil
}

// GetToken returns the token with the given public id, or [ErrNotFound].
func (s *Store) GetToken(ctx context.Context, id string) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx,
		`SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
	if err != nil {
		return Token{}, fmt.Errorf("get token %s: %w", id, notFound(err))
	}
	return t, nil
}

// GetTokenByHash returns the token whose secret has the given HMAC, or
// [ErrNotFound]. The hash is left out of errors.
func (s *Store) GetTokenByHash(ctx context.Context, hash string) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx,
		`SELECT `+tokenColumns+` FROM tokens WHERE hash = $1`, hash))
	if err != nil {
		return Token{}, fmt.Errorf("get token by hash: %w", notFound(err))
	}
	return t, nil
}

// ListTokens returns the tokens of the project, or of every project when
// projectID is "", oldest first (ties broken by id). An unknown project has
// no tokens: the result is empty, not [ErrNotFound]. It is never nil.
func (s *Store) ListTokens(ctx context.Context, projectID string) ([]Token, error) {
	q := `SELECT ` + tokenColumns + ` FROM tokens ORDER BY created_at, id`
	var args []any
	if projectID != "" {
		q = `SELECT ` + tokenColumns + ` FROM tokens WHERE project_id = $1 ORDER BY created_at, id`
		args = append(args, projectID)
	}
	tokens, err := queryAll(ctx, s.db, scanToken, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens of project %q: %w", projectID, err)
	}
	return tokens, nil
}

// ListTokensPage returns one page of the tokens of the project, or of
// every project when projectID is "", oldest first (ties broken by id), and
// the cursor of the next page, "" when this page is the last. Paging works
// as in [Store.ListProjectsPage]; an unknown project has no tokens. The
// page is never nil.
func (s *Store) ListTokensPage(ctx context.Context, projectID string, q PageQuery) ([]Token, string, error) {
	var (
		conds []string
		args  []any
	)
	if projectID != "" {
		conds, args = []string{"project_id = $1"}, []any{projectID}
	}
	where, pageArgs, limit, err := pageWhere(q, conds...)
	if err != nil {
		return nil, "", fmt.Errorf("list tokens of project %q: %w", projectID, err)
	}
	args = append(args, pageArgs...)
	tokens, err := queryAll(ctx, s.db, scanToken,
		`SELECT `+tokenColumns+` FROM tokens`+where+` ORDER BY created_at, id LIMIT `+strconv.Itoa(limit+1), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list tokens of project %q: %w", projectID, err)
	}
	tokens, next := cutPage(tokens, limit, func(t Token) (time.Time, string) { return t.CreatedAt, t.ID })
	return tokens, next, nil
}

// UpdateToken applies u (see [TokenUpdate]), sets UpdatedAt to now and
// returns the updated token, or [ErrNotFound].
func (s *Store) UpdateToken(ctx context.Context, id string, u TokenUpdate) (Token, error) {
	var a assignments
	if u.Name != nil {
		a.set("name", *u.Name)
	}
	if u.Active != nil {
		a.set("active", *u.Active)
	}
	if u.SetExpiresAt {
		a.set("expires_at", nullMicros(u.ExpiresAt))
	}
	if u.SetMaxRequests {
		a.set("max_requests", nullInt64(u.MaxRequests))
	}
	if u.SetLimits {
		a.setLimits(u.Limits)
	}
	if u.Rules != nil {
		a.set("rules", encodeDoc(*u.Rules))
	}
	a.set("updated_at", toMicros(s.now()))
	q, args := a.update("tokens", id, tokenColumns)
	t, err := scanToken(s.db.QueryRowContext(ctx, q, args...))
	if err != nil {
		return Token{}, fmt.Errorf("update token %s: %w", id, notFound(err))
	}
	return t, nil
}

// RevokeToken deactivates the token and records at as RevokedAt unless it
// was revoked before (the first revocation time is kept). It returns the
// updated token, or [ErrNotFound]. Revoking twice is not an error.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx,
		`UPDATE tokens SET active = FALSE, revoked_at = COALESCE(revoked_at, $2), updated_at = $3
		 WHERE id = $1 RETURNING `+tokenColumns,
		id, toMicros(at), toMicros(s.now())))
	if err != nil {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, notFound(err))
	}
	return t, nil
}

// RevokeProjectTokens revokes every token of the project in one transaction,
// as [Store.RevokeToken] does each, and returns, sorted, the ids of those
// that were active until now: the ones whose cached validations must be
// dropped. It returns [ErrNotFound] if the project does not exist.
func (s *Store) RevokeProjectTokens(ctx context.Context, projectID string, at time.Time) ([]string, error) {
	var ids []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := projectExists(ctx, tx, projectID); err != nil {
			return err
		}
		revokedAt, now := toMicros(at), toMicros(s.now())
		rows, err := tx.QueryContext(ctx,
			`UPDATE tokens SET active = FALSE, revoked_at = COALESCE(revoked_at, $2), updated_at = $3
			 WHERE project_id = $1 AND active RETURNING id`,
			projectID, revokedAt, now)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// Tokens already inactive but never revoked (paused) are revoked
		// too, so none can be re-activated; they were not usable, so they
		// are not reported.
		_, err = tx.ExecContext(ctx,
			`UPDATE tokens SET revoked_at = $2, updated_at = $3
			 WHERE project_id = $1 AND revoked_at IS NULL`,
			projectID, revokedAt, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("revoke tokens of project %s: %w", projectID, err)
	}
	slices.Sort(ids)
	return ids, nil
}

// AddTokenUsage adds each entry's Requests and CacheHits to its token's
// counters and moves LastUsedAt forward to the entry's (a zero LastUsedAt
// leaves it alone; an older one never moves it back), all in one
// transaction. It is the batched flush of counters kept in memory on the
// request path, so it is one prepared UPDATE per entry. Entries for tokens
// that no longer exist are skipped: a token deleted since it was used is
// not an error. UpdatedAt is not touched; usage is not an edit.
func (s *Store) AddTokenUsage(ctx context.Context, usage []TokenUsage) error {
	if len(usage) == 0 {
		return nil
	}
	// Rows are locked in id order, so that two replicas flushing overlapping
	// batches at once cannot deadlock on PostgreSQL.
	usage = slices.SortedFunc(slices.Values(usage), func(a, b TokenUsage) int {
		return cmp.Compare(a.TokenID, b.TokenID)
	})
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx,
			`UPDATE tokens SET
			   request_count = request_count + $2,
			   cache_hit_count = cache_hit_count + $3,
			   last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $4
			                       THEN $4 ELSE last_used_at END
			 WHERE id = $1`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, u := range usage {
			var lastUsed *time.Time
			if !u.LastUsedAt.IsZero() {
				lastUsed = &u.LastUsedAt
			}
			if _, err := stmt.ExecContext(ctx, u.TokenID, u.Requests, u.CacheHits, nullMicros(lastUsed)); err != nil {
				return fmt.Errorf("token %s: %w", u.TokenID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add token usage (%d entries): %w", len(usage), err)
	}
	return nil
}
