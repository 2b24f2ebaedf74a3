package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/redact"
	"github.com/llm-proxy/llm-proxy/store"
)

// projectRecords is what the project handlers need of the store.
type projectRecords interface {
	CreateProject(ctx context.Context, p store.Project) error
	GetProject(ctx context.Context, id string) (store.Project, error)
	ListProjectsPage(ctx context.Context, q store.PageQuery) ([]store.Project, string, error)
	UpdateProject(ctx context.Context, id string, u store.ProjectUpdate) (store.Project, error)
	DeleteProject(ctx context.Context, id string) error
	RevokeProjectTokens(ctx context.Context, projectID string, at time.Time) ([]string, error)
}

var _ projectRecords = (*store.Store)(nil)

// Project is a project as the API shows it. The OpenAI key is only ever
// the masked hint the store keeps; the sealed key never leaves the store layer.
type Project struct {
	ID               string       `json:"id"`
	Object           string       `json:"object"`
	Name             string       `json:"name"`
	OpenAIAPIKey     string       `json:"openai_api_key"`
	Active           bool         `json:"active"`
	Limits           Limits       `json:"limits"`
	MonthlyBudgetUSD *USD         `json:"monthly_budget_usd"`
	CachePOST        bool         `json:"cache_post"`
	AllowBackground  bool         `json:"allow_background"`
	AllowBatches     bool         `json:"allow_batches"`
	Capture          Capture      `json:"capture"`
	Rules            policy.Rules `json:"rules"`
	CreatedAt        string       `json:"created_at"`
	UpdatedAt        string       `json:"updated_at"`
}

func projectView(p store.Project) Project {
	return Project{
		ID:               p.ID,
		Object:           "project",
		Name:             p.Name,
		OpenAIAPIKey:     hintView(p.KeyHint),
		Active:           p.Active,
		Limits:           limitsView(p.Limits),
		MonthlyBudgetUSD: optionalUSD(p.MonthlyBudgetMicroUSD),
		CachePOST:        p.CachePOST,
		AllowBackground:  p.AllowBackground,
		AllowBatches:     p.AllowBatches,
		Capture:          captureView(p.Capture),
		Rules:            p.Rules,
		CreatedAt:        timestamp(p.CreatedAt),
		UpdatedAt:        timestamp(p.UpdatedAt),
	}
}

// Capture is a project's capture settings as the API shows them: the caps in
// force (the defaults when none was set) and the redaction patterns.
type Capture struct {
	Enabled          bool     `json:"enabled"`
	RequestMaxBytes  int      `json:"request_max_bytes"`
	ResponseMaxBytes int      `json:"response_max_bytes"`
	Redact           []string `json:"redact"`
}

func captureView(c policy.Capture) Capture {
	return Capture{Enabled: c.Enabled, RequestMaxBytes: c.RequestCap(), ResponseMaxBytes: c.ResponseCap(),
		Redact: append([]string{}, c.Redact...)}
}

// captureRequest is the capture object as a request sends it: it replaces
// the settings whole.
type captureRequest policy.Capture

func (c *captureRequest) UnmarshalJSON(b []byte) error {
	return decodeMember(b, "capture", (*policy.Capture)(c))
}

// validateCapture checks a capture object: caps in range, and redaction
// patterns that are presets or compile (the sidecar compiles the same list).
func validateCapture(o optional[captureRequest]) error {
	if !o.has() {
		return nil
	}
	var fe *policy.FieldError
	if err := policy.Capture(o.Value).Validate(redact.ValidatePattern); errors.As(err, &fe) {
		return invalid(codeInvalidValue, fe.Field, "%s: %v.", fe.Field, fe.Err)
	} else if err != nil {
		return invalid(codeInvalidValue, "capture", "capture: %v.", err)
	}
	return nil
}

// captureField is the audit detail of a capture change: whether capture is
// now on (the patterns themselves may name what a team hides, so they are
// not copied into the audit log).
func captureField(o optional[captureRequest]) auditField {
	return auditField{name: "capture=" + strconv.FormatBool(o.Value.Enabled), set: o.Set}
}

// timestamp formats t as RFC 3339 in UTC, to the second.
func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// optionalTimestamp is timestamp for nullable times.
func optionalTimestamp(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timestamp(*t)
	return &s
}

// projectRequest is the body of a project's POST or PATCH; on a PATCH, a
// member left out keeps its value.
type projectRequest struct {
	Name             optional[string]         `json:"name"`
	OpenAIAPIKey     optional[string]         `json:"openai_api_key"`
	Active           optional[bool]           `json:"active"`
	Limits           optional[limitsRequest]  `json:"limits"`
	MonthlyBudgetUSD optional[numberLiteral]  `json:"monthly_budget_usd"`
	CachePOST        optional[bool]           `json:"cache_post"`
	AllowBackground  optional[bool]           `json:"allow_background"`
	AllowBatches     optional[bool]           `json:"allow_batches"`
	Capture          optional[captureRequest] `json:"capture"`
	Rules            optional[rulesRequest]   `json:"rules"`
}

// createProjectRequest is the body of POST /manage/projects.
type createProjectRequest projectRequest

func (s *Server) createProject(w http.ResponseWriter, r *http.Request) {
	var req createProjectRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	budget, _, err := parseBudget(req.MonthlyBudgetUSD)
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := s.now().UTC()
	sealed, keyID := s.keys.Seal(req.OpenAIAPIKey.Value)
	p := store.Project{
		ID:                    ids.New("proj"),
		Name:                  req.Name.Value,
		KeyCiphertext:         sealed,
		KeyID:                 keyID,
		KeyHint:               maskKey(req.OpenAIAPIKey.Value),
		Active:                !req.Active.has() || req.Active.Value,
		Limits:                newLimits(req.Limits),
		MonthlyBudgetMicroUSD: budget,
		CachePOST:             req.CachePOST.has() && req.CachePOST.Value,
		AllowBackground:       !req.AllowBackground.has() || req.AllowBackground.Value,
		AllowBatches:          !req.AllowBatches.has() || req.AllowBatches.Value,
		Capture:               policy.Capture(req.Capture.Value),
		Rules:                 policy.Rules(req.Rules.Value),
		CreatedAt:             now,
		UpdatedAt:             now,
	}
	if err := s.projects.CreateProject(r.Context(), p); err != nil {
		writeError(w, r, fmt.Errorf("create project: %w", err))
		return
	}
	s.audit(r, store.AuditEvent{
		Action: store.AuditProjectCreate, ProjectID: p.ID, TargetType: store.AuditTargetProject, TargetID: p.ID,
		Detail: auditFields(
			auditField{"name", req.Name.Set},
			auditField{"openai_api_key", req.OpenAIAPIKey.Set},
			flagField("active", req.Active),
			auditField{"limits", req.Limits.has()},
			auditField{"monthly_budget_usd", req.MonthlyBudgetUSD.has()},
			auditField{"cache_post", req.CachePOST.Set},
			flagField("allow_background", req.AllowBackground),
			flagField("allow_batches", req.AllowBatches),
			captureField(req.Capture),
			auditField{"rules", req.Rules.has()},
		),
	})
	writeJSON(w, http.StatusCreated, projectView(p))
}

func (req createProjectRequest) validate() error {
	if !req.Name.has() {
		return invalid(codeMissingField, "name", "name is required.")
	}
	if err := checkName("name", req.Name.Value, false); err != nil {
		return err
	}
	if !req.OpenAIAPIKey.has() {
		return invalid(codeMissingField, "openai_api_key", "openai_api_key is required.")
	}
	if err := checkOpenAIKey("openai_api_key", req.OpenAIAPIKey.Value); err != nil {
		return err
	}
	return projectRequest(req).validateSwitchesAndLimits()
}

// validateSwitchesAndLimits checks the members a POST and a PATCH check
// alike: the switches, which may be left out but not null, and the limits.
func (req projectRequest) validateSwitchesAndLimits() error {
	if err := notNull("active", req.Active); err != nil {
		return err
	}
	if err := notNull("cache_post", req.CachePOST); err != nil {
		return err
	}
	if err := notNull("allow_background", req.AllowBackground); err != nil {
		return err
	}
	if err := notNull("allow_batches", req.AllowBatches); err != nil {
		return err
	}
	if err := validateCapture(req.Capture); err != nil {
		return err
	}
	if err := validateRules(req.Rules, false); err != nil {
		return err
	}
	return validateLimits(req.Limits)
}

// listProjects answers GET /manage/projects?limit=&cursor=: a page of the
// projects, oldest first.
func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) {
	q, err := s.pageQuery(r, listProjects)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ps, next, err := s.projects.ListProjectsPage(r.Context(), q)
	if err != nil {
		writeError(w, r, listError("list projects", err))
		return
	}
	writeJSON(w, http.StatusOK, listView(ps, s.cursors.seal(listProjects, next), projectView))
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "project")
	if !ok {
		return
	}
	p, err := s.projects.GetProject(r.Context(), id)
	if err != nil {
		writeError(w, r, projectError(id, "get project", err))
		return
	}
	writeJSON(w, http.StatusOK, projectView(p))
}

// updateProjectRequest is the body of PATCH /manage/projects/{id}.
type updateProjectRequest projectRequest

func (req updateProjectRequest) validate() error {
	if err := notNull("name", req.Name); err != nil {
		return err
	}
	if req.Name.Set {
		if err := checkName("name", req.Name.Value, false); err != nil {
			return err
		}
	}
	if err := notNull("openai_api_key", req.OpenAIAPIKey); err != nil {
		return err
	}
	if req.OpenAIAPIKey.Set {
		if err := checkOpenAIKey("openai_api_key", req.OpenAIAPIKey.Value); err != nil {
			return err
		}
	}
	return projectRequest(req).validateSwitchesAndLimits()
}

func (s *Server) updateProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "project")
	if !ok {
		return
	}
	var req updateProjectRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	var u store.ProjectUpdate
	if req.Name.Set {
		u.Name = &req.Name.Value
	}
	if req.Active.Set {
		u.Active = &req.Active.Value
	}
	if req.CachePOST.Set {
		u.CachePOST = &req.CachePOST.Value
	}
	if req.AllowBackground.Set {
		u.AllowBackground = &req.AllowBackground.Value
	}
	if req.AllowBatches.Set {
		u.AllowBatches = &req.AllowBatches.Value
	}
	if req.Capture.Set {
		c := policy.Capture(req.Capture.Value) // null: the zero value, capture off
		u.Capture = &c
	}
	if req.Rules.Set {
		r := policy.Rules(req.Rules.Value) // null: no rules
		u.Rules = &r
	}
	if req.OpenAIAPIKey.Set {
		sealed, keyID := s.keys.Seal(req.OpenAIAPIKey.Value)
		hint := maskKey(req.OpenAIAPIKey.Value)
		u.KeyCiphertext, u.KeyID, u.KeyHint = &sealed, &keyID, &hint
	}
	budget, change, err := parseBudget(req.MonthlyBudgetUSD)
	if err != nil {
		writeError(w, r, err)
		return
	}
	u.SetMonthlyBudget, u.MonthlyBudgetMicroUSD = change, budget
	if change, needCurrent := limitsChange(req.Limits); change {
		// Members left out keep their values, so those are read first. Two
		// PATCHes racing on different members of one project's limits may
		// lose one change (the last write carries all three); sending all
		// three members, or null, does not read and has no such race.
		var cur store.Limits
		if needCurrent {
			p, err := s.projects.GetProject(r.Context(), id)
			if err != nil {
				writeError(w, r, projectError(id, "get project", err))
				return
			}
			cur = p.Limits
		}
		u.SetLimits, u.Limits = true, patchLimits(req.Limits, cur)
	}
	if u == (store.ProjectUpdate{}) {
		s.getProject(w, r) // nothing to change
		return
	}
	p, err := s.projects.UpdateProject(r.Context(), id, u)
	if err != nil {
		writeError(w, r, projectError(id, "update project", err))
		return
	}
	s.invalidate.InvalidateProject(id)
	s.audit(r, store.AuditEvent{
		Action: store.AuditProjectUpdate, ProjectID: id, TargetType: store.AuditTargetProject, TargetID: id,
		Detail: auditFields(
			auditField{"name", u.Name != nil},
			auditField{"openai_api_key", u.KeyCiphertext != nil},
			flagField("active", req.Active),
			auditField{"limits", u.SetLimits},
			auditField{"monthly_budget_usd", u.SetMonthlyBudget},
			auditField{"cache_post", u.CachePOST != nil},
			flagField("allow_background", req.AllowBackground),
			flagField("allow_batches", req.AllowBatches),
			captureField(req.Capture),
			auditField{"rules", u.Rules != nil},
		),
	})
	writeJSON(w, http.StatusOK, projectView(p))
}

func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "project")
	if !ok {
		return
	}
	if err := s.projects.DeleteProject(r.Context(), id); err != nil {
		writeError(w, r, projectError(id, "delete project", err))
		return
	}
	s.invalidate.InvalidateProject(id)
	s.audit(r, store.AuditEvent{Action: store.AuditProjectDelete, ProjectID: id, TargetType: store.AuditTargetProject, TargetID: id})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) revokeProjectTokens(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "project")
	if !ok {
		return
	}
	ids, err := s.projects.RevokeProjectTokens(r.Context(), id, s.now().UTC())
	if err != nil {
		writeError(w, r, projectError(id, "revoke project tokens", err))
		return
	}
	// One project-wide invalidation covers every token just revoked (and any
	// issued meanwhile) without a call per token.
	s.invalidate.InvalidateProject(id)
	s.audit(r, store.AuditEvent{
		Action: store.AuditProjectTokensRevoke, ProjectID: id, TargetType: store.AuditTargetProject, TargetID: id,
		Detail: "revoked: " + strconv.Itoa(len(ids)),
	})
	writeJSON(w, http.StatusOK, revokedJSON{Revoked: len(ids)})
}

// revokedJSON answers a project-wide revocation.
type revokedJSON struct {
	Revoked int `json:"revoked"`
}

// projectError maps a store error about project id to what the client sees.
func projectError(id, op string, err error) error { return storeError("project", id, op, err) }
