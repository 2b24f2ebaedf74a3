// Package adminui is llm-proxy's admin web console, served under /admin/ by
// the management HTTP server next to the REST API (Envoy routes /admin/ to it
// with ext_proc disabled, as it does /manage/).
//
// One source of truth: every page reads and every form writes through the
// management API itself — [New] takes the adminapi http.Handler and calls it
// in process, so each validation rule, each refusal message, the audit
// record and the cache invalidation are the API's. What the API refuses, a
// page shows as the API's message. The console adds only what a browser
// needs: sessions, CSRF protection, HTML.
//
// Contracts:
//
//   - Sign-in takes the management token and checks it by calling the API
//     with it, so a wrong token is the API's failed login: throttled per
//     client address and audited (auth.management_token) by the API.
//   - The session cookie holds a random 256-bit id, never the management
//     token. The session is kept on the server — in Redis when
//     Options.Redis is set (under the SHA-256 of the id, shared by every
//     replica), else in this process's memory (a browser must then stay on
//     one replica) — ends after Options.IdleTimeout without a request or
//     Options.MaxAge after sign-in, and is deleted by signing out, after
//     which its id is refused everywhere. Each sign-in makes a new id and
//     ends the session the browser still held.
//     The cookie is HttpOnly, SameSite=Strict, Path=/admin, and Secure when
//     the request came over TLS (r.TLS, or X-Forwarded-Proto: https from
//     Envoy).
//   - Every POST — sign-in included — carries a CSRF token in its form
//     (the session's, or before sign-in one bound to a short-lived cookie)
//     compared in constant time, and passes net/http's cross-origin
//     protection (Sec-Fetch-Site, else Origin against Host): either failing
//     is a 403 and changes nothing.
//   - Every response carries a strict Content-Security-Policy (no inline
//     script or style; scripts, styles and images only from /admin/static/),
//     X-Frame-Options: DENY, X-Content-Type-Options: nosniff,
//     Referrer-Policy: same-origin and Cache-Control: no-store.
//   - Changes made from the console are audited by the API with the actor
//     "admin-ui" and the client address the trusted proxies saw
//     (adminapi.Caller); sign-in and sign-out are audited too.
//   - A new token's secret is shown once, in the answer to the form that
//     created it; it is never stored by the console.
//   - Charts are server-drawn SVG; the only script is the console's own
//     small static file (the copy button), and everything is embedded in the
//     binary: the console works offline.
package adminui
