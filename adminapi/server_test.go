package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/store"
)

const (
	rawKey1 = "sk-proj-FIRSTkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwxyz"
	rawKey2 = "sk-proj-SECONDkeyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB9876"
)

var secretPattern = regexp.MustCompile(`^llmp_[A-Za-z0-9_-]{43}$`)

func TestAuth(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		name   string
		auth   string
		noAuth bool
		path   string
		want   int
	}{
		{name: "missing", noAuth: true, path: "/manage/projects", want: 401},
		{name: "wrong token", auth: "Bearer not-the-token", path: "/manage/projects", want: 401},
		{name: "prefix of the token", auth: "Bearer " + testManagementToken[:10], path: "/manage/projects", want: 401},
		{name: "token plus extra", auth: "Bearer " + testManagementToken + "x", path: "/manage/projects", want: 401},
		{name: "wrong scheme", auth: "Basic " + testManagementToken, path: "/manage/projects", want: 401},
		{name: "scheme only", auth: "Bearer", path: "/manage/projects", want: 401},
		{name: "empty token", auth: "Bearer ", path: "/manage/projects", want: 401},
		{name: "unknown route unauthenticated", noAuth: true, path: "/manage/nope", want: 401},
		{name: "outside /manage/ unauthenticated", noAuth: true, path: "/v1/models", want: 401},
		{name: "openapi document unauthenticated", noAuth: true, path: "/manage/openapi.yaml", want: 401},
		{name: "right token", path: "/manage/projects", want: 200},
		{name: "scheme is case-insensitive", auth: "bearer " + testManagementToken, path: "/manage/projects", want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: "GET", path: tc.path, auth: tc.auth, noAuth: tc.noAuth})
			if tc.want != 401 {
				wantStatus(t, out, tc.want)
				return
			}
			wantError(t, out, 401, "invalid_request_error", "invalid_api_key", "")
			if got := out.header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q, want Bearer", got)
			}
		})
	}
	if h.responsesContaining(testManagementToken) != 0 {
		t.Error("a response contains the management token")
	}
}

func TestProjectLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()

	// Create; active defaults to true, the key comes back masked.
	out := h.do(req{method: "POST", path: "/manage/projects", body: `{"name":"Team A","openai_api_key":"` + rawKey1 + `"}`})
	wantStatus(t, out, 201)
	id := out.body["id"].(string)
	if !strings.HasPrefix(id, "proj_") {
		t.Errorf("id = %q, want proj_…", id)
	}
	want := map[string]any{
		"id": id, "object": "project", "name": "Team A", "openai_api_key": authz.Mask(rawKey1),
		"active": true, "limits": noLimits(), "monthly_budget_usd": nil, "cache_post": false,
		"allow_background": true, "allow_batches": true,
		"created_at": h.now.Format(time.RFC3339), "updated_at": h.now.Format(time.RFC3339),
	}
	if !mapsEqual(out.body, want) {
		t.Errorf("created project = %v, want %v", out.body, want)
	}
	stored, err := h.store.GetProject(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if key, err := h.keys.Open(stored.KeyCiphertext, stored.KeyID); err != nil || key != rawKey1 {
		t.Errorf("stored key opens to %q, %v; want the raw key", key, err)
	}
	if strings.Contains(stored.KeyCiphertext, rawKey1) {
		t.Error("key stored in clear")
	}

	// Created inactive on request.
	out = h.do(req{method: "POST", path: "/manage/projects", body: `{"name":"Team B","openai_api_key":"` + rawKey2 + `","active":false}`})
	wantStatus(t, out, 201)
	idB := out.body["id"].(string)
	if out.body["active"] != false {
		t.Errorf("active = %v, want false", out.body["active"])
	}

	out = h.do(req{method: "GET", path: "/manage/projects/" + id})
	wantStatus(t, out, 200)
	if !mapsEqual(out.body, want) {
		t.Errorf("got project = %v, want %v", out.body, want)
	}

	out = h.do(req{method: "GET", path: "/manage/projects"})
	wantStatus(t, out, 200)
	if out.body["object"] != "list" || len(out.body["data"].([]any)) != 2 {
		t.Errorf("list = %s", out.raw)
	}
	if tokens, projects := h.inv.take(); len(tokens)+len(projects) != 0 {
		t.Errorf("reads invalidated caches: %v %v", tokens, projects)
	}

	t.Run("patch name", func(t *testing.T) {
		out := h.do(req{method: "PATCH", path: "/manage/projects/" + id, body: `{"name":"Team A2"}`})
		wantStatus(t, out, 200)
		if out.body["name"] != "Team A2" || out.body["openai_api_key"] != authz.Mask(rawKey1) {
			t.Errorf("patched = %s", out.raw)
		}
		wantInvalidated(t, h, nil, []string{id})
	})
	t.Run("rotate key", func(t *testing.T) {
		out := h.do(req{method: "PATCH", path: "/manage/projects/" + id, body: `{"openai_api_key":"` + rawKey2 + `"}`})
		wantStatus(t, out, 200)
		if out.body["openai_api_key"] != authz.Mask(rawKey2) {
			t.Errorf("openai_api_key = %v, want %s", out.body["openai_api_key"], authz.Mask(rawKey2))
		}
		p, err := h.store.GetProject(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if key, err := h.keys.Open(p.KeyCiphertext, p.KeyID); err != nil || key != rawKey2 {
			t.Errorf("re-sealed key opens to %q, %v", key, err)
		}
		if p.KeyCiphertext == stored.KeyCiphertext {
			t.Error("ciphertext unchanged after rotation")
		}
		wantInvalidated(t, h, nil, []string{id})
	})
	t.Run("deactivate", func(t *testing.T) {
		out := h.do(req{method: "PATCH", path: "/manage/projects/" + id, body: `{"active":false}`})
		wantStatus(t, out, 200)
		if out.body["active"] != false {
			t.Errorf("active = %v", out.body["active"])
		}
		wantInvalidated(t, h, nil, []string{id})
	})
	t.Run("empty patch changes nothing", func(t *testing.T) {
		out := h.do(req{method: "PATCH", path: "/manage/projects/" + id, body: `{}`})
		wantStatus(t, out, 200)
		if out.body["name"] != "Team A2" || out.body["active"] != false {
			t.Errorf("after empty patch: %s", out.raw)
		}
		wantInvalidated(t, h, nil, nil)
	})
	t.Run("delete", func(t *testing.T) {
		tok := h.createToken(map[string]any{"project_id": id})
		out := h.do(req{method: "DELETE", path: "/manage/projects/" + id})
		wantStatus(t, out, 204)
		if len(out.raw) != 0 {
			t.Errorf("204 with body %q", out.raw)
		}
		wantInvalidated(t, h, nil, []string{id})
		wantError(t, h.do(req{method: "GET", path: "/manage/projects/" + id}), 404, "invalid_request_error", "not_found", "")
		wantError(t, h.do(req{method: "GET", path: "/manage/tokens/" + tok.body["id"].(string)}), 404, "invalid_request_error", "not_found", "")
		wantError(t, h.do(req{method: "DELETE", path: "/manage/projects/" + id}), 404, "invalid_request_error", "not_found", "")
		h.inv.take()
		out = h.do(req{method: "GET", path: "/manage/projects"})
		if data := out.body["data"].([]any); len(data) != 1 || data[0].(map[string]any)["id"] != idB {
			t.Errorf("after delete, list = %s", out.raw)
		}
	})

	for _, key := range []string{rawKey1, rawKey2} {
		if n := h.responsesContaining(key); n != 0 {
			t.Errorf("a raw OpenAI key appears in %d responses", n)
		}
		if strings.Contains(h.logs.String(), key) {
			t.Error("a raw OpenAI key appears in the log")
		}
	}
}

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	projectID := h.createProject("Team", rawKey1)
	otherProject := h.createProject("Other", rawKey2)

	// Issue with a relative expiry in days and a cap.
	created := h.createToken(map[string]any{"project_id": projectID, "name": "ci", "expires_in": "30d", "max_requests": 5})
	id := created.body["id"].(string)
	secret, _ := created.body["token"].(string)
	if !secretPattern.MatchString(secret) {
		t.Fatalf("token = %q, not a proxy token", secret)
	}
	wantToken := map[string]any{
		"id": id, "object": "proxy_token", "project_id": projectID, "name": "ci",
		"prefix": secret[:len(authz.TokenPrefix)+4], "active": true,
		"expires_at":   h.now.Add(30 * 24 * time.Hour).Format(time.RFC3339),
		"max_requests": float64(5), "request_count": float64(0), "cache_hit_count": float64(0),
		"last_used_at": nil, "revoked_at": nil, "limits": noLimits(), "created_at": h.now.Format(time.RFC3339),
	}
	gotNoSecret := maps.Clone(created.body)
	delete(gotNoSecret, "token")
	if !mapsEqual(gotNoSecret, wantToken) {
		t.Errorf("created token = %v, want %v", gotNoSecret, wantToken)
	}
	stored, err := h.store.GetToken(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Hash != h.hasher.Hash(secret) {
		t.Error("stored hash is not the HMAC of the returned secret")
	}

	// Issue with an absolute expiry, and one that never expires.
	at := h.now.Add(48 * time.Hour).Format(time.RFC3339)
	abs := h.createToken(map[string]any{"project_id": projectID, "expires_at": at})
	if abs.body["expires_at"] != at || abs.body["max_requests"] != nil || abs.body["name"] != "" {
		t.Errorf("absolute-expiry token = %s", abs.raw)
	}
	forever := h.createToken(map[string]any{"project_id": otherProject, "expires_in": "720h", "max_requests": nil})
	if forever.body["expires_at"] != h.now.Add(720*time.Hour).Format(time.RFC3339) {
		t.Errorf("720h token expires_at = %v", forever.body["expires_at"])
	}
	never := h.createToken(map[string]any{"project_id": otherProject})
	if never.body["expires_at"] != nil {
		t.Errorf("token without expiry has expires_at %v", never.body["expires_at"])
	}
	secrets := []string{secret, abs.body["token"].(string), forever.body["token"].(string), never.body["token"].(string)}

	t.Run("get never shows the secret", func(t *testing.T) {
		out := h.do(req{method: "GET", path: "/manage/tokens/" + id})
		wantStatus(t, out, 200)
		if _, ok := out.body["token"]; ok {
			t.Error("GET returned the secret")
		}
		if !mapsEqual(out.body, wantToken) {
			t.Errorf("got %v, want %v", out.body, wantToken)
		}
	})
	t.Run("list", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			want  int
		}{
			{"", 4},
			{"?project_id=" + projectID, 2},
			{"?project_id=" + otherProject, 2},
			{"?project_id=proj_unknown", 0},
		} {
			out := h.do(req{method: "GET", path: "/manage/tokens" + tc.query})
			wantStatus(t, out, 200)
			if data := out.body["data"].([]any); out.body["object"] != "list" || len(data) != tc.want {
				t.Errorf("list%s: %d items, want %d: %s", tc.query, len(data), tc.want, out.raw)
			}
		}
	})
	t.Run("patch", func(t *testing.T) {
		newAt := h.now.Add(time.Hour).Format(time.RFC3339)
		for _, tc := range []struct {
			name string
			body string
			want map[string]any // fields to check in the result
		}{
			{"rename", `{"name":"deploy"}`, map[string]any{"name": "deploy"}},
			{"clear cap", `{"max_requests":null}`, map[string]any{"max_requests": nil}},
			{"set cap", `{"max_requests":100}`, map[string]any{"max_requests": float64(100)}},
			{"clear expiry with expires_at null", `{"expires_at":null}`, map[string]any{"expires_at": nil}},
			{"set expires_at", `{"expires_at":"` + newAt + `"}`, map[string]any{"expires_at": newAt}},
			{"clear expiry with expires_in null", `{"expires_in":null}`, map[string]any{"expires_at": nil}},
			{"set expires_in days", `{"expires_in":"2d"}`, map[string]any{"expires_at": h.now.Add(48 * time.Hour).Format(time.RFC3339)}},
			{"deactivate", `{"active":false}`, map[string]any{"active": false, "revoked_at": nil}},
			{"reactivate", `{"active":true}`, map[string]any{"active": true}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out := h.do(req{method: "PATCH", path: "/manage/tokens/" + id, body: tc.body})
				wantStatus(t, out, 200)
				for k, v := range tc.want {
					if out.body[k] != v {
						t.Errorf("%s = %v, want %v", k, out.body[k], v)
					}
				}
				if _, ok := out.body["token"]; ok {
					t.Error("PATCH returned the secret")
				}
				wantInvalidated(t, h, []string{id}, nil)
			})
		}
	})
	t.Run("revoke", func(t *testing.T) {
		out := h.do(req{method: "DELETE", path: "/manage/tokens/" + id})
		wantStatus(t, out, 200)
		if out.body["active"] != false || out.body["revoked_at"] != h.now.Format(time.RFC3339) || out.body["id"] != id {
			t.Errorf("revoked token = %s", out.raw)
		}
		wantInvalidated(t, h, []string{id}, nil)

		// Revocation is permanent.
		out = h.do(req{method: "PATCH", path: "/manage/tokens/" + id, body: `{"active":true}`})
		wantError(t, out, 400, "invalid_request_error", "invalid_value", "active")
		wantInvalidated(t, h, nil, nil)

		// Revoking again is harmless and keeps the first time.
		out = h.do(req{method: "DELETE", path: "/manage/tokens/" + id})
		wantStatus(t, out, 200)
		if out.body["revoked_at"] != h.now.Format(time.RFC3339) {
			t.Errorf("revoked_at after second revoke = %v", out.body["revoked_at"])
		}
		wantInvalidated(t, h, []string{id}, nil)
	})

	// Each secret appears in exactly one response: the one that created it.
	for i, s := range secrets {
		if n := h.responsesContaining(s); n != 1 {
			t.Errorf("secret %d appears in %d responses, want 1", i, n)
		}
		if strings.Contains(h.logs.String(), s) {
			t.Errorf("secret %d appears in the log", i)
		}
	}
	if n := h.responsesContaining(rawKey1) + h.responsesContaining(rawKey2); n != 0 {
		t.Errorf("a raw OpenAI key appears in %d responses", n)
	}
}

// TestChangesReachTheValidationCache drives a real authz.Authorizer, whose
// cache would trust a validated token for an hour, through the API: every
// change must take effect on the very next validation.
func TestChangesReachTheValidationCache(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{authorizer: true})
	ctx := context.Background()
	projectID := h.createProject("Team", rawKey1)
	issue := func() (id, secret string) {
		out := h.createToken(map[string]any{"project_id": projectID})
		return out.body["id"].(string), out.body["token"].(string)
	}
	authenticate := func(secret string) error {
		p, err := h.authz.Authenticate(ctx, secret)
		if err == nil && p.OpenAIKey == "" {
			t.Error("authenticated without a key")
		}
		return err
	}
	mustAuthenticate := func(secret string) authz.Principal {
		t.Helper()
		p, err := h.authz.Authenticate(ctx, secret)
		if err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		return p
	}

	id1, secret1 := issue()
	if p := mustAuthenticate(secret1); p.OpenAIKey != rawKey1 || p.TokenID != id1 {
		t.Fatalf("principal for token %s, want %s with the project key", p.TokenID, id1)
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: `{"openai_api_key":"` + rawKey2 + `"}`}), 200)
	if p := mustAuthenticate(secret1); p.OpenAIKey != rawKey2 {
		t.Error("rotated key not used on the next request")
	}
	// Caps, limits and budgets reach the principal the limiter works from.
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/tokens/" + id1, body: `{"max_requests":2}`}), 200)
	if p := mustAuthenticate(secret1); p.MaxRequests == nil || *p.MaxRequests != 2 {
		t.Errorf("after setting max_requests: principal cap %v, want 2", fmtInt64(p.MaxRequests))
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/tokens/" + id1, body: `{"max_requests":null}`}), 200)
	if p := mustAuthenticate(secret1); p.MaxRequests != nil {
		t.Errorf("after clearing max_requests: principal cap %v, want none", fmtInt64(p.MaxRequests))
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/tokens/" + id1, body: `{"limits":{"tokens_per_minute":500}}`}), 200)
	if p := mustAuthenticate(secret1); fmtInt64(p.TokenLimits.TokensPerMinute) != "500" {
		t.Errorf("after setting the token's tokens_per_minute: principal has %v, want 500", fmtInt64(p.TokenLimits.TokensPerMinute))
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID,
		body: `{"limits":{"requests_per_minute":60},"monthly_budget_usd":12.5}`}), 200)
	p := mustAuthenticate(secret1)
	if fmtInt64(p.ProjectLimits.RequestsPerMinute) != "60" || fmtInt64(p.MonthlyBudgetMicroUSD) != "12500000" {
		t.Errorf("after setting the project's limit and budget: principal has %v and %v, want 60 and 12500000",
			fmtInt64(p.ProjectLimits.RequestsPerMinute), fmtInt64(p.MonthlyBudgetMicroUSD))
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: `{"limits":null,"monthly_budget_usd":null}`}), 200)
	if p := mustAuthenticate(secret1); p.ProjectLimits != (store.Limits{}) || p.MonthlyBudgetMicroUSD != nil {
		t.Errorf("after clearing the project's limits and budget: principal has %+v, budget %v", p.ProjectLimits, fmtInt64(p.MonthlyBudgetMicroUSD))
	}
	// So do the policy switches, and the key the reconciler polls with.
	if p := mustAuthenticate(secret1); !p.AllowBackground || !p.AllowBatches {
		t.Errorf("new project: principal allows background %t, batches %t; want both", p.AllowBackground, p.AllowBatches)
	}
	if key, err := h.authz.ProjectKey(ctx, projectID); err != nil || key != rawKey2 {
		t.Errorf("ProjectKey after rotation: %v (key matches: %t)", err, key == rawKey2)
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: `{"allow_background":false}`}), 200)
	if p := mustAuthenticate(secret1); p.AllowBackground || !p.AllowBatches {
		t.Errorf("after refusing background: principal allows background %t, batches %t", p.AllowBackground, p.AllowBatches)
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID,
		body: `{"allow_background":true,"allow_batches":false,"openai_api_key":"` + rawKey1 + `"}`}), 200)
	if p := mustAuthenticate(secret1); !p.AllowBackground || p.AllowBatches {
		t.Errorf("after refusing batches: principal allows background %t, batches %t", p.AllowBackground, p.AllowBatches)
	}
	if key, err := h.authz.ProjectKey(ctx, projectID); err != nil || key != rawKey1 {
		t.Errorf("ProjectKey after a second rotation: %v (key matches: %t)", err, key == rawKey1)
	}

	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: `{"active":false}`}), 200)
	if err := authenticate(secret1); !errors.Is(err, authz.ErrProjectInactive) {
		t.Errorf("after deactivating the project: %v, want ErrProjectInactive", err)
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: `{"active":true}`}), 200)
	mustAuthenticate(secret1)

	wantStatus(t, h.do(req{method: "DELETE", path: "/manage/tokens/" + id1}), 200)
	if err := authenticate(secret1); !errors.Is(err, authz.ErrTokenRevoked) {
		t.Errorf("after revoking: %v, want ErrTokenRevoked", err)
	}

	_, secret2 := issue()
	_, secret3 := issue()
	mustAuthenticate(secret2)
	mustAuthenticate(secret3)
	wantStatus(t, h.do(req{method: "POST", path: "/manage/projects/" + projectID + "/tokens/revoke"}), 200)
	for _, s := range []string{secret2, secret3} {
		if err := authenticate(s); !errors.Is(err, authz.ErrTokenRevoked) {
			t.Errorf("after revoke-all: %v, want ErrTokenRevoked", err)
		}
	}

	_, secret4 := issue()
	mustAuthenticate(secret4)
	wantStatus(t, h.do(req{method: "DELETE", path: "/manage/projects/" + projectID}), 204)
	if err := authenticate(secret4); !errors.Is(err, authz.ErrInvalidToken) {
		t.Errorf("after deleting the project: %v, want ErrInvalidToken", err)
	}
}

// revokingStore revokes a token right after GetToken reads it, as a
// concurrent DELETE would between PATCH's check and its update.
type revokingStore struct{ *store.Store }

func (s revokingStore) GetToken(ctx context.Context, id string) (store.Token, error) {
	t, err := s.Store.GetToken(ctx, id)
	if err == nil {
		_, err = s.Store.RevokeToken(ctx, id, time.Now())
	}
	return t, err
}

func TestReactivationRacingRevocation(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{wrapStore: func(st *store.Store) projectStore { return revokingStore{st} }})
	projectID := h.createProject("Team", rawKey1)
	id := h.createToken(map[string]any{"project_id": projectID}).body["id"].(string)
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/tokens/" + id, body: `{"active":false}`}), 200)
	h.inv.take()

	out := h.do(req{method: "PATCH", path: "/manage/tokens/" + id, body: `{"active":true}`})
	wantError(t, out, 400, "invalid_request_error", "invalid_value", "active")
	wantInvalidated(t, h, []string{id}, nil)
	tok, err := h.store.GetToken(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Active || tok.RevokedAt == nil {
		t.Errorf("revoked token left active=%v revoked_at=%v", tok.Active, tok.RevokedAt)
	}
}

func TestRevokeProjectTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	projectID := h.createProject("Team", rawKey1)
	otherID := h.createProject("Other", rawKey2)
	var ids []string
	for range 3 {
		ids = append(ids, h.createToken(map[string]any{"project_id": projectID}).body["id"].(string))
	}
	bystander := h.createToken(map[string]any{"project_id": otherID}).body["id"].(string)
	wantStatus(t, h.do(req{method: "DELETE", path: "/manage/tokens/" + ids[0]}), 200)
	h.inv.take()

	out := h.do(req{method: "POST", path: "/manage/projects/" + projectID + "/tokens/revoke"})
	wantStatus(t, out, 200)
	if !mapsEqual(out.body, map[string]any{"revoked": float64(2)}) {
		t.Errorf("revoke-all = %s, want {\"revoked\":2}", out.raw)
	}
	wantInvalidated(t, h, nil, []string{projectID})

	for _, id := range ids {
		out := h.do(req{method: "GET", path: "/manage/tokens/" + id})
		if out.body["active"] != false || out.body["revoked_at"] == nil {
			t.Errorf("token %s after revoke-all: %s", id, out.raw)
		}
	}
	if out := h.do(req{method: "GET", path: "/manage/tokens/" + bystander}); out.body["active"] != true {
		t.Errorf("another project's token was revoked: %s", out.raw)
	}

	out = h.do(req{method: "POST", path: "/manage/projects/" + projectID + "/tokens/revoke"})
	if !mapsEqual(out.body, map[string]any{"revoked": float64(0)}) {
		t.Errorf("second revoke-all = %s, want {\"revoked\":0}", out.raw)
	}
	h.inv.take()

	out = h.do(req{method: "POST", path: "/manage/projects/proj_missing/tokens/revoke"})
	wantError(t, out, 404, "invalid_request_error", "not_found", "")
	wantInvalidated(t, h, nil, nil)
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	projectID := h.createProject("Team", rawKey1)
	tokenID := h.createToken(map[string]any{"project_id": projectID}).body["id"].(string)
	past := h.now.Add(-time.Minute).Format(time.RFC3339)
	future := h.now.Add(time.Hour).Format(time.RFC3339)
	key := `"openai_api_key":"` + rawKey1 + `"`
	projPath := "/manage/projects/" + projectID
	tokPath := "/manage/tokens/" + tokenID

	for _, tc := range []struct {
		name, method, path, body string
		code, param              string
	}{
		{"malformed JSON", "POST", "/manage/projects", `{"name":`, "invalid_json", ""},
		{"syntax error", "POST", "/manage/projects", `{"name" "x"}`, "invalid_json", ""},
		{"empty body", "POST", "/manage/projects", ``, "invalid_json", ""},
		{"not an object", "POST", "/manage/projects", `["x"]`, "invalid_type", ""},
		{"trailing data", "POST", "/manage/projects", `{"name":"a",` + key + `} {}`, "invalid_json", ""},
		{"trailing garbage", "POST", "/manage/projects", `{"name":"a",` + key + `}x`, "invalid_json", ""},
		{"unknown field", "POST", "/manage/projects", `{"name":"a",` + key + `,"colour":"red"}`, "unknown_field", "colour"},
		{"name wrong type", "POST", "/manage/projects", `{"name":5,` + key + `}`, "invalid_type", "name"},
		{"active wrong type", "POST", "/manage/projects", `{"name":"a",` + key + `,"active":"yes"}`, "invalid_type", "active"},
		{"key wrong type", "POST", "/manage/projects", `{"name":"a","openai_api_key":["sk"]}`, "invalid_type", "openai_api_key"},
		{"name missing", "POST", "/manage/projects", `{` + key + `}`, "missing_required_field", "name"},
		{"name null", "POST", "/manage/projects", `{"name":null,` + key + `}`, "missing_required_field", "name"},
		{"name empty", "POST", "/manage/projects", `{"name":"",` + key + `}`, "invalid_value", "name"},
		{"name blank", "POST", "/manage/projects", `{"name":"   ",` + key + `}`, "invalid_value", "name"},
		{"name too long", "POST", "/manage/projects", `{"name":"` + strings.Repeat("é", 201) + `",` + key + `}`, "invalid_value", "name"},
		{"key missing", "POST", "/manage/projects", `{"name":"a"}`, "missing_required_field", "openai_api_key"},
		{"key empty", "POST", "/manage/projects", `{"name":"a","openai_api_key":""}`, "invalid_value", "openai_api_key"},
		{"key with whitespace", "POST", "/manage/projects", `{"name":"a","openai_api_key":"` + rawKey1 + ` x"}`, "invalid_value", "openai_api_key"},
		{"active null", "POST", "/manage/projects", `{"name":"a",` + key + `,"active":null}`, "invalid_value", "active"},

		{"patch project unknown field", "PATCH", projPath, `{"id":"proj_x"}`, "unknown_field", "id"},
		{"patch project name null", "PATCH", projPath, `{"name":null}`, "invalid_value", "name"},
		{"patch project key null", "PATCH", projPath, `{"openai_api_key":null}`, "invalid_value", "openai_api_key"},
		{"patch project key with newline", "PATCH", projPath, `{"openai_api_key":"sk-abc\ndef"}`, "invalid_value", "openai_api_key"},
		{"patch project active wrong type", "PATCH", projPath, `{"active":1}`, "invalid_type", "active"},

		{"token project missing", "POST", "/manage/tokens", `{"name":"x"}`, "missing_required_field", "project_id"},
		{"token project empty", "POST", "/manage/tokens", `{"project_id":""}`, "missing_required_field", "project_id"},
		{"token project unknown", "POST", "/manage/tokens", `{"project_id":"proj_missing"}`, "not_found", "project_id"},
		{"token unknown field", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","scope":"all"}`, "unknown_field", "scope"},
		{"token both expiries", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_in":"1h","expires_at":"` + future + `"}`, "invalid_value", "expires_at"},
		{"token expires_at past", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_at":"` + past + `"}`, "invalid_value", "expires_at"},
		{"token expires_at now", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_at":"` + h.now.Format(time.RFC3339) + `"}`, "invalid_value", "expires_at"},
		{"token expires_at not RFC 3339", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_at":"tomorrow"}`, "invalid_value", "expires_at"},
		{"token expires_at wrong type", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_at":1700000000}`, "invalid_type", "expires_at"},
		{"token expires_in negative", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_in":"-1h"}`, "invalid_value", "expires_in"},
		{"token expires_in zero", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_in":"0s"}`, "invalid_value", "expires_in"},
		{"token expires_in sub-second", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_in":"10ms"}`, "invalid_value", "expires_in"},
		{"token expires_in garbage", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_in":"soon"}`, "invalid_value", "expires_in"},
		{"token expires_in number", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_in":3600}`, "invalid_type", "expires_in"},
		{"token max_requests zero", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","max_requests":0}`, "invalid_value", "max_requests"},
		{"token max_requests negative", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","max_requests":-3}`, "invalid_value", "max_requests"},
		{"token max_requests fraction", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","max_requests":1.5}`, "invalid_type", "max_requests"},
		{"token max_requests string", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","max_requests":"5"}`, "invalid_type", "max_requests"},
		{"token max_requests too big", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","max_requests":1e30}`, "invalid_type", "max_requests"},
		{"token name too long", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","name":"` + strings.Repeat("n", 201) + `"}`, "invalid_value", "name"},

		{"patch token both expiries", "PATCH", tokPath, `{"expires_in":null,"expires_at":null}`, "invalid_value", "expires_at"},
		{"patch token past expiry", "PATCH", tokPath, `{"expires_at":"` + past + `"}`, "invalid_value", "expires_at"},
		{"patch token max_requests zero", "PATCH", tokPath, `{"max_requests":0}`, "invalid_value", "max_requests"},
		{"patch token active null", "PATCH", tokPath, `{"active":null}`, "invalid_value", "active"},
		{"patch token name null", "PATCH", tokPath, `{"name":null}`, "invalid_value", "name"},
		{"patch token unknown field", "PATCH", tokPath, `{"project_id":"proj_x"}`, "unknown_field", "project_id"},
		{"patch token wrong type", "PATCH", tokPath, `{"name":true}`, "invalid_type", "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: tc.method, path: tc.path, body: tc.body})
			wantError(t, out, 400, "invalid_request_error", tc.code, tc.param)
		})
	}
	wantInvalidated(t, h, nil, nil) // nothing was changed
	if n := h.responsesContaining(rawKey1); n != 0 {
		t.Errorf("the raw key appears in %d error responses", n)
	}
	if n := h.responsesContaining("sk-abc"); n != 0 {
		t.Errorf("a rejected key appears in %d error responses", n)
	}
	out := h.do(req{method: "GET", path: "/manage/tokens/" + tokenID})
	if out.body["active"] != true || out.body["expires_at"] != nil || out.body["name"] != "" {
		t.Errorf("token changed by rejected requests: %s", out.raw)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/manage/projects/proj_missing", ""},
		{"PATCH", "/manage/projects/proj_missing", `{"name":"x"}`},
		{"PATCH", "/manage/projects/proj_missing", `{}`},
		{"DELETE", "/manage/projects/proj_missing", ""},
		{"POST", "/manage/projects/proj_missing/tokens/revoke", ""},
		{"GET", "/manage/tokens/tok_missing", ""},
		{"PATCH", "/manage/tokens/tok_missing", `{"name":"x"}`},
		{"PATCH", "/manage/tokens/tok_missing", `{"active":true}`},
		{"PATCH", "/manage/tokens/tok_missing", `{}`},
		{"DELETE", "/manage/tokens/tok_missing", ""},
		{"GET", "/manage/nope", ""},
		{"GET", "/manage/projects/a/b", ""},
		{"GET", "/manage/", ""},
		{"GET", "/", ""},
		{"POST", "/v1/chat/completions", `{}`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			out := h.do(req{method: tc.method, path: tc.path, body: tc.body})
			wantError(t, out, 404, "invalid_request_error", "not_found", "")
		})
	}
	wantInvalidated(t, h, nil, nil)
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		method, path string
		allow        []string
	}{
		{"PUT", "/manage/projects", []string{"GET", "HEAD", "POST"}},
		{"DELETE", "/manage/projects", []string{"GET", "HEAD", "POST"}},
		{"POST", "/manage/projects/proj_x", []string{"DELETE", "GET", "HEAD", "PATCH"}},
		{"PUT", "/manage/tokens/tok_x", []string{"DELETE", "GET", "HEAD", "PATCH"}},
		{"GET", "/manage/projects/proj_x/tokens/revoke", []string{"POST"}},
		{"POST", "/manage/openapi.yaml", []string{"GET", "HEAD"}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			out := h.do(req{method: tc.method, path: tc.path})
			wantError(t, out, 405, "invalid_request_error", "method_not_allowed", "")
			allow := strings.Split(out.header.Get("Allow"), ", ")
			slices.Sort(allow)
			if !slices.Equal(allow, tc.allow) {
				t.Errorf("Allow = %v, want %v", allow, tc.allow)
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	projectID := h.createProject("Team", rawKey1)
	big := strings.Repeat("x", maxBodyBytes)
	for _, tc := range []struct{ name, method, path, body string }{
		{"create project", "POST", "/manage/projects", `{"name":"` + big + `","openai_api_key":"sk-x"}`},
		{"create token", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","name":"` + big + `"}`},
		{"patch project", "PATCH", "/manage/projects/" + projectID, `{"name":"` + big + `"}`},
		{"whitespace after a valid object", "POST", "/manage/tokens", `{"project_id":"` + projectID + `"}` + strings.Repeat(" ", maxBodyBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: tc.method, path: tc.path, body: tc.body})
			wantError(t, out, 413, "invalid_request_error", "request_too_large", "")
		})
	}
	out := h.do(req{method: "GET", path: "/manage/tokens"})
	if n := len(out.body["data"].([]any)); n != 0 {
		t.Errorf("%d tokens created by refused requests", n)
	}
}

func TestOpenAPIDocumentServed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	out := h.do(req{method: "GET", path: "/manage/openapi.yaml"})
	wantStatus(t, out, 200)
	if ct := out.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type = %q", ct)
	}
	if string(out.raw) != string(OpenAPI()) {
		t.Error("served document differs from the embedded one")
	}
}

func TestRequestIDAndLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		name, in string
		echoed   bool
	}{
		{"caller's id is echoed", "3f1c2a9e-7d4b-4c1e-9a2f-0b8d6e5c4a31", true},
		{"id with a space is replaced", "abc def", false},
		{"over-long id is replaced", strings.Repeat("a", 129), false},
		{"none given", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := req{method: "GET", path: "/manage/projects"}
			if tc.in != "" {
				r.header = map[string]string{"X-Request-Id": tc.in}
			}
			got := h.do(r).header.Get("X-Request-Id")
			if tc.echoed && got != tc.in {
				t.Errorf("x-request-id = %q, want %q", got, tc.in)
			}
			if !tc.echoed && (got == tc.in || !strings.HasPrefix(got, "req_")) {
				t.Errorf("x-request-id = %q, want a fresh req_ id", got)
			}
		})
	}

	created := h.createToken(map[string]any{"project_id": h.createProject("Team", rawKey1)})
	h.srv.Close() // waits for every handler, so every log line is written

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	if len(lines) != 6 {
		t.Errorf("%d log lines for 6 requests", len(lines))
	}
	for _, m := range lines {
		for _, k := range []string{"level", "request_id", "method", "path", "status", "duration", "message"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line lacks %q: %v", k, m)
			}
		}
		if m["level"] != "info" {
			t.Errorf("level = %v", m["level"])
		}
	}
	if lines[0]["request_id"] != "3f1c2a9e-7d4b-4c1e-9a2f-0b8d6e5c4a31" || lines[0]["route"] != "GET /manage/projects" {
		t.Errorf("first log line = %v", lines[0])
	}
	logs := h.logs.String()
	for _, secret := range []string{rawKey1, created.body["token"].(string), testManagementToken} {
		if strings.Contains(logs, secret) {
			t.Error("a secret reached the log")
		}
	}
}

func TestInternalError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// A closed store fails like a lost database.
	projectID := h.createProject("Team", rawKey1)
	h.store.Close()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/manage/projects", ""},
		{"GET", "/manage/projects/" + projectID, ""},
		{"POST", "/manage/projects", `{"name":"a","openai_api_key":"sk-x"}`},
		{"POST", "/manage/tokens", `{"project_id":"` + projectID + `"}`},
		{"DELETE", "/manage/tokens/tok_x", ""},
		{"POST", "/manage/projects/" + projectID + "/tokens/revoke", ""},
		{"GET", "/manage/projects/" + projectID + "/usage", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			out := h.do(req{method: tc.method, path: tc.path, body: tc.body, header: map[string]string{"X-Request-Id": "req-500-" + tc.method}})
			wantError(t, out, 500, "server_error", "internal_error", "")
			if msg := out.body["error"].(map[string]any)["message"]; msg != internalErrorMessage {
				t.Errorf("message = %q, want the generic one", msg)
			}
			if strings.Contains(string(out.raw), "closed") {
				t.Errorf("internal error leaked: %s", out.raw)
			}
		})
	}
	wantInvalidated(t, h, nil, nil)
	h.srv.Close()
	var errorLines int
	for _, l := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["level"] == "error" {
			errorLines++
			if id, _ := m["request_id"].(string); !strings.HasPrefix(id, "req-500-") || m["error"] == nil {
				t.Errorf("error log line lacks request_id or error: %v", m)
			}
		}
	}
	if errorLines != 7 {
		t.Errorf("%d error log lines for 7 failed requests, want one each", errorLines)
	}
}

func TestNewRequiresOptions(t *testing.T) {
	t.Parallel()
	keys, _ := authz.NewKeyring(make([]byte, 32))
	_, err := New(Options{Logger: zerolog.Nop()})
	if err == nil {
		t.Fatal("New with no options succeeded")
	}
	for _, name := range []string{"Store", "Keyring", "Invalidator", "ManagementToken"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if _, err := New(Options{Store: struct{ projectStore }{}, Keyring: keys, Invalidator: &recordingInvalidator{}}); err == nil ||
		!strings.Contains(err.Error(), "ManagementToken") {
		t.Errorf("New without a management token: %v", err)
	}
}

func TestParseExpiresIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"720h", 720 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"30d", 30 * 24 * time.Hour, false},
		{"1d", 24 * time.Hour, false},
		{"0d", 0, false},
		{"-1h", -time.Hour, false},
		{"d", 0, true},
		{"1.5d", 0, true},
		{"-1d", 0, true},
		{"1d12h", 0, true},
		{"99999999999999999999d", 0, true},
		{"200000d", 0, true},
		{"", 0, true},
		{"soon", 0, true},
		{"30", 0, true},
	} {
		got, err := parseExpiresIn(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseExpiresIn(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// wantInvalidated checks, and clears, what the Invalidator was told since the last check.
func wantInvalidated(t *testing.T, h *harness, tokens, projects []string) {
	t.Helper()
	gotT, gotP := h.inv.take()
	if !slices.Equal(sorted(gotT), sorted(tokens)) || !slices.Equal(sorted(gotP), sorted(projects)) {
		t.Errorf("invalidated tokens %v, projects %v; want %v, %v", gotT, gotP, tokens, projects)
	}
}

// mapsEqual compares decoded JSON objects, nested ones included.
func mapsEqual(a, b map[string]any) bool { return reflect.DeepEqual(a, b) }

// FuzzRequestBodies sends arbitrary bodies to every endpoint that takes one:
// whatever arrives, the answer is never a 5xx, and every refusal is an
// OpenAI-shaped error.
func FuzzRequestBodies(f *testing.F) {
	h := newHarnessWith(f, harnessOptions{})
	projectID := h.createProject("fuzz", "sk-fuzz-0123456789abcdef")
	tok := h.createToken(map[string]any{"project_id": projectID})
	tokenID, _ := tok.body["id"].(string)
	for _, seed := range []string{
		`{"name":"a","openai_api_key":"sk-x"}`, `{"project_id":"` + projectID + `","expires_in":"30d"}`,
		`{"max_requests":null,"expires_at":"2030-01-01T00:00:00Z"}`, `{"active":false}`, `[]`, `{"name":1e400}`, `{"a":1}{}`,
		`{"limits":{"requests_per_minute":1,"tokens_per_minute":null}}`, `{"limits":null,"monthly_budget_usd":0.000001}`,
		`{"monthly_budget_usd":1e-999999}`, `{"limits":{"max_concurrent":{"x":1}}}`,
	} {
		f.Add(seed)
	}
	targets := []struct{ method, path string }{
		{"POST", "/manage/projects"}, {"PATCH", "/manage/projects/" + projectID},
		{"POST", "/manage/tokens"}, {"PATCH", "/manage/tokens/" + tokenID},
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, tg := range targets {
			r := httptest.NewRequest(tg.method, tg.path, strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+testManagementToken)
			w := httptest.NewRecorder()
			h.srv.Config.Handler.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("%s %s with %q: %d %s", tg.method, tg.path, body, w.Code, w.Body)
			}
			if w.Code >= 400 {
				var e struct {
					Error *struct{ Message, Type string } `json:"error"`
				}
				if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
					t.Fatalf("%s %s with %q: error body %s", tg.method, tg.path, body, w.Body)
				}
			}
		}
	})
}
