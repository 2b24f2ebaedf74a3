// Package predecessor imports the database of the standalone proxy llm-proxy
// replaces (its SQLite file or PostgreSQL schema) into llm-proxy's store, so
// a team moves without re-issuing a token: `llm-proxy import predecessor`.
//
// What it reads, tolerant of the predecessor's schema versions:
//
//   - projects(id, name, openai_api_key or api_key, is_active, created_at,
//     updated_at, deactivated_at): the key in clear or "enc:v1:" + base64 of
//     a 12-byte nonce and the AES-256-GCM ciphertext (no additional data)
//     under the predecessor's ENCRYPTION_KEY.
//   - tokens(token, id, project_id, expires_at, is_active, request_count,
//     max_requests, created_at, last_used_at, cache_hit_count, …): token is
//     the secret ("sk-…") or, with hashing on, its lowercase hex SHA-256.
//   - audit_events(id, timestamp, action, actor, project_id, request_id,
//     correlation_id, client_ip, method, path, user_agent, outcome, reason,
//     token_id, metadata).
//
// What it writes, through [store.Store]: projects with their ids, their keys
// re-sealed under llm-proxy's encryption key; tokens flagged legacy with
// their expiry, activity, counts and caps, stored under llm-proxy's HMAC
// when the secret was in clear and under its SHA-256 otherwise (authz looks
// legacy secrets up both ways); audit events with their original times, as
// action [store.AuditPredecessorEvent].
//
// Every key is opened before anything is written, so a key that cannot be
// decrypted stops the import with nothing changed, naming its project. Ids
// are kept (or derived deterministically), and what exists already is
// skipped, so running the import twice changes nothing the second time.
package predecessor
