package adminui

import (
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

// maxSessions bounds the sessions held at once; when full, the one idle
// longest is dropped to make room.
const maxSessions = 1000

// session is one signed-in browser. Its fields are guarded by the
// sessions' mutex.
type session struct {
	id       string
	csrf     string
	created  time.Time
	lastSeen time.Time
	flash    string // a one-shot notice for the next page, e.g. "Token revoked."
}

// sessions holds the live sessions of this process. It is safe for
// concurrent use.
type sessions struct {
	idle   time.Duration
	maxAge time.Duration

	mu sync.Mutex
	m  map[string]*session // guarded by mu
}

func newSessions(idle, maxAge time.Duration) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, m: make(map[string]*session)}
}

// randomToken returns 256 random bits, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session at now.
func (s *sessions) create(now time.Time) *session {
	sess := &session{id: randomToken(), csrf: randomToken(), created: now, lastSeen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.evictLocked(now)
	}
	s.m[sess.id] = sess
	return sess
}

// evictLocked drops every expired session, and if none was, the one idle
// longest.
func (s *sessions) evictLocked(now time.Time) {
	var oldest *session
	for id, sess := range s.m {
		if s.expiredLocked(sess, now) {
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

func (s *sessions) expiredLocked(sess *session, now time.Time) bool {
	return now.Sub(sess.lastSeen) >= s.idle || now.Sub(sess.created) >= s.maxAge
}

// get returns the live session with id and marks it seen at now; an
// unknown, ended or expired id gives nil.
func (s *sessions) get(id string, now time.Time) *session {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[id]
	if sess == nil {
		return nil
	}
	if s.expiredLocked(sess, now) {
		delete(s.m, id)
		return nil
	}
	sess.lastSeen = now
	return sess
}

// end deletes the session with id; its cookie is refused from then on.
func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// setFlash leaves a notice for the session's next page.
func (s *sessions) setFlash(sess *session, msg string) {
	s.mu.Lock()
	sess.flash = msg
	s.mu.Unlock()
}

// takeFlash returns and clears the session's notice.
func (s *sessions) takeFlash(sess *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := sess.flash
	sess.flash = ""
	return msg
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
