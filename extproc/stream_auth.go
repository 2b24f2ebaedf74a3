package extproc

import (
	"strings"
)

// checkRoute refuses any method and path the allowlist does not name, before
// the token is even looked at: unknown URLs never reach OpenAI.
func (st *stream) checkRoute(h headers) error {
	r, err := st.srv.routes.match(st.method, st.path)
	if err != nil {
		return err
	}
	st.route = r
	if r.Body == "json" && !strings.HasPrefix(strings.ToLower(h.get("content-type")), "application/json") {
		return errNotJSON
	}
	return nil
}

// authenticate validates the proxy token and counts the request.
func (st *stream) authenticate(h headers) error {
	token, ok := bearer(h.get("authorization"))
	if !ok {
		return errMissingToken
	}
	p, err := st.srv.auth.AuthenticateFrom(st.ctx, st.clientAddress, token)
	if err != nil {
		return &tokenError{err: err, token: token}
	}
	st.principal = p
	st.logReady = false // its lines name the token and project from now on
	return nil
}

// bearer extracts the credential of an "Authorization: Bearer …" header. The
// scheme is case-insensitive (RFC 9110).
func bearer(v string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
