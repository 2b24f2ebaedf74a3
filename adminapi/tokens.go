package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

// tokenRecords is what the token handlers need of the store.
type tokenRecords interface {
	CreateToken(ctx context.Context, t store.Token) error
	GetToken(ctx context.Context, id string) (store.Token, error)
	ListTokensPage(ctx context.Context, projectID string, q store.PageQuery) ([]store.Token, string, error)
	UpdateToken(ctx context.Context, id string, u store.TokenUpdate) (store.Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time) (store.Token, error)
}

var _ tokenRecords = (*store.Store)(nil)

// Token is a proxy token as the API shows it. Token, the secret, is set
// only in the response that creates the token; it is never stored in clear and
// cannot be shown again.
type Token struct {
	ID           string       `json:"id"`
	Object       string       `json:"object"`
	ProjectID    string       `json:"project_id"`
	Name         string       `json:"name"`
	Prefix       string       `json:"prefix"`
	Active       bool         `json:"active"`
	Legacy       bool         `json:"legacy"`
	ExpiresAt    *string      `json:"expires_at"`
	MaxRequests  *int64       `json:"max_requests"`
	RequestCount int64        `json:"request_count"`
	CacheHits    int64        `json:"cache_hit_count"`
	LastUsedAt   *string      `json:"last_used_at"`
	RevokedAt    *string      `json:"revoked_at"`
	Limits       Limits       `json:"limits"`
	Rules        policy.Rules `json:"rules"`
	CreatedAt    string       `json:"created_at"`
	Token        string       `json:"token,omitempty"`
}

func tokenView(t store.Token) Token {
	return Token{
		ID:           t.ID,
		Object:       "proxy_token",
		ProjectID:    t.ProjectID,
		Name:         t.Name,
		Prefix:       t.Prefix,
		Active:       t.Active,
		Legacy:       t.Legacy,
		ExpiresAt:    optionalTimestamp(t.ExpiresAt),
		MaxRequests:  t.MaxRequests,
		RequestCount: t.RequestCount,
		CacheHits:    t.CacheHitCount,
		LastUsedAt:   optionalTimestamp(t.LastUsedAt),
		RevokedAt:    optionalTimestamp(t.RevokedAt),
		Limits:       limitsView(t.Limits),
		Rules:        t.Rules,
		CreatedAt:    timestamp(t.CreatedAt),
	}
}

type createTokenRequest struct {
	ProjectID   optional[string]        `json:"project_id"`
	Name        optional[string]        `json:"name"`
	ExpiresIn   optional[string]        `json:"expires_in"`
	ExpiresAt   optional[string]        `json:"expires_at"`
	MaxRequests optional[int64]         `json:"max_requests"`
	Limits      optional[limitsRequest] `json:"limits"`
	Rules       optional[rulesRequest]  `json:"rules"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req createTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	now := s.now().UTC()
	if !req.ProjectID.has() || req.ProjectID.Value == "" {
		writeError(w, r, invalid(codeMissingField, "project_id", "project_id is required."))
		return
	}
	if !validID(req.ProjectID.Value) {
		// No project can have it; the store is not asked.
		writeError(w, r, errNoSuchProject(req.ProjectID.Value))
		return
	}
	if err := checkName("name", req.Name.Value, true); err != nil {
		writeError(w, r, err)
		return
	}
	expiresAt, _, err := expiry{In: req.ExpiresIn, At: req.ExpiresAt}.resolve(now)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := checkMaxRequests(req.MaxRequests); err != nil {
		writeError(w, r, err)
		return
	}
	if err := validateLimits(req.Limits); err != nil {
		writeError(w, r, err)
		return
	}
	if err := validateRules(req.Rules, true); err != nil {
		writeError(w, r, err)
		return
	}

	secret, display := authz.NewToken()
	t := store.Token{
		ID:        ids.New("tok"),
		ProjectID: req.ProjectID.Value,
		Name:      req.Name.Value,
		Hash:      s.hasher.Hash(secret),
		Prefix:    display,
		Active:    true,
		ExpiresAt: expiresAt,
		Limits:    newLimits(req.Limits),
		Rules:     policy.Rules(req.Rules.Value),
		CreatedAt: now,
		UpdatedAt: now,
	}
	if req.MaxRequests.has() {
		t.MaxRequests = &req.MaxRequests.Value
	}
	if err := s.tokens.CreateToken(r.Context(), t); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// The URL is fine; what is missing is the project the body names.
			err = errNoSuchProject(t.ProjectID)
		} else {
			err = fmt.Errorf("create token for project %s: %w", t.ProjectID, err)
		}
		writeError(w, r, err)
		return
	}
	// Every replica forgets that the secret was unknown (authz remembers
	// unknown tokens for a few seconds), so the new token works at once.
	s.invalidate.InvalidateToken(t.ID)
	s.audit(r, store.AuditEvent{
		Action: store.AuditTokenCreate, ProjectID: t.ProjectID, TargetType: store.AuditTargetToken, TargetID: t.ID,
		Detail: auditFields(
			auditField{"name", req.Name.has()},
			auditField{"expires_at", t.ExpiresAt != nil},
			auditField{"max_requests", t.MaxRequests != nil},
			auditField{"limits", req.Limits.has()},
			auditField{"rules", req.Rules.has()},
		),
	})
	view := tokenView(t)
	view.Token = secret
	writeJSON(w, http.StatusCreated, view)
}

// errNoSuchProject is the 400 for a body whose project_id names no project:
// the route exists, the body is what is wrong.
func errNoSuchProject(id string) error {
	if !validID(id) {
		return invalid(codeNotFound, "project_id", "project_id names no project: project ids are letters, digits, '_' and '-', at most %d characters.", maxIDLen)
	}
	return invalid(codeNotFound, "project_id", "project_id %q names no project.", id)
}

// listTokens answers GET /manage/tokens?project_id=&limit=&cursor=: a page
// of the tokens (of one project, with project_id), oldest first.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	projectID := r.URL.Query().Get("project_id")
	if err := checkIDParam("project_id", projectID); err != nil {
		writeError(w, r, err)
		return
	}
	q, err := s.pageQuery(r, listTokens)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ts, next, err := s.tokens.ListTokensPage(r.Context(), projectID, q)
	if err != nil {
		writeError(w, r, listError(fmt.Sprintf("list tokens of project %q", projectID), err))
		return
	}
	writeJSON(w, http.StatusOK, listView(ts, s.cursors.seal(listTokens, next), tokenView))
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "token")
	if !ok {
		return
	}
	t, err := s.tokens.GetToken(r.Context(), id)
	if err != nil {
		writeError(w, r, tokenError(id, "get token", err))
		return
	}
	writeJSON(w, http.StatusOK, tokenView(t))
}

type updateTokenRequest struct {
	Name        optional[string]        `json:"name"`
	Active      optional[bool]          `json:"active"`
	ExpiresIn   optional[string]        `json:"expires_in"`
	ExpiresAt   optional[string]        `json:"expires_at"`
	MaxRequests optional[int64]         `json:"max_requests"`
	Limits      optional[limitsRequest] `json:"limits"`
	Rules       optional[rulesRequest]  `json:"rules"`
}

func (s *Server) updateToken(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "token")
	if !ok {
		return
	}
	var req updateTokenRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	u, err := req.update(s.now().UTC())
	if err != nil {
		writeError(w, r, err)
		return
	}
	reactivate := u.Active != nil && *u.Active
	changeLimits, needLimits := limitsChange(req.Limits)
	var cur store.Token
	if reactivate || needLimits {
		if cur, err = s.tokens.GetToken(r.Context(), id); err != nil {
			writeError(w, r, tokenError(id, "get token", err))
			return
		}
	}
	if reactivate && cur.RevokedAt != nil {
		// Deactivation (active=false) can be undone; revocation cannot.
		writeError(w, r, errReactivateRevoked(id))
		return
	}
	if changeLimits {
		// Members left out keep their current values; see updateProject
		// for the race this read allows.
		u.SetLimits, u.Limits = true, patchLimits(req.Limits, cur.Limits)
	}
	if u == (store.TokenUpdate{}) {
		s.getToken(w, r) // nothing to change
		return
	}
	t, err := s.tokens.UpdateToken(r.Context(), id, u)
	if err != nil {
		writeError(w, r, tokenError(id, "update token", err))
		return
	}
	if t.Active && t.RevokedAt != nil {
		// A revocation landed between the check above and the update: undo the
		// reactivation (RevokeToken keeps the first revocation time).
		_, err := s.tokens.RevokeToken(r.Context(), id, *t.RevokedAt)
		s.invalidate.InvalidateToken(id)
		if err != nil {
			writeError(w, r, tokenError(id, "re-revoke token", err))
			return
		}
		writeError(w, r, errReactivateRevoked(id))
		return
	}
	s.invalidate.InvalidateToken(id)
	s.audit(r, store.AuditEvent{
		Action: store.AuditTokenUpdate, ProjectID: t.ProjectID, TargetType: store.AuditTargetToken, TargetID: id,
		Detail: auditFields(
			auditField{"name", u.Name != nil},
			flagField("active", req.Active),
			auditField{"expires_at", u.SetExpiresAt},
			auditField{"max_requests", u.SetMaxRequests},
			auditField{"limits", u.SetLimits},
			auditField{"rules", u.Rules != nil},
		),
	})
	writeJSON(w, http.StatusOK, tokenView(t))
}

func errReactivateRevoked(id string) error {
	return invalid(codeInvalidValue, "active", "Cannot set active to true: token %s was revoked, and revocation is permanent. Issue a new token instead.", id)
}

// update validates the request and turns it into a store update.
func (req *updateTokenRequest) update(now time.Time) (store.TokenUpdate, error) {
	var u store.TokenUpdate
	if err := notNull("name", req.Name); err != nil {
		return u, err
	}
	if req.Name.Set {
		if err := checkName("name", req.Name.Value, true); err != nil {
			return u, err
		}
		u.Name = &req.Name.Value
	}
	if err := notNull("active", req.Active); err != nil {
		return u, err
	}
	if req.Active.Set {
		u.Active = &req.Active.Value
	}
	at, change, err := expiry{In: req.ExpiresIn, At: req.ExpiresAt}.resolve(now)
	if err != nil {
		return u, err
	}
	u.SetExpiresAt, u.ExpiresAt = change, at
	if err := checkMaxRequests(req.MaxRequests); err != nil {
		return u, err
	}
	if req.MaxRequests.Set {
		u.SetMaxRequests = true
		if !req.MaxRequests.Null {
			u.MaxRequests = &req.MaxRequests.Value
		}
	}
	if err := validateRules(req.Rules, true); err != nil {
		return u, err
	}
	if req.Rules.Set {
		r := policy.Rules(req.Rules.Value) // null: no rules of its own
		u.Rules = &r
	}
	return u, validateLimits(req.Limits)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "token")
	if !ok {
		return
	}
	t, err := s.tokens.RevokeToken(r.Context(), id, s.now().UTC())
	if err != nil {
		writeError(w, r, tokenError(id, "revoke token", err))
		return
	}
	s.invalidate.InvalidateToken(id)
	s.audit(r, store.AuditEvent{Action: store.AuditTokenRevoke, ProjectID: t.ProjectID, TargetType: store.AuditTargetToken, TargetID: id})
	writeJSON(w, http.StatusOK, tokenView(t))
}

// tokenError maps a store error about token id to what the client sees.
func tokenError(id, op string, err error) error { return storeError("token", id, op, err) }
