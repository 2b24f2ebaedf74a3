package adminapi

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/store"
)

// projectStore is all the management API needs of the store: the union of
// what each handler group declares where it is used ([projectRecords],
// [tokenRecords], [auditReader], [usageReader]). [Options.Store] takes it
// as one value, so a caller passes one store and each group gets its part.
type projectStore interface {
	projectRecords
	tokenRecords
	auditReader
	usageReader
}

var _ projectStore = (*store.Store)(nil)

// invalidator drops cached validation state; *authz.Authorizer provides it.
type invalidator interface {
	InvalidateToken(id string)
	InvalidateProject(id string)
}

// Log field names, fixed so dashboards and queries can rely on them.
const (
	logRequestID = "request_id"
	logMethod    = "method"
	logPath      = "path"
	logRoute     = "route"
	logStatus    = "status"
	logDuration  = "duration"
)

// requestIDHeader carries the request id in and out.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds an incoming request id we are willing to echo and log.
const maxRequestIDLen = 128

//go:embed openapi.yaml
var openAPIDocument string

// OpenAPI returns the OpenAPI 3.0.3 document describing the API, as served at
// GET /manage/openapi.yaml. The caller owns the returned slice.
func OpenAPI() []byte { return []byte(openAPIDocument) }

// Options configures a [Server]. Store, Keyring, Invalidator and
// ManagementToken are required; Hasher must be the one the proxy validates
// tokens with (made by [authz.NewHasher]).
type Options struct {
	// Store holds projects, tokens and usage; a *store.Store, migrated.
	Store projectStore
	// Keyring seals projects' OpenAI keys before they are stored.
	Keyring *authz.Keyring
	// Hasher computes the stored form of newly issued proxy tokens.
	Hasher authz.Hasher
	// Invalidator is told, after every change that can affect validation
	// (token patch or revocation, project patch, deletion or revoke-all), which
	// token or project to drop from validation caches. Usually the
	// *authz.Authorizer, or whatever fans the call out to every replica.
	Invalidator interface {
		InvalidateToken(id string)
		InvalidateProject(id string)
	}
	// ManagementToken is the bearer token every request must present.
	ManagementToken string
	// Audit stores the record of every management operation that takes
	// effect, before its response is written; usually the
	// *eventsink.AuditLog. Nil records nothing, which is for tests and
	// tools: a server must set it.
	Audit auditWriter
	// TrustedHops is how many proxies in front of the server append the
	// address of their peer to X-Forwarded-For; the audit log records the
	// address the outermost of them saw (see [DefaultTrustedHops], 1 for
	// Envoy with use_remote_address). 0 ignores X-Forwarded-For and records
	// the connection's peer. Set it to exactly the number of such proxies on
	// every path to the server: with more, a client that reaches the
	// server past them can choose its recorded address.
	TrustedHops int
	// Cache is the response cache that POST /manage/cache/purge empties;
	// nil: the endpoint says the cache is off.
	Cache cachePurger
	// LoginFailureLimit is how many requests with a wrong management token
	// one client address (an IPv6 client: its /64) may send within
	// LoginFailureWindow, counted from its first. Past it, every request
	// from the address — even with the right token — is refused with 429
	// and Retry-After until the window ends. 0 means
	// [DefaultLoginFailureLimit]; a negative value never throttles (failed
	// logins are still audited and counted).
	LoginFailureLimit int
	// LoginFailureWindow is the window of LoginFailureLimit; 0 means
	// [DefaultLoginFailureWindow].
	LoginFailureWindow time.Duration
	// Registerer, if set, receives llm_proxy_management_auth_failures_total.
	Registerer prometheus.Registerer
	// Logger receives one info line per request and one error line per
	// server error. The zero Logger logs nothing.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the management API, an http.Handler for everything under
// /manage/. It is safe for concurrent use.
type Server struct {
	projects     projectRecords // the handlers of projects.go
	tokens       tokenRecords   // the handlers of tokens.go
	auditEvents  auditReader    // GET /manage/audit
	usage        usageReader    // GET /manage/projects/{id}/usage
	keys         *authz.Keyring
	hasher       authz.Hasher
	invalidate   invalidator
	tokenDigest  [sha256.Size]byte
	actor        string // the audit actor: "management:" and a fingerprint of the token
	auditLog     auditWriter
	trustedHops  int
	cache        cachePurger
	cursors      cursorSigner
	logins       *loginGuard
	authFailures *authFailures
	log          zerolog.Logger
	now          func() time.Time
	mux          *http.ServeMux
}

// New returns a Server, or an error naming every required option that is missing.
func New(o Options) (*Server, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("adminapi: Options.Store is required"))
	}
	if o.Keyring == nil {
		errs = append(errs, errors.New("adminapi: Options.Keyring is required"))
	}
	if o.Invalidator == nil {
		errs = append(errs, errors.New("adminapi: Options.Invalidator is required"))
	}
	if o.ManagementToken == "" {
		errs = append(errs, errors.New("adminapi: Options.ManagementToken is required; the management API has no open mode"))
	}
	if o.TrustedHops < 0 {
		errs = append(errs, fmt.Errorf("adminapi: Options.TrustedHops is %d; it counts proxies, 0 or more", o.TrustedHops))
	}
	if o.LoginFailureWindow < 0 {
		errs = append(errs, fmt.Errorf("adminapi: Options.LoginFailureWindow is %s; it must be positive, or 0 for the default", o.LoginFailureWindow))
	}
	metrics, err := newAuthFailures(o.Registerer)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.LoginFailureLimit == 0 {
		o.LoginFailureLimit = DefaultLoginFailureLimit
	}
	if o.LoginFailureWindow == 0 {
		o.LoginFailureWindow = DefaultLoginFailureWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	digest := sha256.Sum256([]byte(o.ManagementToken))
	s := &Server{
		projects:    o.Store,
		tokens:      o.Store,
		auditEvents: o.Store,
		usage:       o.Store,
		keys:        o.Keyring,
		hasher:      o.Hasher,
		invalidate:  o.Invalidator,
		tokenDigest: digest,
		// 32 bits of the token's SHA-256: enough to tell one management
		// token from its replacement, useless for recovering a 256-bit token.
		actor:        "management:" + hex.EncodeToString(digest[:4]),
		auditLog:     o.Audit,
		trustedHops:  o.TrustedHops,
		cache:        o.Cache,
		cursors:      newCursorSigner(digest),
		logins:       newLoginGuard(o.LoginFailureLimit, o.LoginFailureWindow),
		authFailures: metrics,
		log:          o.Logger,
		now:          o.Now,
		mux:          http.NewServeMux(),
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /manage/openapi.yaml", s.serveOpenAPI)

	s.mux.HandleFunc("POST /manage/projects", s.createProject)
	s.mux.HandleFunc("GET /manage/projects", s.listProjects)
	s.mux.HandleFunc("GET /manage/projects/{id}", s.getProject)
	s.mux.HandleFunc("PATCH /manage/projects/{id}", s.updateProject)
	s.mux.HandleFunc("DELETE /manage/projects/{id}", s.deleteProject)
	s.mux.HandleFunc("POST /manage/projects/{id}/tokens/revoke", s.revokeProjectTokens)
	s.mux.HandleFunc("GET /manage/projects/{id}/usage", s.projectUsage)

	s.mux.HandleFunc("POST /manage/tokens", s.createToken)
	s.mux.HandleFunc("GET /manage/tokens", s.listTokens)
	s.mux.HandleFunc("GET /manage/tokens/{id}", s.getToken)
	s.mux.HandleFunc("PATCH /manage/tokens/{id}", s.updateToken)
	s.mux.HandleFunc("DELETE /manage/tokens/{id}", s.revokeToken)

	s.mux.HandleFunc("GET /manage/audit", s.listAudit)
	s.mux.HandleFunc("GET /manage/audit/{id}", s.getAudit)
	s.mux.HandleFunc("GET /manage/audit/verify", s.verifyAudit)
	s.mux.HandleFunc("POST /manage/cache/purge", s.purgeCache)
}

// ServeHTTP assigns the request id, logs the request, bounds the body,
// refuses throttled client addresses, authenticates, then routes. Every
// response carries x-request-id and Cache-Control: no-store.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	reqID := requestID(r.Header.Get(requestIDHeader))
	client := clientAddress(r, s.trustedHops)
	caller := callerFrom(r.Context())
	if caller.ClientAddress != "" {
		client = caller.ClientAddress
	}
	log := s.log.With().Str(logRequestID, reqID).Logger()
	ctx := withRequestInfo(log.WithContext(r.Context()), requestInfo{id: reqID, clientAddress: client, actor: caller.Actor})
	r = r.WithContext(ctx)

	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	sw.Header().Set(requestIDHeader, reqID)
	sw.Header().Set("Cache-Control", "no-store")
	if r.Body != nil {
		// The original writer, so net/http also closes the connection after a 413.
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	}

	wait, ended := s.logins.check(client, start)
	s.auditDenials(r, ended)
	switch {
	case wait > 0:
		s.refuseThrottled(sw, r, wait)
	case s.authorized(r):
		s.route(sw, r)
	default:
		s.refuseUnauthenticated(sw, r, client, start)
	}

	ev := log.Info().
		Str(logMethod, r.Method).
		Str(logPath, r.URL.Path).
		Str(logClientAddress, client).
		Int(logStatus, sw.status).
		Dur(logDuration, s.now().Sub(start))
	if r.Pattern != "" {
		ev = ev.Str(logRoute, r.Pattern)
	}
	ev.Msg("management request")
}

// authorized reports whether r carries the management token. Both sides are
// hashed first, so the constant-time comparison is over equal lengths and
// leaks neither the token's content nor its length.
func (s *Server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.tokenDigest[:]) == 1
}

// route dispatches to the mux, rendering its 404 and 405 answers in the
// OpenAI error shape (ServeMux writes them as plain text).
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	// No pattern: ServeMux would answer 404, 405 (with Allow) or redirect an
	// unclean path that matches nothing. Capture its verdict, not its body.
	verdict := &headerRecorder{header: make(http.Header)}
	s.mux.ServeHTTP(verdict, r)
	if verdict.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", verdict.header.Get("Allow"))
		writeError(w, r, &apiError{
			Status:  http.StatusMethodNotAllowed,
			Type:    typeInvalidRequest,
			Code:    codeMethodNotAllowed,
			Message: fmt.Sprintf("Method %s is not allowed on %s; allowed: %s.", r.Method, r.URL.Path, verdict.header.Get("Allow")),
		})
		return
	}
	writeError(w, r, &apiError{
		Status:  http.StatusNotFound,
		Type:    typeInvalidRequest,
		Code:    codeNotFound,
		Message: fmt.Sprintf("Unknown route: %s %s.", r.Method, r.URL.Path),
	})
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(openAPIDocument))
}

// requestID returns the incoming id when it is safe to echo and log (1 to
// maxRequestIDLen visible ASCII characters), else a fresh one.
func requestID(in string) string {
	if in == "" || len(in) > maxRequestIDLen {
		return ids.New("req")
	}
	for i := 0; i < len(in); i++ {
		if in[i] <= ' ' || in[i] > '~' {
			return ids.New("req")
		}
	}
	return in
}

// statusWriter remembers the status written, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// headerRecorder captures a handler's status and headers and discards its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }

func (h *headerRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
