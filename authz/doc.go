// Package authz decides who a request belongs to: it mints and verifies proxy
// tokens, seals and opens projects' OpenAI keys, and turns a bearer token into a
// [Principal] that carries the real key to swap in.
//
// Secrets never leave this package in clear except as [Principal.OpenAIKey], which
// the ext_proc server writes into the upstream Authorization header and nowhere
// else, and as [Authorizer.ProjectKey], which the sidecar uses the same way to
// poll OpenAI for work a project still owes a charge for. Tokens are stored
// only as an HMAC-SHA-256 ([Hasher]); keys only sealed with AES-256-GCM under a
// key id ([Keyring]), so a copy of the database is useless without the
// process's secrets.
//
// [Authorizer] caches validated tokens in memory so the hot path does not touch
// the database; the management API must call its Invalidate methods after
// every change, token creation included (see [Authorizer.InvalidateToken]),
// so a revoke or deactivation is enforced on the next request, and
// [Broadcast] carries those invalidations to every replica through Redis.
// Every invalidation starts a new cache generation: a store read that was in
// flight when it happened is never cached, so it cannot put a revoked token
// back for the cache TTL.
//
// Invalid tokens are cheap, so spraying them costs the store and the audit
// log little:
//
//   - a malformed token never reaches the store, and an unknown one is
//     remembered for a few seconds ([Options.NegativeTTL], bounded by
//     [Options.NegativeCacheSize]), so repeating it costs no query;
//   - [Authorizer.AuthenticateFrom] counts failures per client address and,
//     past [Options.FailureLimit] per [Options.FailureWindow], refuses the
//     address with a [*FailureLimitError] (a 429) before the store is asked;
//   - [Authorizer.ShouldAudit] tells the caller which denials to audit one
//     by one, and [Authorizer.DenialSummaries] hands over the counts of the
//     rest, one summary per address, reason and window.
//
// Request counts are kept in memory and flushed to the store in batches (see
// [Authorizer.Flush]); enforcing caps and rates is package ratelimit's job.
package authz
