package adminui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of [Options.IdleTimeout] and [Options.MaxAge].
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
)

// contentSecurityPolicy allows the console's own static files and nothing
// else: no inline script or style, no framing, forms post only to itself.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// maxFormBytes bounds a form's body; the largest field is an OpenAI key.
const maxFormBytes = 64 << 10

// auditWriter stores an audit event; *eventsink.AuditLog provides it.
type auditWriter interface {
	Write(ctx context.Context, ev store.AuditEvent) error
}

// auditWriteTimeout bounds the wait for a sign-in or sign-out record.
const auditWriteTimeout = 5 * time.Second

// Options configures a [UI]. API and ManagementToken are required.
type Options struct {
	// API is the management API (an *adminapi.Server) the console calls in
	// process for everything it reads and changes.
	API http.Handler
	// ManagementToken is the token sign-in asks for, and that the console
	// presents to the API on behalf of a signed-in browser.
	ManagementToken string
	// TrustedHops is the API's: how many proxies append to X-Forwarded-For.
	TrustedHops int
	// Audit records sign-ins and sign-outs; nil records none (tests).
	Audit auditWriter
	// Metrics, if set, feeds the dashboard's health panel (the process's
	// Prometheus registry).
	Metrics prometheus.Gatherer
	// DeadLetters, if set, counts the usage events `llm-proxy dispatch`
	// gave up on (the length of its dead-letter stream), for the dashboard.
	DeadLetters func(ctx context.Context) (int64, error)
	// Redis, if set, holds the sessions, so that every replica serves every
	// signed-in browser and a sign-out ends the session everywhere; nil keeps
	// them in this process's memory.
	Redis redis.UniversalClient
	// RedisPrefix starts the Redis key of every session (e.g.
	// "llmproxy:admin:session:").
	RedisPrefix string
	// IdleTimeout ends a session after this long without a request; 0 means
	// [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// MaxAge ends a session this long after sign-in; 0 means [DefaultMaxAge].
	MaxAge time.Duration
	// Logger receives one error line per failed page.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// UI is the admin console, an http.Handler for everything under /admin/.
// It is safe for concurrent use.
type UI struct {
	api         http.Handler
	mgmtToken   string
	trustedHops int
	audit       auditWriter
	metrics     prometheus.Gatherer
	deadLetters func(ctx context.Context) (int64, error)
	sessions    sessionStore
	crossOrigin *http.CrossOriginProtection
	pages       map[string]*template.Template
	static      http.Handler
	log         zerolog.Logger
	now         func() time.Time
	mux         *http.ServeMux
}

// New returns the console, or an error naming what is missing.
func New(o Options) (*UI, error) {
	var errs []error
	if o.API == nil {
		errs = append(errs, errors.New("adminui: Options.API is required"))
	}
	if o.ManagementToken == "" {
		errs = append(errs, errors.New("adminui: Options.ManagementToken is required"))
	}
	pages, err := parsePages()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	static, _ := fs.Sub(staticFS, "static") // the directory is embedded
	u := &UI{
		api:         o.API,
		mgmtToken:   o.ManagementToken,
		trustedHops: o.TrustedHops,
		audit:       o.Audit,
		metrics:     o.Metrics,
		deadLetters: o.DeadLetters,
		sessions:    sessionsFor(o),
		crossOrigin: http.NewCrossOriginProtection(),
		pages:       pages,
		static:      http.StripPrefix("/admin/static/", noListing(http.FileServerFS(static))),
		log:         o.Logger,
		now:         o.Now,
		mux:         http.NewServeMux(),
	}
	u.routes()
	return u, nil
}

// sessionsFor returns the session store o asks for.
func sessionsFor(o Options) sessionStore {
	life := lifetime{idle: o.IdleTimeout, maxAge: o.MaxAge}
	if o.Redis != nil {
		return &redisSessions{rdb: o.Redis, prefix: o.RedisPrefix, life: life}
	}
	return newMemorySessions(life)
}

func (u *UI) routes() {
	u.mux.Handle("GET /admin/static/", u.static)
	u.mux.HandleFunc("GET /admin/login", u.loginPage)
	u.mux.HandleFunc("POST /admin/login", u.login)
	u.mux.HandleFunc("POST /admin/logout", u.signedIn(u.logout))

	u.mux.HandleFunc("GET /admin/{$}", u.signedIn(u.dashboard))
	u.mux.HandleFunc("GET /admin/projects", u.signedIn(u.projectsPage))
	u.mux.HandleFunc("POST /admin/projects", u.signedIn(u.createProject))
	u.mux.HandleFunc("GET /admin/projects/{id}", u.signedIn(u.projectPage))
	u.mux.HandleFunc("POST /admin/projects/{id}", u.signedIn(u.updateProject))
	u.mux.HandleFunc("POST /admin/projects/{id}/active", u.signedIn(u.setProjectActive))
	u.mux.HandleFunc("POST /admin/projects/{id}/key", u.signedIn(u.rotateKey))
	u.mux.HandleFunc("POST /admin/projects/{id}/capture", u.signedIn(u.setCapture))
	u.mux.HandleFunc("POST /admin/projects/{id}/rules", u.signedIn(u.setProjectRules))
	u.mux.HandleFunc("POST /admin/tokens/{id}/rules", u.signedIn(u.setTokenRules))
	u.mux.HandleFunc("GET /admin/tokens", u.signedIn(u.tokensPage))
	u.mux.HandleFunc("POST /admin/tokens", u.signedIn(u.createToken))
	u.mux.HandleFunc("GET /admin/tokens/{id}", u.signedIn(u.tokenPage))
	u.mux.HandleFunc("POST /admin/tokens/{id}", u.signedIn(u.updateToken))
	u.mux.HandleFunc("POST /admin/tokens/{id}/revoke", u.signedIn(u.revokeToken))
	u.mux.HandleFunc("GET /admin/usage", u.signedIn(u.usagePage))
	u.mux.HandleFunc("GET /admin/usage.csv", u.signedIn(u.usageCSV))
	u.mux.HandleFunc("GET /admin/audit", u.signedIn(u.auditPage))
	u.mux.HandleFunc("GET /admin/audit/{id}", u.signedIn(u.auditEventPage))
	u.mux.HandleFunc("GET /admin/cache", u.signedIn(u.cachePage))
	u.mux.HandleFunc("POST /admin/cache", u.signedIn(u.purgeCache))
}

// ServeHTTP sets the security headers every answer carries, refuses
// cross-origin state changes, then routes.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	if err := u.crossOrigin.Check(r); err != nil {
		u.forbidden(w, r, "This request came from another site and was refused.")
		return
	}
	if r.URL.Path == "/admin" {
		http.Redirect(w, r, "/admin/", http.StatusSeeOther)
		return
	}
	if _, pattern := u.mux.Handler(r); pattern == "" {
		u.renderError(w, r, http.StatusNotFound, "There is no such page.")
		return
	}
	u.mux.ServeHTTP(w, r)
}

// sessionHandler is a page or action of a signed-in browser.
type sessionHandler func(w http.ResponseWriter, r *http.Request, sess *session)

// signedIn wraps h: a request without a live session is sent to the
// sign-in page (a GET) or refused (a POST); a POST must carry the
// session's CSRF token.
func (u *UI) signedIn(h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := u.sessions.get(r.Context(), cookieValue(r, sessionCookie), u.now())
		if err != nil {
			u.fail(w, r, err)
			return
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/admin/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			u.forbidden(w, r, "Your session has ended. Sign in again.")
			return
		}
		if r.Method == http.MethodPost && !sameToken(r.PostFormValue(csrfField), sess.csrf) {
			u.forbidden(w, r, "This form has expired or did not come from this console. Reload the page and try again.")
			return
		}
		h(w, r, sess)
	}
}

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string // the navigation entry to mark current
	CSRF   string // the session's token, for forms
	Flash  string // a notice carried over a redirect
	Error  string // the API's refusal of what was just submitted
	Signed bool
	Data   any
}

// render writes the page name with data, for sess (nil before sign-in).
func (u *UI) render(w http.ResponseWriter, r *http.Request, sess *session, status int, name string, v view) {
	if sess != nil {
		v.Signed, v.CSRF = true, sess.csrf
		if v.Flash == "" {
			flash, err := u.sessions.takeFlash(r.Context(), sess)
			if err != nil {
				u.log.Warn().Err(err).Msg("admin session notice lost")
			}
			v.Flash = flash
		}
	}
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", v); err != nil {
		u.log.Error().Err(err).Str("page", name).Msg("admin page did not render")
		http.Error(w, "The page could not be shown.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// renderError shows msg on an error page with status.
func (u *UI) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// An error page of a signed-in browser keeps its navigation; one that
	// cannot tell (sessions unreachable) shows none.
	sess, _ := u.sessions.get(r.Context(), cookieValue(r, sessionCookie), u.now())
	u.render(w, r, sess, status, "error", view{Title: http.StatusText(status), Error: msg})
}

func (u *UI) forbidden(w http.ResponseWriter, r *http.Request, msg string) {
	u.renderError(w, r, http.StatusForbidden, msg)
}

// fail shows an error met while serving a page: the API's refusal with its
// status and message, anything else as a logged 500.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		u.renderError(w, r, ae.Status, ae.Message)
		return
	}
	u.log.Error().Err(err).Str("path", r.URL.Path).Msg("admin page failed")
	u.renderError(w, r, http.StatusInternalServerError, "Something went wrong; the server log has the details.")
}

// refusal returns the API's message when err is its refusal, and ok; any
// other error is not for the form.
func refusal(err error) (status int, msg string, ok bool) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status, ae.Message, true
	}
	return 0, "", false
}

// redirect ends a successful POST: a notice for the next page, then a GET.
func (u *UI) redirect(w http.ResponseWriter, r *http.Request, sess *session, to, flash string) {
	if flash != "" {
		if err := u.sessions.setFlash(r.Context(), sess, flash); err != nil {
			u.log.Warn().Err(err).Msg("admin session notice not kept")
		}
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// noListing answers 404 for a directory, which a file server would list.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// queryEscape escapes a query parameter value.
func queryEscape(s string) string { return url.QueryEscape(s) }

// pathEscape escapes a path segment.
func pathEscape(s string) string { return url.PathEscape(s) }

// parsePages parses each page template together with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template)
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("adminui: template %s: %w", base, err)
		}
		pages[base] = t
	}
	return pages, nil
}
