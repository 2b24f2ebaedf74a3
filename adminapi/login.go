package adminapi

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/metric"
	"github.com/llm-proxy/llm-proxy/store"
)

// Defaults of the failed-login throttle ([Options.LoginFailureLimit] and
// [Options.LoginFailureWindow]).
const (
	DefaultLoginFailureLimit  = 10
	DefaultLoginFailureWindow = time.Minute
)

const (
	// maxLoginClients bounds the client addresses whose failures are
	// tracked at once. When the table is full even after dropping the
	// addresses whose window has ended, the failures of further addresses
	// are counted and audited together in one entry, but not throttled:
	// memory stays bounded however many addresses an attacker has, and
	// throttling them together would lock out every new address, the
	// administrators' included.
	maxLoginClients = 10_000
	// loginAuditEach is how many failed logins per address and window are
	// audited one by one. The rest are summed up in one event when the
	// window ends, so a flood of attempts costs a few rows, not one each.
	loginAuditEach = 3
	// overflowClient is the key of the shared entry of a full table.
	overflowClient = "(other addresses)"
)

// Reasons of llm_proxy_management_auth_failures_total.
const (
	reasonMissingToken = "missing_token" // no Authorization header
	reasonInvalidToken = "invalid_token" // a wrong management token: a failed login
	reasonThrottled    = "throttled"     // refused with 429: the address failed too often
)

// loginGuard counts failed management logins per client address in fixed
// windows that start at an address's first failure. After limit failures
// the address is throttled until its window ends. It decides what the
// audit log gets: the first loginAuditEach failures of a window, the start
// of throttling, and, once the window is over, one summary of what was not
// recorded one by one. It is safe for concurrent use.
type loginGuard struct {
	limit  int // failures per window before throttling; < 0: never throttle
	window time.Duration

	mu        sync.Mutex
	clients   map[string]*loginClient // guarded by mu
	lastSweep time.Time               // guarded by mu
}

// loginClient is one address's (or IPv6 /64's) current window.
type loginClient struct {
	address  string // the first failing address, which summaries name
	start    time.Time
	failures int // failed logins in the window
	refused  int // requests refused (429) in the window
}

func newLoginGuard(limit int, window time.Duration) *loginGuard {
	return &loginGuard{limit: limit, window: window, clients: make(map[string]*loginClient)}
}

// loginClientKey is what failures are counted by: the IP address, or for
// IPv6 its /64, which one client usually holds whole.
func loginClientKey(address string) string {
	a, err := netip.ParseAddr(address)
	if err != nil || !a.Is6() || a.Is4In6() {
		return address
	}
	p, _ := a.Prefix(64) // a valid IPv6 address always has a /64
	return p.String()
}

// check reports how long a request from address must wait before it is
// served: 0 when the address is not throttled. A throttled request is
// counted as refused. It also returns the summaries of windows that have
// ended, for the audit log.
func (g *loginGuard) check(address string, now time.Time) (time.Duration, []store.AuditEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	events := g.sweepLocked(now, false)
	key := loginClientKey(address)
	c := g.clients[key]
	if c == nil {
		return 0, events
	}
	end := c.start.Add(g.window)
	if !now.Before(end) {
		events = append(events, g.endLocked(key, c)...)
		return 0, events
	}
	if g.limit < 0 || c.failures < g.limit {
		return 0, events
	}
	c.refused++
	return end.Sub(now), events
}

// fail records a failed login from address, in the request requestID, and
// returns what the audit log gets for it: the failure itself while the
// window has had at most loginAuditEach, the start of throttling when it is
// the limit-th, plus summaries of windows that have ended.
func (g *loginGuard) fail(address, requestID string, now time.Time) []store.AuditEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	events := g.sweepLocked(now, false)
	key := loginClientKey(address)
	c := g.clients[key]
	if c != nil && !now.Before(c.start.Add(g.window)) {
		events = append(events, g.endLocked(key, c)...)
		c = nil
	}
	if c == nil {
		if len(g.clients) >= maxLoginClients {
			events = append(events, g.sweepLocked(now, true)...)
		}
		if len(g.clients) >= maxLoginClients {
			key = overflowClient
			c = g.clients[key]
		}
		if c == nil {
			c = &loginClient{address: address, start: now}
			if key == overflowClient {
				c.address = "" // many addresses
			}
			g.clients[key] = c
		}
	}
	c.failures++
	if c.failures <= loginAuditEach {
		events = append(events, loginEvent(now, address, requestID,
			fmt.Sprintf("wrong management token (failure %d in this window)", c.failures)))
	}
	if c.failures == g.limit && key != overflowClient {
		events = append(events, loginEvent(now, address, requestID, fmt.Sprintf(
			"throttled: %d failed logins from %s within %s; every request from it is refused until %s",
			c.failures, key, g.window, c.start.Add(g.window).UTC().Format(time.RFC3339))))
	}
	return events
}

// sweepLocked drops the entries whose window has ended and returns their
// summaries; without force, at most once per window.
func (g *loginGuard) sweepLocked(now time.Time, force bool) []store.AuditEvent {
	if !force && now.Sub(g.lastSweep) < g.window {
		return nil
	}
	g.lastSweep = now
	var events []store.AuditEvent
	for key, c := range g.clients {
		if !now.Before(c.start.Add(g.window)) {
			events = append(events, g.endLocked(key, c)...)
		}
	}
	return events
}

// endLocked drops an entry whose window has ended and returns the summary
// of what its window did not record one by one, if anything.
func (g *loginGuard) endLocked(key string, c *loginClient) []store.AuditEvent {
	delete(g.clients, key)
	unrecorded := c.failures - min(c.failures, loginAuditEach)
	if unrecorded == 0 && c.refused == 0 {
		return nil
	}
	end := c.start.Add(g.window)
	return []store.AuditEvent{loginEvent(end, c.address, "", fmt.Sprintf(
		"%d more failed logins and %d requests refused while throttled, from %s between %s and %s, not recorded one by one",
		unrecorded, c.refused, key, c.start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339)))}
}

// tracked returns how many entries the guard holds, for tests.
func (g *loginGuard) tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.clients)
}

// loginEvent is an audit event about failed logins from address; requestID
// is "" for a summary of several requests.
func loginEvent(at time.Time, address, requestID, detail string) store.AuditEvent {
	return store.AuditEvent{
		Time:          at.UTC(),
		Action:        store.AuditAuthManagementToken,
		RequestID:     requestID,
		ClientAddress: address,
		Outcome:       store.AuditOutcomeDenied,
		Detail:        detail,
	}
}

// auditRecorder is the non-blocking way into an audit log, for events of
// refused requests, which an attacker can cause at will;
// *eventsink.AuditLog provides it.
type auditRecorder interface {
	Record(ev store.AuditEvent)
}

// auditDenials records events about refused logins: through Record when the
// audit log has it (buffered, never blocking), else through Write.
func (s *Server) auditDenials(r *http.Request, events []store.AuditEvent) {
	if s.auditLog == nil || len(events) == 0 {
		return
	}
	if rec, ok := s.auditLog.(auditRecorder); ok {
		for _, ev := range events {
			rec.Record(ev)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditWriteTimeout)
	defer cancel()
	for _, ev := range events {
		if err := s.auditLog.Write(ctx, ev); err != nil {
			zerolog.Ctx(r.Context()).Error().Err(err).Str(logAuditAction, ev.Action).
				Msg("audit record of a failed management login not stored")
		}
	}
}

// authFailures counts refused requests by reason; nil counts nothing.
type authFailures struct {
	total *prometheus.CounterVec
}

func newAuthFailures(reg prometheus.Registerer) (*authFailures, error) {
	if reg == nil {
		return nil, nil
	}
	c := metric.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "llm_proxy_management_auth_failures_total",
		Help: "Management API requests refused before routing, by reason: missing_token (no Authorization header), " +
			"invalid_token (a wrong management token: a failed login) or throttled (429: the client address failed too often).",
	}, []string{"reason"}))
	// Every reason from the start, so rates are defined at once.
	for _, r := range []string{reasonMissingToken, reasonInvalidToken, reasonThrottled} {
		c.WithLabelValues(r)
	}
	return &authFailures{total: c}, nil
}

func (m *authFailures) inc(reason string) {
	if m != nil {
		m.total.WithLabelValues(reason).Inc()
	}
}

// refuseUnauthenticated answers a request without the management token:
// 401, counted, and, when it presented a wrong token, a failed login for
// its address.
func (s *Server) refuseUnauthenticated(w http.ResponseWriter, r *http.Request, client string, now time.Time) {
	if r.Header.Get("Authorization") == "" {
		s.authFailures.inc(reasonMissingToken)
	} else {
		s.authFailures.inc(reasonInvalidToken)
		s.auditDenials(r, s.logins.fail(client, requestInfoFrom(r.Context()).id, now))
	}
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeError(w, r, &apiError{
		Status:  http.StatusUnauthorized,
		Type:    typeInvalidRequest,
		Code:    codeInvalidAPIKey,
		Message: "Missing or invalid management token. Send it as 'Authorization: Bearer TOKEN'.",
	})
}

// refuseThrottled answers a request from a throttled address: 429 with
// Retry-After, whatever token it carries, so that a throttled client
// cannot tell a right guess from a wrong one.
func (s *Server) refuseThrottled(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	s.authFailures.inc(reasonThrottled)
	secs := int64(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	writeError(w, r, &apiError{
		Status:  http.StatusTooManyRequests,
		Type:    typeInvalidRequest,
		Code:    codeRateLimited,
		Message: fmt.Sprintf("Too many failed management logins from your address; try again in %d seconds.", max(secs, 1)),
	})
}
