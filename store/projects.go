package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// projectColumns is the column list every project query selects, in the
// order [scanProject] reads.
const projectColumns = "id, name, key_ciphertext, key_id, key_hint, active, " +
	"requests_per_minute, tokens_per_minute, max_concurrent, monthly_budget_micro_usd, cache_post, " +
	"allow_background, allow_batches, capture, rules, created_at, updated_at"

func scanProject(row scanner) (Project, error) {
	var (
		p                Project
		rpm, tpm, conc   sql.NullInt64
		budget           sql.NullInt64
		created, updated int64
		capture, rules   string
	)
	err := row.Scan(&p.ID, &p.Name, &p.KeyCiphertext, &p.KeyID, &p.KeyHint, &p.Active,
		&rpm, &tpm, &conc, &budget, &p.CachePOST, &p.AllowBackground, &p.AllowBatches, &capture, &rules, &created, &updated)
	if err != nil {
		return Project{}, err
	}
	if err := decodeDoc(capture, &p.Capture); err != nil {
		return Project{}, fmt.Errorf("project %s: capture settings: %w", p.ID, err)
	}
	if err := decodeDoc(rules, &p.Rules); err != nil {
		return Project{}, fmt.Errorf("project %s: rules: %w", p.ID, err)
	}
	p.Limits = Limits{RequestsPerMinute: fromNullInt64(rpm), TokensPerMinute: fromNullInt64(tpm), MaxConcurrent: fromNullInt64(conc)}
	p.MonthlyBudgetMicroUSD = fromNullInt64(budget)
	p.CreatedAt = fromMicros(created)
	p.UpdatedAt = fromMicros(updated)
	return p, nil
}

// CreateProject inserts p. A zero CreatedAt is set to now and a zero
// UpdatedAt to CreatedAt; every other field is stored as given (the
// AllowBackground and AllowBatches flags included: false refuses). It
// returns [ErrConflict] if the id is taken.
func (s *Store) CreateProject(ctx context.Context, p Project) error {
	if p.CreatedAt.IsZero() {
		p.CreatedAt = s.now()
	}
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = p.CreatedAt
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO projects (`+projectColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		p.ID, p.Name, p.KeyCiphertext, p.KeyID, p.KeyHint, p.Active,
		nullInt64(p.Limits.RequestsPerMinute), nullInt64(p.Limits.TokensPerMinute), nullInt64(p.Limits.MaxConcurrent),
		nullInt64(p.MonthlyBudgetMicroUSD), p.CachePOST, p.AllowBackground, p.AllowBatches, encodeDoc(p.Capture), encodeDoc(p.Rules),
		toMicros(p.CreatedAt), toMicros(p.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create project %s: %w", p.ID, conflict(err))
	}
	return nil
}

// GetProject returns the project with the given id, or [ErrNotFound].
func (s *Store) GetProject(ctx context.Context, id string) (Project, error) {
	p, err := scanProject(s.db.QueryRowContext(ctx,
		`SELECT `+projectColumns+` FROM projects WHERE id = $1`, id))
	if err != nil {
		return Project{}, fmt.Errorf("get project %s: %w", id, notFound(err))
	}
	return p, nil
}

// ListProjects returns every project, oldest first (ties broken by id).
// The result is never nil.
func (s *Store) ListProjects(ctx context.Context) ([]Project, error) {
	projects, err := queryAll(ctx, s.db, scanProject,
		`SELECT `+projectColumns+` FROM projects ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return projects, nil
}

// ListProjectsPage returns one page of the projects, oldest first (ties
// broken by id), and the cursor of the next page, "" when this page is the
// last. The page is never nil. Pages are cut by position (keyset on
// creation time and id), so a walk from the first page to the last
// returns every project that existed throughout it exactly once. A cursor
// ListProjectsPage did not return is [ErrInvalidCursor].
func (s *Store) ListProjectsPage(ctx context.Context, q PageQuery) ([]Project, string, error) {
	where, args, limit, err := pageWhere(q)
	if err != nil {
		return nil, "", fmt.Errorf("list projects: %w", err)
	}
	projects, err := queryAll(ctx, s.db, scanProject,
		`SELECT `+projectColumns+` FROM projects`+where+` ORDER BY created_at, id LIMIT `+strconv.Itoa(limit+1), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list projects: %w", err)
	}
	projects, next := cutPage(projects, limit, func(p Project) (time.Time, string) { return p.CreatedAt, p.ID })
	return projects, next, nil
}

// pageWhere reads q for a list kept in (created_at, id) order: the WHERE
// clause (with a leading space, or "") and arguments that start after its
// cursor, and the page size.
func pageWhere(q PageQuery, conds ...string) (where string, args []any, limit int, err error) {
	limit = q.Limit
	switch {
	case limit == 0:
		limit = DefaultPageLimit
	case limit < 0 || limit > MaxPageLimit:
		return "", nil, 0, fmt.Errorf("limit %d is not between 1 and %d", q.Limit, MaxPageLimit)
	}
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return "", nil, 0, err
		}
		// Placeholders after those of conds, which the caller numbers from $1.
		n := len(conds)
		conds = append(conds, "(created_at, id) > ($"+strconv.Itoa(n+1)+", $"+strconv.Itoa(n+2)+")")
		args = append(args, at, id)
	}
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	return where, args, limit, nil
}

// UpdateProject applies u (see [ProjectUpdate]), sets UpdatedAt to now and
// returns the updated project, or [ErrNotFound]. KeyCiphertext and KeyID
// must be given together: a ciphertext recorded under the wrong key id could
// never be opened again.
func (s *Store) UpdateProject(ctx context.Context, id string, u ProjectUpdate) (Project, error) {
	if (u.KeyCiphertext == nil) != (u.KeyID == nil) {
		return Project{}, fmt.Errorf("update project %s: key ciphertext and key id must change together", id)
	}
	var a assignments
	if u.Name != nil {
		a.set("name", *u.Name)
	}
	if u.KeyCiphertext != nil {
		a.set("key_ciphertext", *u.KeyCiphertext)
		a.set("key_id", *u.KeyID)
	}
	if u.KeyHint != nil {
		a.set("key_hint", *u.KeyHint)
	}
	if u.Active != nil {
		a.set("active", *u.Active)
	}
	if u.SetLimits {
		a.setLimits(u.Limits)
	}
	if u.SetMonthlyBudget {
		a.set("monthly_budget_micro_usd", nullInt64(u.MonthlyBudgetMicroUSD))
	}
	if u.CachePOST != nil {
		a.set("cache_post", *u.CachePOST)
	}
	if u.AllowBackground != nil {
		a.set("allow_background", *u.AllowBackground)
	}
	if u.AllowBatches != nil {
		a.set("allow_batches", *u.AllowBatches)
	}
	if u.Capture != nil {
		a.set("capture", encodeDoc(*u.Capture))
	}
	if u.Rules != nil {
		a.set("rules", encodeDoc(*u.Rules))
	}
	a.set("updated_at", toMicros(s.now()))
	q, args := a.update("projects", id, projectColumns)
	p, err := scanProject(s.db.QueryRowContext(ctx, q, args...))
	if err != nil {
		return Project{}, fmt.Errorf("update project %s: %w", id, notFound(err))
	}
	return p, nil
}

// DeleteProject deletes the project and all its tokens in one transaction,
// or returns [ErrNotFound]. The project's usage roll-up is kept: it is
// billing history, still readable with [Store.ProjectUsage].
func (s *Store) DeleteProject(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE project_id = $1`, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM projects WHERE id = $1`, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete project %s: %w", id, err)
	}
	return nil
}

// projectExists returns [ErrNotFound] if there is no project with the id.
func projectExists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM projects WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("project %s: %w", id, ErrNotFound)
	}
	return err
}

// encodeDoc stores a policy document (policy.Capture, policy.Rules) as JSON
// text; a zero document, what every row holds until someone sets one, is
// stored as "".
func encodeDoc[T any](v T) string {
	var zero T
	if reflect.DeepEqual(v, zero) {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // policy documents hold only JSON-encodable values
	}
	if string(b) == "{}" {
		return ""
	}
	return string(b)
}

// decodeDoc reads what encodeDoc stored into v; "" leaves it zero.
func decodeDoc[T any](s string, v *T) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}
