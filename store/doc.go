// Package store keeps llm-proxy's durable state — projects and their proxy
// tokens, their limits, the daily usage roll-up, the deferred charges of
// work that outlives its request, and the audit log — in SQL, behind one
// concrete type, [Store].
//
// Two backends share one schema and one set of queries:
//
//   - SQLite (pure Go, no cgo) is the embedded default, so `llm-proxy serve`
//     works on one machine with nothing else installed. [Open] takes a file
//     path (optionally prefixed with "sqlite://" or "file:").
//   - PostgreSQL (through pgx) is for production and for several replicas.
//     [Open] takes a "postgres://" or "postgresql://" URL.
//
// The schema is a set of goose migrations embedded in the binary and applied
// with [Store.Migrate]. Both backends run the very same SQL: times are BIGINT
// unix microseconds (NULL for a nil *time.Time), flags are BOOLEAN, sealed keys
// are TEXT, and queries use $N placeholders, which SQLite also accepts. Times
// therefore round-trip at microsecond precision and always come back in UTC.
//
// Contracts callers rely on:
//
//   - Every method takes a context first and wraps its errors with what it was
//     doing and the id involved; a missing row is [ErrNotFound] and a duplicate
//     id or token hash is [ErrConflict] (test with errors.Is).
//   - Neither a token secret nor an OpenAI key passes through this package in
//     clear: tokens are stored as an HMAC (Token.Hash) and keys sealed
//     (Project.KeyCiphertext). Errors never carry the database password.
//   - Operations that touch several rows (deleting a project with its tokens,
//     revoking all of a project's tokens, flushing usage counters, adding
//     to the usage roll-up, settling a deferred charge) are atomic.
//   - Limits ([Limits]) and the monthly budget are nullable: nil is
//     "unlimited", and a value round-trips exactly, 0 included. Money is
//     integer micro-USD (millionths of a dollar), never floating point.
//   - The usage roll-up (one row per project, UTC day, model and price
//     version) only grows: [Store.AddUsage] adds to it, concurrently from any
//     number of replicas without losing an addition. It is billing history,
//     so deleting a project keeps its usage.
//   - A deferred charge ([Deferred]) is the cost reserved for a background
//     Response or a Batch, owed until it is settled from OpenAI's record.
//     [Store.SettleDeferred] settles a charge exactly once, whichever
//     replica or call comes first, and adds its usage to the roll-up in the
//     same transaction, so usage is never added twice nor without the
//     charge being marked settled. Charges are kept once settled, and like
//     usage they outlive their project: money owed is still owed.
//     [Store.OutstandingMicroUSD] is what a restarted budget adds to the
//     recorded cost.
//   - The audit log ([AuditEvent]) is append-only: [Store.AddAudit] stores
//     a batch atomically and skips ids already stored, so a writer may retry
//     a batch. [Store.ListAudit] pages it newest first with an opaque
//     keyset cursor on (time, id), so a walk through the pages sees each
//     event that existed when it began exactly once, whatever is added
//     meanwhile. Like usage, the audit log outlives the projects it is
//     about. The action names ([AuditProjectCreate] …) are defined here, so
//     every writer shares them.
//   - [Store.ListProjectsPage] and [Store.ListTokensPage] page the project
//     and token lists oldest first with the same kind of keyset cursor, on
//     (created_at, id). A cursor is accepted only in the form a listing
//     writes it (canonical base64 of a decimal time and an id of visible
//     ASCII), so a bad one is [ErrInvalidCursor], never a query that
//     PostgreSQL refuses.
//   - A Store is safe for concurrent use and holds no package-level state.
//
// The package does not cache: validation on the request path is expected to
// go through authz's in-memory cache, with [Store.AddTokenUsage] as the cheap,
// batched way to flush hot-path counters back.
package store
