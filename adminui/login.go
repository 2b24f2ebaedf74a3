package adminui

import (
	"context"
	"net/http"
	"strings"

	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/store"
)

// loginView is the sign-in page's data.
type loginView struct {
	Next string
}

// loginPage shows the sign-in form with a fresh CSRF token bound to a
// short-lived cookie (there is no session yet to bind it to).
func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	if sess, _ := u.sessions.get(r.Context(), cookieValue(r, sessionCookie), u.now()); sess != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	u.showLogin(w, r, http.StatusOK, "")
}

func (u *UI) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	csrf := randomToken()
	setCookie(w, r, loginCookie, csrf, loginCookieMaxAge)
	next := r.FormValue("next")
	u.render(w, r, nil, status, "login", view{Title: "Sign in", CSRF: csrf, Error: msg, Data: loginView{Next: safeNext(next)}})
}

// login checks the token by asking the API with it: a wrong token is the
// API's failed login (throttled and audited by it, for the client's
// address), and its answer is what the form shows.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	if !sameToken(r.PostFormValue(csrfField), cookieValue(r, loginCookie)) {
		u.forbidden(w, r, "This sign-in form has expired or did not come from this console. Reload the page and try again.")
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		u.showLogin(w, r, http.StatusBadRequest, "Enter the management token.")
		return
	}
	err := u.call(r, apiCall{method: "GET", path: "/manage/projects?limit=1", token: token}, nil)
	if status, msg, ok := refusal(err); ok {
		if status == http.StatusUnauthorized {
			msg = "That is not the management token."
		}
		u.showLogin(w, r, status, msg)
		return
	}
	if err != nil {
		u.fail(w, r, err)
		return
	}
	// A new id on every sign-in (no fixation); a session the browser still
	// held ends.
	if err := u.sessions.end(r.Context(), cookieValue(r, sessionCookie)); err != nil {
		u.fail(w, r, err)
		return
	}
	sess, err := u.sessions.create(r.Context(), u.now())
	if err != nil {
		u.fail(w, r, err)
		return
	}
	setCookie(w, r, sessionCookie, sess.id, 0)
	setCookie(w, r, loginCookie, "", -1)
	u.record(r, store.AuditAdminSignIn, "signed in to the admin console")
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

// logout ends the session: its id is refused from now on.
func (u *UI) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	if err := u.sessions.end(r.Context(), sess.id); err != nil {
		// The session would outlive its sign-out: say so, keep the cookie.
		u.fail(w, r, err)
		return
	}
	setCookie(w, r, sessionCookie, "", -1)
	u.record(r, store.AuditAdminSignOut, "signed out of the admin console")
	http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
}

// record audits a sign-in or sign-out, as the API audits its operations.
func (u *UI) record(r *http.Request, action, detail string) {
	if u.audit == nil {
		return
	}
	ev := store.AuditEvent{
		ID: ids.New("aud"), Time: u.now().UTC(), Action: action, Actor: actor,
		RequestID: r.Header.Get("X-Request-Id"), ClientAddress: u.clientAddress(r),
		Outcome: store.AuditOutcomeSuccess, Detail: detail,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditWriteTimeout)
	defer cancel()
	if err := u.audit.Write(ctx, ev); err != nil {
		u.log.Error().Err(err).Str("audit_action", action).Msg("audit record of an admin console session not stored")
	}
}

// safeNext keeps a post-sign-in destination inside the console, so the
// sign-in page cannot be used to send a browser elsewhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/admin/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/admin/"
	}
	return next
}
