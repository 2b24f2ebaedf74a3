package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// Interface guards: the real types satisfy what the package declares.
var (
	_ projectStore = (*store.Store)(nil)
	_ invalidator  = (*authz.Authorizer)(nil)
)

const testManagementToken = "mgmt-test-token-0123456789abcdef"

// recordingInvalidator remembers every invalidation, in order, and passes it
// on to next when set.
type recordingInvalidator struct {
	next     invalidator
	mu       sync.Mutex
	tokens   []string
	projects []string
}

func (r *recordingInvalidator) InvalidateToken(id string) {
	r.mu.Lock()
	r.tokens = append(r.tokens, id)
	r.mu.Unlock()
	if r.next != nil {
		r.next.InvalidateToken(id)
	}
}

func (r *recordingInvalidator) InvalidateProject(id string) {
	r.mu.Lock()
	r.projects = append(r.projects, id)
	r.mu.Unlock()
	if r.next != nil {
		r.next.InvalidateProject(id)
	}
}

// takeLastToken removes the last token invalidation recorded and reports
// whether it was for id.
func (r *recordingInvalidator) takeLastToken(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.tokens)
	if n == 0 || r.tokens[n-1] != id {
		return false
	}
	r.tokens = r.tokens[:n-1]
	return true
}

// take returns and clears what was recorded.
func (r *recordingInvalidator) take() (tokens, projects []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tokens, projects = r.tokens, r.projects
	r.tokens, r.projects = nil, nil
	return tokens, projects
}

// harness is one management API over a fresh, migrated SQLite store, served
// by httptest and checked against openapi.yaml on every call.
type harness struct {
	t      testing.TB
	store  *store.Store
	keys   *authz.Keyring
	hasher authz.Hasher
	inv    *recordingInvalidator
	audit  *storeAudit
	authz  *authz.Authorizer  // only with harnessOptions.authorizer
	cache  *cachefilter.Cache // only with harnessOptions.cache
	logs   *testenv.LogBuffer
	now    time.Time
	srv    *httptest.Server
	router routers.Router
	doc    *openapi3.T

	mu        sync.Mutex
	responses []string // every response's headers and body, for leak checks
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, harnessOptions{})
}

// harnessOptions varies the harness; the zero value is the plain one.
type harnessOptions struct {
	// wrapStore, if set, wraps the store the server uses.
	wrapStore func(*store.Store) projectStore
	// authorizer, if set, builds a real validator whose cache the server's
	// invalidations reach; it is then in harness.authz.
	authorizer bool
	// trustedHops, if set, is Options.TrustedHops; else DefaultTrustedHops.
	trustedHops *int
	// noAudit leaves Options.Audit nil.
	noAudit bool
	// cache gives the server an in-memory response cache to purge.
	cache bool
	// postgres runs the store on a fresh PostgreSQL database (testenv)
	// instead of SQLite.
	postgres bool
	// clock, if set, is the server's clock instead of the fixed h.now.
	clock *testClock
	// loginLimit and loginWindow are Options.LoginFailureLimit and
	// LoginFailureWindow; registerer is Options.Registerer.
	loginLimit  int
	loginWindow time.Duration
	registerer  prometheus.Registerer
}

// testClock is a clock a test moves by hand, safe to read from handlers.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock(now time.Time) *testClock { return &testClock{now: now} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// storeAudit is the harness's audit writer: it stores each event at once,
// like eventsink.AuditLog.Write, or fails while fail is set.
type storeAudit struct {
	st     *store.Store
	fail   atomic.Bool
	writes atomic.Int64 // calls, failed ones included
}

func (a *storeAudit) Write(ctx context.Context, ev store.AuditEvent) error {
	a.writes.Add(1)
	if a.fail.Load() {
		return errors.New("audit store unavailable")
	}
	if ev.ID == "" {
		ev.ID = ids.New("aud")
	}
	return a.st.AddAudit(ctx, []store.AuditEvent{ev})
}

// newHarnessWith is newHarness, varied by o.
func newHarnessWith(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	dbURL := filepath.Join(t.TempDir(), "llm-proxy.db")
	if o.postgres {
		dbURL = testenv.NewPostgresDB(t)
	}
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx, "up", io.Discard); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	keys, err := authz.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := authz.NewHasher(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, store: st, keys: keys, hasher: hasher,
		inv:   &recordingInvalidator{},
		audit: &storeAudit{st: st},
		logs:  &testenv.LogBuffer{},
		now:   time.Now().UTC().Truncate(time.Second),
	}
	var ps projectStore = st
	if o.wrapStore != nil {
		ps = o.wrapStore(st)
	}
	if o.authorizer {
		h.authz = authz.NewAuthorizer(st, hasher, keys, authz.Options{CacheTTL: time.Hour})
		h.inv.next = h.authz
	}
	opts := Options{
		Store:           ps,
		Keyring:         keys,
		Hasher:          hasher,
		Invalidator:     h.inv,
		ManagementToken: testManagementToken,
		Audit:           h.audit,
		TrustedHops:     DefaultTrustedHops,
		Logger:          zerolog.New(h.logs),
		Now:             func() time.Time { return h.now },
	}
	if o.trustedHops != nil {
		opts.TrustedHops = *o.trustedHops
	}
	if o.noAudit {
		opts.Audit = nil
	}
	if o.clock != nil {
		h.now = o.clock.Now()
		opts.Now = o.clock.Now
	}
	opts.LoginFailureLimit, opts.LoginFailureWindow, opts.Registerer = o.loginLimit, o.loginWindow, o.registerer
	if o.cache {
		h.cache = cachefilter.NewMemory(cachefilter.Options{MaxBytes: 1 << 20})
		opts.Cache = h.cache
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = httptest.NewServer(s)
	t.Cleanup(h.srv.Close)

	loader := openapi3.NewLoader()
	h.doc, err = loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := h.doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is invalid: %v", err)
	}
	h.router, err = gorillamux.NewRouter(h.doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return h
}

// req describes one call. Auth "" sends the management token; noAuth sends none.
type req struct {
	method, path string
	body         string
	auth         string
	noAuth       bool
	header       map[string]string
}

// resp is a response with its body read and, when JSON, decoded.
type resp struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// do sends r, checks what every response must have, validates the response
// against openapi.yaml (and the request too when the answer is a success),
// and records it for leak checks.
func (h *harness) do(r req) resp {
	h.t.Helper()
	httpReq := h.newRequest(r)
	res, err := h.srv.Client().Do(httpReq)
	if err != nil {
		h.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	out := resp{status: res.StatusCode, header: res.Header, raw: raw}

	var hdr strings.Builder
	res.Header.Write(&hdr)
	h.mu.Lock()
	h.responses = append(h.responses, hdr.String()+"\n"+string(raw))
	h.mu.Unlock()

	if res.Header.Get("X-Request-Id") == "" {
		h.t.Errorf("%s %s: no x-request-id header", r.method, r.path)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		h.t.Errorf("%s %s: Cache-Control = %q, want no-store", r.method, r.path, got)
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			h.t.Fatalf("%s %s: response is not a JSON object: %v\n%s", r.method, r.path, err, raw)
		}
	}
	h.validate(r, out)
	return out
}

func (h *harness) newRequest(r req) *http.Request {
	h.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	httpReq, err := http.NewRequest(r.method, h.srv.URL+r.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if r.body != "" {
		httpReq.Header.Set("Content-Type", "application/json")
	}
	switch {
	case r.noAuth:
	case r.auth != "":
		httpReq.Header.Set("Authorization", r.auth)
	default:
		httpReq.Header.Set("Authorization", "Bearer "+testManagementToken)
	}
	for k, v := range r.header {
		httpReq.Header.Set(k, v)
	}
	return httpReq
}

// validate checks the response against openapi.yaml: the operation's
// documented status, headers and body schema. A request that matches no
// operation (unknown path, wrong method) must still get an Error body.
func (h *harness) validate(r req, out resp) {
	h.t.Helper()
	ctx := context.Background()
	valReq := h.newRequest(r)
	route, params, err := h.router.FindRoute(valReq)
	if err != nil {
		switch out.status {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnauthorized, http.StatusTooManyRequests:
		default:
			h.t.Errorf("%s %s: no operation in openapi.yaml (%v) yet status %d", r.method, r.path, err, out.status)
		}
		if err := h.doc.Components.Schemas["Error"].Value.VisitJSON(jsonValue(h.t, out.raw)); err != nil {
			h.t.Errorf("%s %s: body does not match the Error schema: %v\n%s", r.method, r.path, err, out.raw)
		}
		return
	}
	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true,
	}
	in := &openapi3filter.RequestValidationInput{Request: valReq, PathParams: params, Route: route, Options: opts}
	if out.status < 300 {
		// What the server accepted, the document must accept too.
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			h.t.Errorf("%s %s: accepted request does not match openapi.yaml: %v", r.method, r.path, err)
		}
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 out.status,
		Header:                 out.header,
		Body:                   io.NopCloser(bytes.NewReader(out.raw)),
		Options:                opts,
	})
	if err != nil {
		h.t.Errorf("%s %s: response does not match openapi.yaml: %v\n%s", r.method, r.path, err, out.raw)
	}
}

// jsonValue decodes raw the way kin-openapi expects to visit it.
func jsonValue(t testing.TB, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Errorf("not JSON: %v\n%s", err, raw)
	}
	return v
}

// responsesContaining counts the recorded responses (headers and body) containing s.
func (h *harness) responsesContaining(s string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.responses {
		if strings.Contains(r, s) {
			n++
		}
	}
	return n
}

// wantStatus fails the test unless out has the given status.
func wantStatus(t testing.TB, out resp, status int) {
	t.Helper()
	if out.status != status {
		t.Fatalf("status = %d, want %d; body: %s", out.status, status, out.raw)
	}
}

// wantError checks an error response's status, type, code and param ("" = null).
func wantError(t testing.TB, out resp, status int, typ, code, param string) {
	t.Helper()
	wantStatus(t, out, status)
	e, ok := out.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object: %s", out.raw)
	}
	if e["type"] != typ || e["code"] != code {
		t.Errorf("type, code = %v, %v; want %s, %s", e["type"], e["code"], typ, code)
	}
	switch {
	case param == "" && e["param"] != nil:
		t.Errorf("param = %v, want null", e["param"])
	case param != "" && e["param"] != param:
		t.Errorf("param = %v, want %s", e["param"], param)
	}
	if msg, _ := e["message"].(string); param != "" && !strings.Contains(msg, param) {
		t.Errorf("message %q does not name %s", msg, param)
	}
}

// createProject creates a project with the given raw OpenAI key and returns its id.
func (h *harness) createProject(name, key string) string {
	h.t.Helper()
	out := h.do(req{method: "POST", path: "/manage/projects", body: mustJSON(h.t, map[string]any{"name": name, "openai_api_key": key})})
	wantStatus(h.t, out, http.StatusCreated)
	return out.body["id"].(string)
}

// createToken issues a token with the given request fields and returns the response.
func (h *harness) createToken(fields map[string]any) resp {
	h.t.Helper()
	out := h.do(req{method: "POST", path: "/manage/tokens", body: mustJSON(h.t, fields)})
	wantStatus(h.t, out, http.StatusCreated)
	// A creation invalidates the new token on every replica: authz may
	// remember its secret as unknown for a few seconds.
	if id, _ := out.body["id"].(string); !h.inv.takeLastToken(id) {
		h.t.Errorf("creating token %s did not invalidate it", id)
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sorted returns a sorted copy, for comparing id sets.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
