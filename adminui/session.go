package adminui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Cookie names. Both are scoped to Path=/admin.
const (
	sessionCookie = "llmproxy_admin"       // the session id
	loginCookie   = "llmproxy_admin_login" // the sign-in form's CSRF token, before a session exists
)

// csrfField is the form field every POST carries its CSRF token in.
const csrfField = "csrf"

// loginCookieMaxAge bounds how long a sign-in form stays usable.
const loginCookieMaxAge = 30 * time.Minute

// maxSessions bounds the sessions held in memory at once; when full, the
// one idle longest is dropped to make room.
const maxSessions = 1000

// session is one signed-in browser.
type session struct {
	id       string
	csrf     string
	created  time.Time
	lastSeen time.Time
	flash    string // a one-shot notice for the next page, e.g. "Token revoked."
}

// sessionStore keeps the sessions: in this process's memory, or in Redis,
// shared by every replica. get returns nil, nil for an id that names no
// live session (unknown, ended or expired); it marks a live one seen.
type sessionStore interface {
	create(ctx context.Context, now time.Time) (*session, error)
	get(ctx context.Context, id string, now time.Time) (*session, error)
	end(ctx context.Context, id string) error
	setFlash(ctx context.Context, sess *session, msg string) error
	takeFlash(ctx context.Context, sess *session) (string, error)
}

// lifetime is when a session ends: idle after its last request, maxAge
// after sign-in, whichever comes first.
type lifetime struct {
	idle, maxAge time.Duration
}

func (l lifetime) expired(created, lastSeen, now time.Time) bool {
	return now.Sub(lastSeen) >= l.idle || now.Sub(created) >= l.maxAge
}

// left is how long a session seen at now may live unless seen again.
func (l lifetime) left(created, now time.Time) time.Duration {
	return min(l.idle, created.Add(l.maxAge).Sub(now))
}

func newSession(now time.Time) *session {
	return &session{id: randomToken(), csrf: randomToken(), created: now, lastSeen: now}
}

// memorySessions keeps sessions in this process. It is safe for
// concurrent use.
type memorySessions struct {
	life lifetime

	mu sync.Mutex
	m  map[string]*session // guarded by mu, with the sessions' fields
}

var _ sessionStore = (*memorySessions)(nil)

func newMemorySessions(life lifetime) *memorySessions {
	return &memorySessions{life: life, m: make(map[string]*session)}
}

func (s *memorySessions) create(_ context.Context, now time.Time) (*session, error) {
	sess := newSession(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.evictLocked(now)
	}
	s.m[sess.id] = sess
	return sess, nil
}

// evictLocked drops every expired session, and if none was, the one idle
// longest.
func (s *memorySessions) evictLocked(now time.Time) {
	var oldest *session
	for id, sess := range s.m {
		if s.life.expired(sess.created, sess.lastSeen, now) {
			delete(s.m, id)
			continue
		}
		if oldest == nil || sess.lastSeen.Before(oldest.lastSeen) {
			oldest = sess
		}
	}
	if len(s.m) >= maxSessions && oldest != nil {
		delete(s.m, oldest.id)
	}
}

func (s *memorySessions) get(_ context.Context, id string, now time.Time) (*session, error) {
	if id == "" {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[id]
	if sess == nil {
		return nil, nil
	}
	if s.life.expired(sess.created, sess.lastSeen, now) {
		delete(s.m, id)
		return nil, nil
	}
	sess.lastSeen = now
	return sess, nil
}

func (s *memorySessions) end(_ context.Context, id string) error {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
	return nil
}

func (s *memorySessions) setFlash(_ context.Context, sess *session, msg string) error {
	s.mu.Lock()
	sess.flash = msg
	s.mu.Unlock()
	return nil
}

func (s *memorySessions) takeFlash(_ context.Context, sess *session) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := sess.flash
	sess.flash = ""
	return msg, nil
}

// secureRequest reports whether the browser reached us over TLS: directly,
// or through Envoy, which sets X-Forwarded-Proto to the scheme its client
// used.
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// setCookie sets an /admin cookie with the attributes every console cookie
// has; maxAge < 0 deletes it, 0 makes it last as long as the browser runs.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/admin",
		HttpOnly: true,
		Secure:   secureRequest(r),
		SameSite: http.SameSiteStrictMode,
	}
	switch {
	case maxAge < 0:
		c.MaxAge = -1
	case maxAge > 0:
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}

// cookieValue returns the value of r's cookie name, or "".
func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// sameToken compares two CSRF tokens in constant time; an empty one never matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// randomToken returns 256 random bits, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return base64.RawURLEncoding.EncodeToString(b)
}
