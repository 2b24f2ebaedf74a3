package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
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
		"id": id, "object": "project", "name": "Team A", "openai_api_key": "sk-p…wxyz",
		"active": true, "limits": noLimits(), "monthly_budget_usd": nil, "cache_post": false,
		"allow_background": true, "allow_batches": true, "rules": map[string]any{},
		"capture":    map[string]any{"enabled": false, "redact": []any{}, "request_max_bytes": float64(65536), "response_max_bytes": float64(262144)},
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
		if out.body["name"] != "Team A2" || out.body["openai_api_key"] != "sk-p…wxyz" {
			t.Errorf("patched = %s", out.raw)
		}
		wantInvalidated(t, h, nil, []string{id})
	})
	t.Run("rotate key", func(t *testing.T) {
		out := h.do(req{method: "PATCH", path: "/manage/projects/" + id, body: `{"openai_api_key":"` + rawKey2 + `"}`})
		wantStatus(t, out, 200)
		if out.body["openai_api_key"] != "sk-p…9876" {
			t.Errorf("openai_api_key = %v, want %s", out.body["openai_api_key"], "sk-p…9876")
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
		"prefix": secret[:len(authz.TokenPrefix)+4], "active": true, "legacy": false,
		"expires_at":   h.now.Add(30 * 24 * time.Hour).Format(time.RFC3339),
		"max_requests": float64(5), "request_count": float64(0), "cache_hit_count": float64(0),
		"last_used_at": nil, "revoked_at": nil, "limits": noLimits(), "rules": map[string]any{}, "created_at": h.now.Format(time.RFC3339),
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
	if _, err := New(Options{Store: struct{ projectStore }{}, Keyring: keys, Invalidator: &recordingInvalidator{}, ManagementToken: "x", LoginFailureWindow: -time.Second}); err == nil ||
		!strings.Contains(err.Error(), "LoginFailureWindow") {
		t.Errorf("New with a negative LoginFailureWindow: %v", err)
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

// checkingStore records every string argument that reaches the store with
// a NUL, a control character or invalid UTF-8, or an id of a form no id has:
// the API must refuse those before the store (PostgreSQL answers them with
// SQLSTATE 22021, a 500).
type checkingStore struct {
	projectStore
	mu  sync.Mutex
	bad []string
}

func (c *checkingStore) check(what string, ids []string, texts ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if id != "" && !validID(id) {
			c.bad = append(c.bad, fmt.Sprintf("%s: id %q", what, id))
		}
	}
	for _, s := range texts {
		if hasControl(s) {
			c.bad = append(c.bad, fmt.Sprintf("%s: text %q", what, s))
		}
	}
}

func (c *checkingStore) CreateProject(ctx context.Context, p store.Project) error {
	c.check("CreateProject", []string{p.ID}, p.Name, p.KeyHint)
	return c.projectStore.CreateProject(ctx, p)
}

func (c *checkingStore) GetProject(ctx context.Context, id string) (store.Project, error) {
	c.check("GetProject", []string{id})
	return c.projectStore.GetProject(ctx, id)
}

func (c *checkingStore) UpdateProject(ctx context.Context, id string, u store.ProjectUpdate) (store.Project, error) {
	var texts []string
	for _, p := range []*string{u.Name, u.KeyHint} {
		if p != nil {
			texts = append(texts, *p)
		}
	}
	c.check("UpdateProject", []string{id}, texts...)
	return c.projectStore.UpdateProject(ctx, id, u)
}

func (c *checkingStore) DeleteProject(ctx context.Context, id string) error {
	c.check("DeleteProject", []string{id})
	return c.projectStore.DeleteProject(ctx, id)
}

func (c *checkingStore) CreateToken(ctx context.Context, t store.Token) error {
	c.check("CreateToken", []string{t.ID, t.ProjectID}, t.Name)
	return c.projectStore.CreateToken(ctx, t)
}

func (c *checkingStore) GetToken(ctx context.Context, id string) (store.Token, error) {
	c.check("GetToken", []string{id})
	return c.projectStore.GetToken(ctx, id)
}

func (c *checkingStore) ListTokensPage(ctx context.Context, projectID string, q store.PageQuery) ([]store.Token, string, error) {
	c.check("ListTokensPage", []string{projectID}, q.Cursor)
	return c.projectStore.ListTokensPage(ctx, projectID, q)
}

func (c *checkingStore) ListProjectsPage(ctx context.Context, q store.PageQuery) ([]store.Project, string, error) {
	c.check("ListProjectsPage", nil, q.Cursor)
	return c.projectStore.ListProjectsPage(ctx, q)
}

func (c *checkingStore) UpdateToken(ctx context.Context, id string, u store.TokenUpdate) (store.Token, error) {
	var texts []string
	if u.Name != nil {
		texts = append(texts, *u.Name)
	}
	c.check("UpdateToken", []string{id}, texts...)
	return c.projectStore.UpdateToken(ctx, id, u)
}

func (c *checkingStore) RevokeToken(ctx context.Context, id string, at time.Time) (store.Token, error) {
	c.check("RevokeToken", []string{id})
	return c.projectStore.RevokeToken(ctx, id, at)
}

func (c *checkingStore) RevokeProjectTokens(ctx context.Context, projectID string, at time.Time) ([]string, error) {
	c.check("RevokeProjectTokens", []string{projectID})
	return c.projectStore.RevokeProjectTokens(ctx, projectID, at)
}

func (c *checkingStore) ProjectUsage(ctx context.Context, projectID, fromDay, toDay string) ([]store.UsageRecord, error) {
	c.check("ProjectUsage", []string{projectID}, fromDay, toDay)
	return c.projectStore.ProjectUsage(ctx, projectID, fromDay, toDay)
}

func (c *checkingStore) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, string, error) {
	c.check("ListAudit", []string{q.ProjectID, q.TokenID}, q.Action, q.Cursor, q.Actor, q.Outcome, q.ClientAddress)
	return c.projectStore.ListAudit(ctx, q)
}

// TestBadStringsNeverReachTheStore sends a NUL, control characters, invalid
// UTF-8 and ids of impossible forms in every path id, query parameter and
// body member that ends up in a query, on SQLite and on PostgreSQL (which
// refuses NUL and invalid UTF-8 in text): each is a 400 or a 404 in the
// API's error shape, never a 500, and the store never sees one.
func TestBadStringsNeverReachTheStore(t *testing.T) {
	t.Parallel()
	for _, backend := range []struct {
		name     string
		postgres bool
	}{{"SQLite", false}, {"PostgreSQL", true}} {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			if backend.postgres {
				testenv.Postgres(t) // skip (or fail, in CI) once, not per case
			}
			cs := &checkingStore{}
			h := newHarnessWith(t, harnessOptions{
				postgres:  backend.postgres,
				cache:     true,
				wrapStore: func(st *store.Store) projectStore { cs.projectStore = st; return cs },
			})
			projectID := h.createProject("Team", rawKey1)
			tokenID := h.createToken(map[string]any{"project_id": projectID}).body["id"].(string)
			testBadStrings(t, h, projectID, tokenID)
			cs.mu.Lock()
			defer cs.mu.Unlock()
			if len(cs.bad) > 0 {
				t.Errorf("the store was asked about:\n%s", strings.Join(cs.bad, "\n"))
			}
		})
	}
}

func testBadStrings(t *testing.T, h *harness, projectID, tokenID string) {
	// Path ids: none of these can be an id, so each is a 404 like an id
	// that does not exist, whatever the route.
	badIDs := []string{
		"%00", "proj_%00x", "%FF", "proj_%C3%28", "tok_%E2%80%A6", "a%20b",
		"proj_%0A", "a%2Fb", strings.Repeat("a", maxIDLen+1),
	}
	routes := []struct{ method, path, body string }{
		{"GET", "/manage/projects/%s", ""},
		{"PATCH", "/manage/projects/%s", `{"name":"x"}`},
		{"DELETE", "/manage/projects/%s", ""},
		{"POST", "/manage/projects/%s/tokens/revoke", ""},
		{"GET", "/manage/projects/%s/usage", ""},
		{"GET", "/manage/tokens/%s", ""},
		{"PATCH", "/manage/tokens/%s", `{"active":true}`},
		{"DELETE", "/manage/tokens/%s", ""},
	}
	for _, rt := range routes {
		for _, id := range badIDs {
			path := fmt.Sprintf(rt.path, id)
			t.Run(rt.method+" "+path, func(t *testing.T) {
				out := h.do(req{method: rt.method, path: path, body: rt.body})
				wantError(t, out, 404, "invalid_request_error", "not_found", "")
				if strings.Contains(string(out.raw), `\u0000`) || strings.Contains(string(out.raw), "\ufffd") {
					t.Errorf("the 404 echoes the bad id: %s", out.raw)
				}
			})
		}
	}

	for _, tc := range []struct {
		name, method, path, body string
		code, param              string
	}{
		{"tokens filter NUL", "GET", "/manage/tokens?project_id=%00", "", "invalid_value", "project_id"},
		{"tokens filter invalid UTF-8", "GET", "/manage/tokens?project_id=proj_%FF", "", "invalid_value", "project_id"},
		{"tokens filter not an id", "GET", "/manage/tokens?project_id=" + url.QueryEscape("proj …"), "", "invalid_value", "project_id"},
		{"audit filter NUL", "GET", "/manage/audit?project_id=proj_%00", "", "invalid_value", "project_id"},
		{"audit filter invalid UTF-8", "GET", "/manage/audit?project_id=%C3%28", "", "invalid_value", "project_id"},
		{"audit action NUL", "GET", "/manage/audit?action=project.create%00", "", "invalid_value", "action"},
		{"audit cursor NUL", "GET", "/manage/audit?cursor=%00", "", "invalid_value", "cursor"},
		{"projects cursor invalid UTF-8", "GET", "/manage/projects?cursor=%FF.%FF", "", "invalid_value", "cursor"},
		{"tokens cursor NUL", "GET", "/manage/tokens?cursor=MSxh%00.AAAAAAAAAAAAAAAAAAAAAA", "", "invalid_value", "cursor"},
		{"usage from NUL", "GET", "/manage/projects/" + projectID + "/usage?from=2025-03-01%00", "", "invalid_value", "from"},

		{"body not UTF-8", "POST", "/manage/projects", "{\"name\":\"a\xff\",\"openai_api_key\":\"sk-x\"}", "invalid_json", ""},
		{"body not UTF-8 in a PATCH", "PATCH", "/manage/projects/" + projectID, "{\"name\":\"\xc3\x28\"}", "invalid_json", ""},
		{"project name NUL", "POST", "/manage/projects", `{"name":"a\u0000b","openai_api_key":"sk-x"}`, "invalid_value", "name"},
		{"project name BEL", "POST", "/manage/projects", `{"name":"\u0007","openai_api_key":"sk-x"}`, "invalid_value", "name"},
		{"project name C1", "POST", "/manage/projects", `{"name":"team\u0085","openai_api_key":"sk-x"}`, "invalid_value", "name"},
		{"project name DEL", "PATCH", "/manage/projects/" + projectID, `{"name":"a\u007f"}`, "invalid_value", "name"},
		{"project name NUL in a PATCH", "PATCH", "/manage/projects/" + projectID, `{"name":"\u0000"}`, "invalid_value", "name"},
		{"key NUL", "POST", "/manage/projects", `{"name":"a","openai_api_key":"sk-\u0000x"}`, "invalid_value", "openai_api_key"},
		{"key NUL in a PATCH", "PATCH", "/manage/projects/" + projectID, `{"openai_api_key":"sk-x\u0000"}`, "invalid_value", "openai_api_key"},
		{"token project NUL", "POST", "/manage/tokens", `{"project_id":"proj_\u0000"}`, "not_found", "project_id"},
		{"token project invalid", "POST", "/manage/tokens", `{"project_id":"proj …"}`, "not_found", "project_id"},
		{"token project too long", "POST", "/manage/tokens", `{"project_id":"` + strings.Repeat("p", maxIDLen+1) + `"}`, "not_found", "project_id"},
		{"token name NUL", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","name":"\u0000"}`, "invalid_value", "name"},
		{"token name newline", "PATCH", "/manage/tokens/" + tokenID, `{"name":"a\nb"}`, "invalid_value", "name"},
		{"token expires_in NUL", "POST", "/manage/tokens", `{"project_id":"` + projectID + `","expires_in":"1h\u0000"}`, "invalid_value", "expires_in"},
		{"token expires_at NUL", "PATCH", "/manage/tokens/" + tokenID, `{"expires_at":"2099-01-01T00:00:00Z\u0000"}`, "invalid_value", "expires_at"},
		{"purge project NUL", "POST", "/manage/cache/purge", `{"project_id":"proj_\u0000"}`, "invalid_value", "project_id"},
		{"purge project invalid", "POST", "/manage/cache/purge", `{"project_id":"…"}`, "invalid_value", "project_id"},
		{"purge method NUL", "POST", "/manage/cache/purge", `{"project_id":"` + projectID + `","request":{"method":"GE\u0000T","path":"/v1/models"}}`, "invalid_value", "request.method"},
		{"purge path NUL", "POST", "/manage/cache/purge", `{"project_id":"` + projectID + `","request":{"method":"GET","path":"/v1/\u0000"}}`, "invalid_value", "request.path"},
		{"purge path not ASCII", "POST", "/manage/cache/purge", `{"project_id":"` + projectID + `","request":{"method":"GET","path":"/v1/é"}}`, "invalid_value", "request.path"},
		{"purge path bad escape", "POST", "/manage/cache/purge", `{"project_id":"` + projectID + `","request":{"method":"GET","path":"/v1/models?a=%zz"}}`, "invalid_value", "request.path"},
		{"purge path semicolon", "POST", "/manage/cache/purge", `{"project_id":"` + projectID + `","request":{"method":"GET","path":"/v1/models?a=1;b=2"}}`, "invalid_value", "request.path"},
		{"purge header null", "POST", "/manage/cache/purge", `{"project_id":"` + projectID + `","request":{"method":"GET","path":"/v1/models","headers":{"accept":null}}}`, "invalid_type", "request.headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(req{method: tc.method, path: tc.path, body: tc.body})
			wantError(t, out, 400, "invalid_request_error", tc.code, tc.param)
		})
	}

	// Nothing was created or changed.
	out := h.do(req{method: "GET", path: "/manage/projects"})
	if data := out.body["data"].([]any); len(data) != 1 || data[0].(map[string]any)["name"] != "Team" {
		t.Errorf("projects after refused requests: %s", out.raw)
	}
	out = h.do(req{method: "GET", path: "/manage/tokens/" + tokenID})
	if out.body["name"] != "" || out.body["active"] != true || out.body["expires_at"] != nil {
		t.Errorf("token after refused requests: %s", out.raw)
	}
	wantInvalidated(t, h, nil, nil)
}

// TestNonObjectBodies: a body that is JSON but not an object — null above
// all, which encoding/json would decode as {} — is a 400 on every route
// that takes a body, and changes nothing.
func TestNonObjectBodies(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, harnessOptions{cache: true})
	projectID := h.createProject("Team", rawKey1)
	tokenID := h.createToken(map[string]any{"project_id": projectID}).body["id"].(string)
	before := h.do(req{method: "GET", path: "/manage/projects/" + projectID}).raw
	auditBefore := h.audit.writes.Load()
	for _, target := range []struct{ method, path string }{
		{"POST", "/manage/projects"},
		{"PATCH", "/manage/projects/" + projectID},
		{"POST", "/manage/tokens"},
		{"PATCH", "/manage/tokens/" + tokenID},
		{"POST", "/manage/cache/purge"},
	} {
		for _, tc := range []struct{ body, kind string }{
			{`null`, "null"},
			{" \n null\t", "null"},
			{`"x"`, "a string"},
			{`1.5`, "a number"},
			{`true`, "a boolean"},
			{`[{}]`, "an array"},
		} {
			t.Run(target.method+" "+target.path+" "+tc.body, func(t *testing.T) {
				out := h.do(req{method: target.method, path: target.path, body: tc.body})
				wantError(t, out, 400, "invalid_request_error", "invalid_type", "")
				want := "The request body must be a JSON object, not " + tc.kind + "."
				if got := out.body["error"].(map[string]any)["message"]; got != want {
					t.Errorf("message = %q, want %q", got, want)
				}
			})
		}
	}
	if after := h.do(req{method: "GET", path: "/manage/projects/" + projectID}).raw; string(after) != string(before) {
		t.Errorf("project changed by refused PATCHes:\n%s\n%s", before, after)
	}
	wantInvalidated(t, h, nil, nil)
	if n := h.audit.writes.Load() - auditBefore; n != 0 {
		t.Errorf("%d audit events for refused requests", n)
	}
}

func TestMaskKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ key, want string }{
		{rawKey1, "sk-p…wxyz"},
		{"sk-x", "…"},
		{strings.Repeat("k", minHintedKeyLen-1), "…"},
		{"abcd" + strings.Repeat("k", minHintedKeyLen-8) + "wxyz", "abcd…wxyz"},
		{"abcd" + strings.Repeat("k", 400) + "wxyz", "abcd…wxyz"},
		// Characters, not bytes: a multi-byte character is never cut.
		{"ééé€" + strings.Repeat("k", 30) + "€ßéé", "ééé€…€ßéé"},
		{"🔑🔑🔑🔑" + strings.Repeat("🔑", 20), "🔑🔑🔑🔑…🔑🔑🔑🔑"},
	} {
		got := maskKey(tc.key)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("maskKey(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	// The mask does not tell the length.
	for n := minHintedKeyLen; n < 600; n++ {
		if got := utf8.RuneCountInString(maskKey(strings.Repeat("a", n))); got != 9 {
			t.Fatalf("the mask of a %d-character key has %d characters, want 9", n, got)
		}
	}
	for _, tc := range []struct{ hint, want string }{
		{"sk-a…wxyz", "sk-a…wxyz"},
		{"…", "…"},
		{"********", "…"},         // an earlier version's mask of an 8-character key
		{"sk-\xe2…\x80wxyz", "…"}, // an earlier version's mask that cut a character
		{"", "…"},
	} {
		if got := hintView(tc.hint); got != tc.want {
			t.Errorf("hintView(%q) = %q, want %q", tc.hint, got, tc.want)
		}
	}
}

// TestOpenAIKeyForm: a key must be 1 to 512 printable ASCII characters,
// and never shaped like the mask responses show, so that sending a project
// back as it was read cannot replace its key with the mask.
func TestOpenAIKeyForm(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	projectID := h.createProject("Team", rawKey1)

	for _, tc := range []struct {
		name, key string
		maskLike  bool
	}{
		{"the mask responses show", "sk-p…wxyz", true},
		{"the short-key mask", "…", true},
		{"an earlier version's mask", "************", true},
		{"a star inside", "sk-proj-abc*def", true},
		{"the marker inside", "sk-proj-abc…def", true},
		{"control character", "sk-proj-abc\u0001def", false},
		{"DEL", "sk-proj-abc\u007fdef", false},
		{"C1 control", "sk-proj-abc\u0085def", false},
		{"not ASCII", "sk-proj-äbc", false},
		{"tab", "sk-proj-abc\tdef", false},
		{"too long", "sk-" + strings.Repeat("a", maxOpenAIKeyLen-2), false},
		{"a mebibyte", strings.Repeat("a", 1<<20-100), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := mustJSON(t, map[string]any{"name": "n", "openai_api_key": tc.key})
			for _, r := range []req{
				{method: "POST", path: "/manage/projects", body: body},
				{method: "PATCH", path: "/manage/projects/" + projectID, body: mustJSON(t, map[string]any{"openai_api_key": tc.key})},
			} {
				out := h.do(r)
				if tc.name == "a mebibyte" && out.status == 413 {
					continue // with the JSON around it, over the body limit: refused too
				}
				wantError(t, out, 400, "invalid_request_error", "invalid_value", "openai_api_key")
				msg := out.body["error"].(map[string]any)["message"].(string)
				if tc.maskLike != strings.Contains(msg, "masked key") {
					t.Errorf("%s: message %q", r.method, msg)
				}
				if len(tc.key) > len(keyMaskMarker) && strings.Contains(msg, tc.key) {
					t.Errorf("%s: the message quotes the key", r.method)
				}
			}
		})
	}

	// The longest key accepted, and the shortest.
	for _, key := range []string{"sk-" + strings.Repeat("a", maxOpenAIKeyLen-3), "k"} {
		wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: mustJSON(t, map[string]any{"openai_api_key": key})}), 200)
	}
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: mustJSON(t, map[string]any{"openai_api_key": rawKey1})}), 200)
	h.inv.take()

	// A client that round-trips the project it read sends the mask back:
	// refused, and the real key stays.
	got := h.do(req{method: "GET", path: "/manage/projects/" + projectID})
	wantStatus(t, got, 200)
	roundTrip := map[string]any{}
	for _, k := range []string{"name", "openai_api_key", "active", "limits", "monthly_budget_usd", "cache_post", "allow_background", "allow_batches"} {
		roundTrip[k] = got.body[k]
	}
	out := h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: mustJSON(t, roundTrip)})
	wantError(t, out, 400, "invalid_request_error", "invalid_value", "openai_api_key")
	if msg := out.body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "leave openai_api_key out to keep the current one") {
		t.Errorf("message %q does not say how to keep the key", msg)
	}
	p, err := h.store.GetProject(ctx, projectID)
	if err != nil {
		t.Fatal(err)
	}
	if key, err := h.keys.Open(p.KeyCiphertext, p.KeyID); err != nil || key != rawKey1 {
		t.Errorf("after the round trip the key opens to %q, %v; want the real key", key, err)
	}
	wantInvalidated(t, h, nil, nil)
	// Without the key, the same round trip works.
	delete(roundTrip, "openai_api_key")
	wantStatus(t, h.do(req{method: "PATCH", path: "/manage/projects/" + projectID, body: mustJSON(t, roundTrip)}), 200)

	// A hint stored by an earlier version, which told a short key's length, shows as the marker.
	legacy := store.Project{ID: "proj_legacyhint", Name: "old", KeyCiphertext: p.KeyCiphertext, KeyID: p.KeyID, KeyHint: "********", Active: true}
	if err := h.store.CreateProject(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if got := h.do(req{method: "GET", path: "/manage/projects/proj_legacyhint"}).body["openai_api_key"]; got != "…" {
		t.Errorf("legacy hint shown as %v, want …", got)
	}
}

// TestListPaging walks the project and token lists page by page, and
// refuses bad page parameters and cursors that are not this listing's.
func TestListPaging(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	var projects []string
	for i := range 5 {
		projects = append(projects, h.createProject(fmt.Sprintf("p%d", i), rawKey1))
	}
	slices.Sort(projects) // one creation time: ordered by id
	var tokensA, all []string
	for i := range 7 {
		id := h.createToken(map[string]any{"project_id": projects[i%2]}).body["id"].(string)
		all = append(all, id)
		if i%2 == 0 {
			tokensA = append(tokensA, id)
		}
	}
	slices.Sort(tokensA)
	slices.Sort(all)

	walk := func(path string, limit int) (ids []string, pages int, cursors []string) {
		t.Helper()
		cursor := ""
		for pages = 1; pages < 100; pages++ {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			p := fmt.Sprintf("%s%slimit=%d", path, sep, limit)
			if cursor != "" {
				p += "&cursor=" + url.QueryEscape(cursor)
			}
			out := h.do(req{method: "GET", path: p})
			wantStatus(t, out, 200)
			data := out.body["data"].([]any)
			if len(data) > limit {
				t.Fatalf("%s: %d items", p, len(data))
			}
			for _, d := range data {
				ids = append(ids, d.(map[string]any)["id"].(string))
			}
			next, ok := out.body["next_cursor"].(string)
			if !ok {
				if v, present := out.body["next_cursor"]; !present || v != nil {
					t.Fatalf("%s: next_cursor = %v", p, v)
				}
				return ids, pages, cursors
			}
			cursors = append(cursors, next)
			cursor = next
		}
		t.Fatalf("%s: the walk does not end", path)
		return nil, 0, nil
	}
	for _, limit := range []int{1, 2, 4, 5, 6, 1000} {
		got, pages, _ := walk("/manage/projects", limit)
		if !slices.Equal(got, projects) || pages != max(1, (len(projects)+limit-1)/limit) {
			t.Errorf("projects with limit %d: %d pages %v, want %v", limit, pages, got, projects)
		}
		if got, _, _ := walk("/manage/tokens?project_id="+projects[0], limit); !slices.Equal(got, tokensA) {
			t.Errorf("tokens of A with limit %d: %v, want %v", limit, got, tokensA)
		}
		if got, _, _ := walk("/manage/tokens", limit); !slices.Equal(got, all) {
			t.Errorf("tokens with limit %d: %v, want %v", limit, got, all)
		}
	}

	// The default page holds 100 items.
	for i := range 100 {
		p := store.Project{ID: fmt.Sprintf("proj_z%03d", i), Name: "bulk", KeyCiphertext: "x", KeyID: "k", KeyHint: "…", CreatedAt: h.now.Add(time.Second)}
		if err := h.store.CreateProject(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	out := h.do(req{method: "GET", path: "/manage/projects"})
	wantStatus(t, out, 200)
	if n := len(out.body["data"].([]any)); n != 100 || out.body["next_cursor"] == nil {
		t.Fatalf("default page: %d projects, next_cursor %v", n, out.body["next_cursor"])
	}
	projectCursor := out.body["next_cursor"].(string)
	out = h.do(req{method: "GET", path: "/manage/projects?cursor=" + url.QueryEscape(projectCursor)})
	if n := len(out.body["data"].([]any)); n != 5 || out.body["next_cursor"] != nil {
		t.Errorf("second page: %d projects, next_cursor %v", n, out.body["next_cursor"])
	}
	_, _, tokenCursors := walk("/manage/tokens", 1)

	position, mac, _ := strings.Cut(projectCursor, ".")
	tampered := []byte(mac)
	tampered[0] ^= 1
	for _, tc := range []struct{ path, param string }{
		{"/manage/projects?limit=0", "limit"},
		{"/manage/projects?limit=1001", "limit"},
		{"/manage/projects?limit=ten", "limit"},
		{"/manage/tokens?limit=-1", "limit"},
		{"/manage/projects?cursor=" + position, "cursor"}, // what the store would take: no MAC
		{"/manage/projects?cursor=" + position + "." + string(tampered), "cursor"},
		{"/manage/projects?cursor=" + position + "x." + mac, "cursor"},
		{"/manage/projects?cursor=" + url.QueryEscape(tokenCursors[0]), "cursor"}, // another listing's
		{"/manage/tokens?cursor=" + url.QueryEscape(projectCursor), "cursor"},
		{"/manage/audit?cursor=" + url.QueryEscape(projectCursor), "cursor"},
		{"/manage/projects?cursor=.", "cursor"},
		{"/manage/projects?cursor=garbage", "cursor"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			wantError(t, h.do(req{method: "GET", path: tc.path}), 400, "invalid_request_error", "invalid_value", tc.param)
		})
	}
}

// authFailureCount reads llm_proxy_management_auth_failures_total{reason}.
func authFailureCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "llm_proxy_management_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no llm_proxy_management_auth_failures_total{reason=%q}", reason)
	return 0
}

// loginEvents returns the details of the auth.management_token events, in
// time order (then detail), with their other fields checked.
func loginEvents(t *testing.T, h *harness, address string) []string {
	t.Helper()
	events, _, err := h.store.ListAudit(context.Background(), store.AuditQuery{Action: store.AuditAuthManagementToken, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(events, func(a, b store.AuditEvent) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Detail, b.Detail)
	})
	var details []string
	for _, e := range events {
		if e.ClientAddress != address {
			continue
		}
		if e.Outcome != store.AuditOutcomeDenied || e.Actor != "" || e.ProjectID != "" {
			t.Errorf("login event %+v", e)
		}
		if one := !strings.Contains(e.Detail, "not recorded one by one"); one != (e.RequestID != "") {
			t.Errorf("event %q has request id %q", e.Detail, e.RequestID)
		}
		details = append(details, e.Detail)
	}
	return details
}

// TestLoginThrottle: wrong management tokens are failed logins, throttled
// per client address (an IPv6 client per /64), audited — the first few one
// by one, the rest summed up — and counted; a missing token is refused but
// is not a login.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 5, 6, 7, 8, 0, 0, time.UTC)
	clock := newTestClock(start)
	reg := prometheus.NewRegistry()
	h := newHarnessWith(t, harnessOptions{clock: clock, loginLimit: 5, loginWindow: time.Minute, registerer: reg})
	const a, b = "203.0.113.7", "198.51.100.9"
	from := func(addr string) map[string]string { return map[string]string{"X-Forwarded-For": addr} }
	wrong := func(addr string) resp {
		return h.do(req{method: "GET", path: "/manage/projects", auth: "Bearer not-the-token", header: from(addr)})
	}
	right := func(addr string) resp { return h.do(req{method: "GET", path: "/manage/projects", header: from(addr)}) }
	throttled := func(out resp, retryAfter string) {
		t.Helper()
		wantError(t, out, 429, "invalid_request_error", "rate_limit_exceeded", "")
		if got := out.header.Get("Retry-After"); got != retryAfter {
			t.Errorf("Retry-After = %q, want %q", got, retryAfter)
		}
	}

	for range 4 {
		wantError(t, wrong(a), 401, "invalid_request_error", "invalid_api_key", "")
	}
	for range 20 { // not logins: never throttled
		wantError(t, h.do(req{method: "GET", path: "/manage/projects", noAuth: true, header: from(a)}), 401, "invalid_request_error", "invalid_api_key", "")
	}
	wantStatus(t, right(b), 200)
	wantError(t, wrong(a), 401, "invalid_request_error", "invalid_api_key", "") // the 5th: answered, then throttled
	throttled(right(a), "60")                                                   // even the right token
	clock.Add(30 * time.Second)
	throttled(wrong(a), "30")
	throttled(h.do(req{method: "GET", path: "/manage/nope", noAuth: true, header: from(a)}), "30")
	wantStatus(t, right(b), 200) // another address is not affected

	for reason, want := range map[string]float64{"invalid_token": 5, "missing_token": 20, "throttled": 3} {
		if got := authFailureCount(t, reg, reason); got != want {
			t.Errorf("auth failures %s = %v, want %v", reason, got, want)
		}
	}
	window := start.Format(time.RFC3339) + " and " + start.Add(time.Minute).Format(time.RFC3339)
	want := []string{
		"throttled: 5 failed logins from 203.0.113.7 within 1m0s; every request from it is refused until " + start.Add(time.Minute).Format(time.RFC3339),
		"wrong management token (failure 1 in this window)",
		"wrong management token (failure 2 in this window)",
		"wrong management token (failure 3 in this window)",
	}
	if got := loginEvents(t, h, a); !slices.Equal(got, want) {
		t.Errorf("audit while throttled:\n got %q\nwant %q", got, want)
	}

	// The window ends: served again, and what was not recorded one by one
	// (failures 4 and 5, three refusals) is summed up in one event.
	clock.Add(30 * time.Second)
	wantStatus(t, right(a), 200)
	want = append(want, "2 more failed logins and 3 requests refused while throttled, from 203.0.113.7 between "+window+", not recorded one by one")
	if got := loginEvents(t, h, a); !slices.Equal(got, want) {
		t.Errorf("audit after the window:\n got %q\nwant %q", got, want)
	}
	wantError(t, wrong(a), 401, "invalid_request_error", "invalid_api_key", "") // a new window
	if got := loginEvents(t, h, a); len(got) != len(want)+1 || got[len(got)-1] != "wrong management token (failure 1 in this window)" {
		t.Errorf("a new window's first failure: %q", got)
	}
	if n := len(loginEvents(t, h, b)); n != 0 {
		t.Errorf("%d events for an address that never failed", n)
	}

	// IPv6: one /64 is one client.
	for range 5 {
		wantError(t, wrong("2001:db8::1"), 401, "invalid_request_error", "invalid_api_key", "")
	}
	throttled(right("2001:db8::2"), "60")
	wantStatus(t, right("2001:db8:0:1::1"), 200)
}

// TestLoginAuditAggregated: with throttling off, a flood of failed logins
// still costs the audit log a few events per address and window, not one
// per attempt.
func TestLoginAuditAggregated(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 5, 6, 7, 8, 0, 0, time.UTC)
	clock := newTestClock(start)
	h := newHarnessWith(t, harnessOptions{clock: clock, loginLimit: -1})
	const a = "203.0.113.8"
	for range 50 {
		out := h.do(req{method: "GET", path: "/manage/tokens", auth: "Bearer guess", header: map[string]string{"X-Forwarded-For": a}})
		wantError(t, out, 401, "invalid_request_error", "invalid_api_key", "")
	}
	if got := loginEvents(t, h, a); len(got) != loginAuditEach {
		t.Errorf("%d events for 50 failed logins in a window, want %d: %q", len(got), loginAuditEach, got)
	}
	clock.Add(time.Minute)
	wantStatus(t, h.do(req{method: "GET", path: "/manage/tokens", header: map[string]string{"X-Forwarded-For": "198.51.100.1"}}), 200)
	got := loginEvents(t, h, a)
	want := fmt.Sprintf("47 more failed logins and 0 requests refused while throttled, from %s between %s and %s, not recorded one by one",
		a, start.Format(time.RFC3339), start.Add(time.Minute).Format(time.RFC3339))
	if len(got) != loginAuditEach+1 || got[len(got)-1] != want {
		t.Errorf("after the window: %q\nwant the last to be %q", got, want)
	}
}

// TestLoginGuardBounded: the guard tracks a bounded number of addresses;
// beyond, new addresses share one entry, and entries whose window has ended
// make room again.
func TestLoginGuardBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newLoginGuard(2, time.Minute)
	addr := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }
	for i := range maxLoginClients + 50 {
		g.fail(addr(i), "", now)
	}
	if n := g.tracked(); n != maxLoginClients+1 {
		t.Fatalf("%d entries tracked, want %d (the table and the shared entry)", n, maxLoginClients+1)
	}
	// The shared entry is over the limit, but throttling it would lock out
	// every address not in the table.
	if wait, _ := g.check("192.0.2.1", now); wait != 0 {
		t.Errorf("an untracked address waits %s", wait)
	}
	if wait, _ := g.check(addr(maxLoginClients+10), now); wait != 0 {
		t.Errorf("an address counted in the shared entry waits %s", wait)
	}
	if wait, _ := g.check(addr(7), now); wait != 0 {
		t.Errorf("an address with one failure waits %s", wait)
	}
	g.fail(addr(7), "", now)
	if wait, _ := g.check(addr(7), now); wait != time.Minute {
		t.Errorf("a tracked address with two failures waits %s, want 1m", wait)
	}
	events := g.fail("192.0.2.2", "req_1", now.Add(time.Minute))
	if n := g.tracked(); n != 1 {
		t.Errorf("after the window, %d entries tracked, want 1", n)
	}
	// The summaries of the windows that ended, then the new failure.
	var summaries []string
	for _, e := range events[:len(events)-1] {
		summaries = append(summaries, e.ClientAddress+": "+e.Detail[:strings.Index(e.Detail, ", from ")])
	}
	slices.Sort(summaries)
	want := []string{
		addr(7) + ": 0 more failed logins and 1 requests refused while throttled",
		": 47 more failed logins and 0 requests refused while throttled", // many addresses: none recorded
	}
	if !slices.Equal(summaries, want) {
		t.Errorf("summaries = %q, want %q", summaries, want)
	}
	if last := events[len(events)-1]; last.ClientAddress != "192.0.2.2" || last.RequestID != "req_1" {
		t.Errorf("the new failure's event = %+v", last)
	}
}

func TestLoginClientKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"2001:db8::1", "2001:db8::/64"},
		{"2001:db8:0:0:ffff:1:2:3", "2001:db8::/64"},
		{"2001:db8:0:1::1", "2001:db8:0:1::/64"},
		{"::ffff:203.0.113.7", "::ffff:203.0.113.7"},
		{"not an address", "not an address"},
	} {
		if got := loginClientKey(tc.in); got != tc.want {
			t.Errorf("loginClientKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// recordingAudit is an audit log with Record, as *eventsink.AuditLog has.
type recordingAudit struct {
	mu       sync.Mutex
	recorded []store.AuditEvent
	written  []store.AuditEvent
}

func (a *recordingAudit) Record(ev store.AuditEvent) {
	a.mu.Lock()
	a.recorded = append(a.recorded, ev)
	a.mu.Unlock()
}

func (a *recordingAudit) Write(_ context.Context, ev store.AuditEvent) error {
	a.mu.Lock()
	a.written = append(a.written, ev)
	a.mu.Unlock()
	return nil
}

// TestLoginAuditIsBuffered: failed logins, which anyone can cause, go
// through the audit log's non-blocking Record when it has one.
func TestLoginAuditIsBuffered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	audit := &recordingAudit{}
	reg := prometheus.NewRegistry()
	opts := Options{Store: h.store, Keyring: h.keys, Invalidator: h.inv, ManagementToken: testManagementToken, Audit: audit, Registerer: reg}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(opts); err != nil { // a second server on the same registry shares the series
		t.Fatalf("second New on one registry: %v", err)
	}
	r := httptest.NewRequest("GET", "/manage/projects", nil)
	r.Header.Set("Authorization", "Bearer wrong")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != 401 {
		t.Fatalf("status %d", w.Code)
	}
	audit.mu.Lock()
	defer audit.mu.Unlock()
	if len(audit.recorded) != 1 || len(audit.written) != 0 || audit.recorded[0].Action != store.AuditAuthManagementToken ||
		audit.recorded[0].RequestID != w.Header().Get("X-Request-Id") {
		t.Errorf("recorded %+v, written %+v", audit.recorded, audit.written)
	}
	if got := authFailureCount(t, reg, "invalid_token"); got != 1 {
		t.Errorf("invalid_token = %v", got)
	}
}
