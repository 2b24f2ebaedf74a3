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
// the database; the management API calls its Invalidate methods after every
// change, so a revoke or deactivation is enforced on the next request, and
// [Broadcast] carries those invalidations to every replica through Redis.
// Request counts are kept in memory and flushed to the store in batches (see
// [Authorizer.Flush]); enforcing caps and rates is package ratelimit's job.
package authz
