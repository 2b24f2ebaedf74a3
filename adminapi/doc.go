// Package adminapi is llm-proxy's REST management API: projects (tenants
// holding a real OpenAI key) and the proxy tokens issued for them. [New]
// returns a [Server], an http.Handler meant to be mounted at the root of the
// management listener; Envoy routes /manage/ to it with ext_proc disabled.
// openapi.yaml, embedded and returned by [OpenAPI], is the contract; it is
// also served at GET /manage/openapi.yaml. The response bodies are Go types
// of this package ([Project], [Token], [Limits], [UsageReport], [List],
// [USD]), so a client in Go — the admin console, which calls the server in
// process — decodes exactly what the server encodes.
//
// Routes:
//
//	GET    /manage/openapi.yaml                     this API's OpenAPI 3.0.3 document
//	POST   /manage/projects                         create a project → 201 project
//	GET    /manage/projects[?limit=&cursor=]        list projects, oldest first → 200 page
//	GET    /manage/projects/{id}                    get a project → 200 project
//	PATCH  /manage/projects/{id}                    change name, key, active, limits, budget, policy → 200 project
//	DELETE /manage/projects/{id}                    delete it and its tokens (usage is kept) → 204
//	POST   /manage/projects/{id}/tokens/revoke      revoke all its tokens → 200 {"revoked": n}
//	GET    /manage/projects/{id}/usage[?from=&to=]  usage and cost by day and model → 200 usage report
//	POST   /manage/tokens                           issue a token → 201 token with "token" secret
//	GET    /manage/tokens[?project_id=&limit=&cursor=]
//	                                                list tokens, oldest first → 200 page
//	GET    /manage/tokens/{id}                      get a token → 200 token
//	PATCH  /manage/tokens/{id}                      change name, active, expiry, cap, limits → 200 token
//	DELETE /manage/tokens/{id}                      revoke it (kept, inactive) → 200 token
//	GET    /manage/audit[?project_id=&action=&actor=&from=&to=&limit=&cursor=]
//	                                                the audit log, newest first → 200 page
//
// Contracts callers and clients may rely on:
//
//   - Every request, the OpenAPI document included, must carry
//     "Authorization: Bearer <management token>". The token is compared in
//     constant time on SHA-256 digests, so neither content nor length leaks.
//     Authentication runs before routing: without the token, every path
//     answers 401 with "WWW-Authenticate: Bearer".
//   - A request with an Authorization header but not the token is a failed
//     login. After Options.LoginFailureLimit of them from one client
//     address (an IPv6 client: its /64) within Options.LoginFailureWindow
//     of the first, every request from that address, even with the right
//     token, answers 429 with Retry-After until the window ends, so a
//     throttled client cannot tell a right guess from a wrong one. At most
//     10,000 addresses are tracked; the failures of further ones are
//     counted and audited together but not throttled, which would lock out
//     every new address, the administrators' included.
//     Failed logins are audited as [store.AuditAuthManagementToken]: the
//     first three per address and window one by one, the throttling when it
//     starts, and the rest (failures and refused requests) summed up in one
//     event once the window is over, through the audit log's non-blocking
//     Record when it has one. They are counted in
//     llm_proxy_management_auth_failures_total{reason} (missing_token,
//     invalid_token, throttled) when Options.Registerer is set. A missing
//     token is counted but is not a login: neither throttled nor audited.
//   - Every error, including ServeMux's 404 and 405 (which keeps its Allow
//     header), has OpenAI's shape {"error":{"message","type","param","code"}}
//     and is rendered by one function. param names the request field at
//     fault. A server error is a 500 "server_error" with a generic message;
//     its cause is logged once, with the request id.
//   - A project's OpenAI key is sealed with the [authz.Keyring] before it is
//     stored and only ever shown masked: its first and last four characters
//     (not bytes) around "…", or "…" alone for a key shorter than 24
//     characters, so the mask never tells the key's length. A key is 1 to
//     512 printable ASCII characters; one containing "…" or "*" — shaped
//     like a mask — is a 400, so that a client sending back the project it
//     read cannot replace the key with its mask. A token's secret is
//     returned once, by the call that creates it; the store keeps its
//     [authz.Hasher] HMAC. Neither appears in a log line or an error.
//   - After every change that can affect validation — token patch or
//     revocation, project patch, deletion or revoke-all — the Invalidator is
//     called before the response is written: InvalidateToken(id) for a
//     single token, InvalidateProject(id) for anything project-wide
//     (revoke-all makes one project call rather than one per token).
//   - Revocation (DELETE /manage/tokens/{id}, or revoke-all) is permanent;
//     PATCH active=false is a reversible deactivation, and PATCH active=true on
//     a revoked token is refused with 400.
//   - A token request naming a project that does not exist gets 400 with
//     param "project_id" and code "not_found": the route exists, the body is
//     what is wrong.
//   - Bodies are one JSON object of at most 1 MiB (413 beyond), decoded
//     strictly: invalid UTF-8, null or any other non-object, unknown fields,
//     wrong types and trailing data are 400s. Nested members are named by
//     their path, e.g. param "limits.tokens_per_minute". Names refuse
//     control characters (NUL included).
//   - No string reaches the store unchecked, so neither a NUL nor invalid
//     UTF-8 (which PostgreSQL refuses) can cause a 500. A path id that is
//     not 1–64 ASCII letters, digits, '_' or '-' names nothing: 404 without
//     a query. A project_id of another form is a 400 (for a token's
//     project, code "not_found" as below).
//   - Limits (requests_per_minute, tokens_per_minute, max_concurrent, on
//     projects and tokens) are integers of at least 1, or null for none; a
//     project's monthly_budget_usd is a number of dollars of at least 0 with
//     at most six decimals, or null for none, stored exactly as integer
//     micro-USD. On PATCH, each limits member sent is set (null clears it),
//     members left out keep their values, and "limits": null clears all.
//     Limit and budget changes invalidate like any other project or token
//     change.
//   - A project's policy switches are booleans, optional on create and
//     never null: cache_post (default false) caches its POST responses
//     without per-request opt-in; allow_background and allow_batches
//     (default true), when false, make the gateway refuse background
//     Responses and POST /v1/batches with 403. Projects created before the
//     switches existed allow both. Changing one invalidates like any other
//     project change, and its audit detail carries the new value of each
//     allow_ switch (e.g. "allow_batches=false"), as it does of active.
//   - Money in responses (monthly_budget_usd, cost_usd) is a JSON number
//     written exactly from micro-USD, with at most six decimals.
//   - Every operation that changes something (create, patch, delete,
//     revoke, revoke-all) and succeeds is recorded in the audit log exactly
//     once, through Options.Audit, after the store and the Invalidator and
//     before the response is written. A failed operation, or a PATCH that
//     changes nothing, is not recorded. The event names the action
//     ([store.AuditProjectCreate] …), the target and its project, the
//     request id, the actor ("management:" and the first 8 hex digits of
//     the SHA-256 of the management token — the token is shared, so this
//     tells tokens apart, not people) and the client address — or, for a
//     request handed over in process under [WithCaller] (the admin web
//     UI), the [Caller]'s actor and client address. If storing
//     the event fails, the operation still answers success — it has
//     happened — and the failure is logged at error with the request id;
//     the audit log counts it and retries the event.
//   - The client address is read from X-Forwarded-For, counting
//     Options.TrustedHops entries from the right (1: the address Envoy,
//     with use_remote_address, appended), or is the connection's peer with
//     TrustedHops 0, with too few entries, or with an entry that is not an
//     IP address. What a client puts in X-Forwarded-For itself is left of
//     the trusted entries and never recorded.
//   - Lists page by an opaque cursor: the audit log newest first (keyset on
//     time and id), projects and tokens oldest first (keyset on creation
//     time and id). Walking the pages sees every item that existed
//     throughout exactly once. limit is 1–1000 (default 100); the page is
//     {"object":"list","data":[…],"next_cursor":…}, next_cursor null on the
//     last page. Cursors are signed (HMAC, keyed from the management token)
//     and bound to their listing, so a cursor the API did not return —
//     forged, altered, garbled or another listing's — is a 400 with param
//     "cursor", never a query. For the audit log, from (inclusive) and to
//     (exclusive) are RFC 3339; an unknown action, a malformed time, from
//     after to or a bad limit is a 400 naming the parameter.
//   - Every response carries x-request-id (the caller's, if it is 1–128
//     visible ASCII characters, else a fresh one) and Cache-Control: no-store.
//     Each request is logged once at info with request_id, method, path,
//     route, client_address, status and duration; never a body or a header
//     value.
package adminapi
