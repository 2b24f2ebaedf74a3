package adminui

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/eventsink"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

const testToken = "mgmt-ui-test-token-0123456789abcdef"

// harness is the console over a real management API over a fresh, migrated
// SQLite store, with the real audit log, served by httptest.
type harness struct {
	t     *testing.T
	store *store.Store
	audit *eventsink.AuditLog
	api   *adminapi.Server
	srv   *httptest.Server
	logs  *testenv.LogBuffer
	opts  Options // the console's, for replicas
}

type harnessOptions struct {
	loginLimit int              // adminapi's LoginFailureLimit; 0: its default
	now        func() time.Time // the console's clock; nil: time.Now
	metrics    prometheus.Gatherer
	dead       func(context.Context) (int64, error)
	redis      bool               // sessions in Redis (testenv's), under a prefix of the test's own
	cache      *cachefilter.Cache // the response cache the API purges; nil: off
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "llm-proxy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx, "up", io.Discard); err != nil {
		t.Fatal(err)
	}
	keys, err := authz.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := authz.NewHasher(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	auditLog, err := eventsink.NewAuditLog(st, eventsink.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auditLog.Close(context.Background()) })
	apiOpts := adminapi.Options{
		Store: st, Keyring: keys, Hasher: hasher,
		Invalidator:       authz.NewAuthorizer(st, hasher, keys, authz.Options{}),
		ManagementToken:   testToken,
		Audit:             auditLog,
		TrustedHops:       adminapi.DefaultTrustedHops,
		LoginFailureLimit: o.loginLimit,
	}
	if o.cache != nil { // a nil *Cache in the interface would not read as "off"
		apiOpts.Cache = o.cache
	}
	api, err := adminapi.New(apiOpts)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	opts := Options{API: api, ManagementToken: testToken, TrustedHops: adminapi.DefaultTrustedHops,
		Audit: auditLog, Logger: zerolog.New(logs), Now: o.now, Metrics: o.metrics, DeadLetters: o.dead}
	if o.redis {
		opts.Redis = testenv.RedisClient(t)
		opts.RedisPrefix = fmt.Sprintf("test:adminui:%d:", time.Now().UnixNano())
		t.Cleanup(func() { clearPrefix(t, opts.Redis, opts.RedisPrefix) })
	}
	h := &harness{t: t, store: st, audit: auditLog, api: api, logs: logs, opts: opts}
	h.srv = h.replica()
	return h
}

// replica serves another console (and the API) with the same options, as
// a second llm-proxy would.
func (h *harness) replica() *httptest.Server {
	h.t.Helper()
	ui, err := New(h.opts)
	if err != nil {
		h.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/manage/", h.api)
	mux.Handle("/admin/", ui)
	mux.Handle("/admin", ui)
	srv := httptest.NewServer(mux)
	h.t.Cleanup(srv.Close)
	return srv
}

// clearPrefix deletes the test's session keys.
func clearPrefix(t *testing.T, rdb redis.UniversalClient, prefix string) {
	testenv.ForEachNode(t, rdb, func(ctx context.Context, node redis.UniversalClient) error {
		keys, err := node.Keys(ctx, prefix+"*").Result()
		if err != nil || len(keys) == 0 {
			return err
		}
		for _, k := range keys {
			node.Del(ctx, k)
		}
		return nil
	})
}

// browser is a client with its own cookie jar that does not follow
// redirects, so each answer can be looked at.
type browser struct {
	h      *harness
	base   string // the server it talks to
	client *http.Client
	header http.Header // sent with every request
}

func (h *harness) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{h: h, base: h.srv.URL, header: http.Header{}, client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// answer is a response with its body read.
type answer struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values) answer {
	b.h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.h.t.Fatal(err)
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.client.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		b.h.t.Fatal(err)
	}
	return answer{status: res.StatusCode, header: res.Header, body: string(raw)}
}

func (b *browser) get(path string) answer { return b.do("GET", path, nil) }

// post sends form with the CSRF token of the page at from.
func (b *browser) post(from, path string, form url.Values) answer {
	b.h.t.Helper()
	form.Set(csrfField, csrfOf(b.h.t, b.get(from)))
	return b.do("POST", path, form)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, p answer) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token in the page (status %d):\n%s", p.status, p.body)
	}
	return m[1]
}

// signIn signs b in with token and returns the answer to the form.
func (b *browser) signIn(token string) answer {
	b.h.t.Helper()
	return b.post("/admin/login", "/admin/login", url.Values{"token": {token}})
}

func (b *browser) mustSignIn() {
	b.h.t.Helper()
	if p := b.signIn(testToken); p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/" {
		b.h.t.Fatalf("sign-in: %d %s", p.status, p.header.Get("Location"))
	}
}

// auditEvents returns the stored audit events of action, newest first,
// after flushing what the audit log buffered.
func (h *harness) auditEvents(action string) []store.AuditEvent {
	h.t.Helper()
	if err := h.audit.Flush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	events, _, err := h.store.ListAudit(context.Background(), store.AuditQuery{Action: action, Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	return events
}

func (h *harness) projectCount() int {
	h.t.Helper()
	ps, _, err := h.store.ListProjectsPage(context.Background(), store.PageQuery{Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	return len(ps)
}
