package store

import (
	"errors"
	"time"

	"github.com/llm-proxy/llm-proxy/policy"
)

// Errors returned by [Store] methods; callers test them with errors.Is.
var (
	// ErrNotFound means the project or token does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a row with the same unique key already exists.
	ErrConflict = errors.New("conflict")
	// ErrInvalidCursor means an [AuditQuery.Cursor] or [PageQuery.Cursor]
	// is not one that the listing returned.
	ErrInvalidCursor = errors.New("invalid cursor")
)

// Project is a tenant: it owns the real OpenAI key and the proxy tokens issued for it.
// The key is only ever held sealed (see authz.Keyring); KeyHint is the masked form
// that may be shown to people.
type Project struct {
	ID            string
	Name          string
	KeyCiphertext string // sealed OpenAI key, opaque to the store
	KeyID         string // id of the encryption key that sealed it, for rotation
	KeyHint       string // masked OpenAI key, e.g. "sk-a…wxyz"
	Active        bool
	Limits        Limits
	// MonthlyBudgetMicroUSD caps the project's spend per calendar month (UTC),
	// in millionths of a US dollar; nil means no budget.
	MonthlyBudgetMicroUSD *int64
	// CachePOST opts the project's POST requests into the response cache
	// without each client asking (Cache-Control: public).
	CachePOST bool
	// AllowBackground lets the project's tokens start background Responses
	// ("background": true), whose cost is settled after the response (see
	// [Deferred]); false refuses them. AllowBatches does the same for
	// Batches. Projects that predate the flags allow both; [Store.CreateProject]
	// stores them as given, so a zero Project allows neither.
	AllowBackground bool
	AllowBatches    bool
	// Capture says whether request and response bodies are copied into
	// usage events, and how; the zero value captures nothing.
	Capture policy.Capture
	// Rules say which models, parameter values, body sizes and browser
	// origins its requests may use; the zero value allows everything.
	Rules     policy.Rules
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ProjectUpdate changes a project. Pointer fields change when non-nil, and
// the key fields change together. Limits replaces all three limits when
// SetLimits is true; MonthlyBudgetMicroUSD changes when SetMonthlyBudget is
// true (nil then removes the budget).
type ProjectUpdate struct {
	Name                  *string
	KeyCiphertext         *string
	KeyID                 *string
	KeyHint               *string
	Active                *bool
	SetLimits             bool
	Limits                Limits
	SetMonthlyBudget      bool
	MonthlyBudgetMicroUSD *int64
	CachePOST             *bool
	AllowBackground       *bool
	AllowBatches          *bool
	Capture               *policy.Capture // replaces the settings whole
	Rules                 *policy.Rules   // replaces the rules whole
}

// Limits are the rate limits of a project or of a token; a nil field means
// unlimited. The store keeps the values as given: it is the management API
// that accepts only values of at least 1.
type Limits struct {
	RequestsPerMinute *int64
	TokensPerMinute   *int64 // prompt plus completion tokens
	MaxConcurrent     *int64 // requests in flight at once
}

// Token is a proxy token. Only the HMAC of its secret is stored (Hash); Prefix is the
// short, non-secret beginning shown to people so they can recognise it.
type Token struct {
	ID        string // public id, safe to log
	ProjectID string
	Name      string
	// Hash is the hex HMAC-SHA-256 of the secret, or for a legacy token
	// whose predecessor kept only a hash, [LegacySHA256Prefix] and the hex
	// SHA-256 of the secret.
	Hash          string
	Prefix        string
	Active        bool
	ExpiresAt     *time.Time // nil: never expires
	MaxRequests   *int64     // nil: no lifetime cap
	RequestCount  int64
	CacheHitCount int64
	LastUsedAt    *time.Time
	RevokedAt     *time.Time
	Limits        Limits
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// Legacy marks a token imported from the predecessor proxy: its secret
	// is the predecessor's "sk-…" string, not one of ours.
	Legacy bool
	// Rules narrow the project's (policy.Combined); the zero value adds
	// nothing to them.
	Rules policy.Rules
}

// LegacySHA256Prefix starts the [Token.Hash] of a legacy token stored as the
// predecessor's plain SHA-256 of its secret; no HMAC starts with it.
const LegacySHA256Prefix = "sha256:"

// TokenUpdate changes a token. Pointer fields change when non-nil; the nullable
// fields ExpiresAt and MaxRequests change when their Set flag is true (nil then
// clears), and Limits replaces all three limits when SetLimits is true.
type TokenUpdate struct {
	Name           *string
	Active         *bool
	SetExpiresAt   bool
	ExpiresAt      *time.Time
	SetMaxRequests bool
	MaxRequests    *int64
	SetLimits      bool
	Limits         Limits
	Rules          *policy.Rules // replaces the token's rules whole
}

// TokenUsage is a batch of counted use of one token, added to its stored counters.
type TokenUsage struct {
	TokenID    string
	Requests   int64
	CacheHits  int64
	LastUsedAt time.Time
}

// DayLayout is the time layout of [UsageRecord.Day] and of the day bounds
// [Store.ProjectUsage] and [Store.ProjectCost] take: a UTC calendar date,
// "2006-01-02". Days in this form sort as strings in time order.
const DayLayout = "2006-01-02"

// UsageRecord is a project's use of one model on one UTC day, priced with
// one version of the price table. [Store.AddUsage] adds records into the
// roll-up, where (ProjectID, Day, Model, PriceVersion) is the key and the
// counts are sums. As in OpenAI's usage object, CachedTokens are a part of
// PromptTokens and ReasoningTokens a part of CompletionTokens.
//
// Requests counts the requests that went upstream or were served from the
// cache: those that can cost. Errors counts the requests whose client got an
// error status (>= 400) — what a gateway user sees fail: those the sidecar
// refused after authenticating them (limits, budget, a bad body; not in
// Requests, as they never reached OpenAI) and those the upstream answered
// with 4xx or 5xx (in Requests). It matches the usage events' status, so the
// requests metric's codes >= 400 agree with it, except for refusals before
// authentication, which have no project. A client that went away mid-answer
// is no error.
type UsageRecord struct {
	ProjectID    string
	Day          string // UTC date in [DayLayout], e.g. "2025-03-04"
	Model        string
	PriceVersion string // the price table version CostMicroUSD was computed with

	Requests         int64
	Errors           int64
	PromptTokens     int64
	CompletionTokens int64
	CachedTokens     int64
	ReasoningTokens  int64
	CostMicroUSD     int64 // millionths of a US dollar
}

// Add adds the counts and cost of v to u, leaving u's key as it is: how two
// records of one key are summed.
func (u *UsageRecord) Add(v UsageRecord) {
	u.Requests += v.Requests
	u.Errors += v.Errors
	u.PromptTokens += v.PromptTokens
	u.CompletionTokens += v.CompletionTokens
	u.CachedTokens += v.CachedTokens
	u.ReasoningTokens += v.ReasoningTokens
	u.CostMicroUSD += v.CostMicroUSD
}

// Deferred charge kinds: the [Deferred.Kind] values.
const (
	DeferredResponse = "response" // a background Response (resp_…)
	DeferredBatch    = "batch"    // a Batch (batch_…)
)

// Deferred is a deferred charge: the cost reserved for work that finishes
// after its request's response (a background Response or a Batch), owed
// until it is settled from OpenAI's record of the finished object.
// [Store.AddDeferred] records it when the object is created;
// [Store.DueDeferred] and [Store.PostponeDeferred] schedule the polls of
// an object still running; [Store.SettleDeferred] settles it, exactly once.
type Deferred struct {
	ID        string // OpenAI's object id, e.g. "resp_…" or "batch_…"; unique
	Kind      string // DeferredResponse or DeferredBatch
	ProjectID string
	TokenID   string // the proxy token that created the object
	Model     string // "" when the request named none (a Batch names its models per line)
	// Ticket is the limiter's record of the reservation, opaque to the
	// store (JSON, so valid UTF-8 without NUL bytes); nil when nothing was
	// reserved. An empty Ticket comes back nil.
	Ticket []byte
	// ReservedMicroUSD is the cost reserved at creation, in millionths of a
	// US dollar: owed until the charge is settled.
	ReservedMicroUSD int64
	CreatedAt        time.Time  // kept to the microsecond, returned in UTC; zero means now
	NextCheckAt      time.Time  // when to poll the object next; zero means CreatedAt
	Checks           int        // how many polls found the object still running
	SettledAt        *time.Time // nil while outstanding
	CostMicroUSD     int64      // the final cost, set when settled
}

// Audit actions: the [AuditEvent.Action] values. Management operations are
// recorded by the management API, denials by the proxy's request path.
// [AuditActions] lists them all.
const (
	AuditProjectCreate       = "project.create"        // a project was created
	AuditProjectUpdate       = "project.update"        // a project's name, key, active flag, limits, budget or policy flags changed
	AuditProjectDelete       = "project.delete"        // a project and its tokens were deleted
	AuditProjectTokensRevoke = "project.tokens_revoke" // every active token of a project was revoked
	AuditTokenCreate         = "token.create"          // a proxy token was issued
	AuditTokenUpdate         = "token.update"          // a token's name, active flag, expiry, cap or limits changed
	AuditTokenRevoke         = "token.revoke"          // a token was revoked
	AuditCachePurge          = "cache.purge"           // cached responses were purged
	AuditAdminSignIn         = "admin.sign_in"         // a browser signed in to the admin console with the management token
	AuditAdminSignOut        = "admin.sign_out"        // a browser signed out of the admin console

	AuditAuthMissingToken    = "auth.missing_token"     // a proxied request carried no token
	AuditAuthUnknownToken    = "auth.unknown_token"     // its token matches no token
	AuditAuthRevokedToken    = "auth.revoked_token"     // its token was revoked (or deactivated)
	AuditAuthExpiredToken    = "auth.expired_token"     // its token has expired
	AuditAuthProjectInactive = "auth.project_inactive"  // its token's project is inactive
	AuditAuthQuotaExhausted  = "auth.quota_exhausted"   // a quota is used up: its token's lifetime request cap or its project's monthly budget (not a per-minute rate limit)
	AuditAuthModelNotAllowed = "auth.model_not_allowed" // a request named a model its project's or token's rules do not allow (or none where they require one)
	AuditAuthManagementToken = "auth.management_token"  // management API requests carried a wrong management token, or were refused while their address was throttled for that

	AuditPredecessorEvent = "predecessor.event" // an event of the predecessor proxy's audit log, imported; Detail says what it was
)

// AuditActions returns every audit action this version knows, management
// operations first, in a fixed order. The caller owns the slice.
func AuditActions() []string {
	return []string{
		AuditProjectCreate, AuditProjectUpdate, AuditProjectDelete, AuditProjectTokensRevoke,
		AuditTokenCreate, AuditTokenUpdate, AuditTokenRevoke, AuditCachePurge,
		AuditAdminSignIn, AuditAdminSignOut,
		AuditAuthMissingToken, AuditAuthUnknownToken, AuditAuthRevokedToken,
		AuditAuthExpiredToken, AuditAuthProjectInactive, AuditAuthQuotaExhausted,
		AuditAuthModelNotAllowed, AuditAuthManagementToken, AuditPredecessorEvent,
	}
}

// Audit outcomes: the [AuditEvent.Outcome] values.
const (
	AuditOutcomeSuccess = "success" // a management operation that took effect
	AuditOutcomeDenied  = "denied"  // a request refused for a security reason
)

// Audit target types: the [AuditEvent.TargetType] values.
const (
	AuditTargetProject = "project"
	AuditTargetToken   = "token"
	AuditTargetCache   = "cache"
)

// AuditEvent is one entry of the audit log: who did what to which target,
// when, from where, and with what outcome. Only ID and Action are required;
// the other fields are stored as given ("" when unknown). None of them may
// hold a secret: a token is named by its public id, never its secret or
// hash.
type AuditEvent struct {
	ID            string    // unique; a second event with the same id is not stored
	Time          time.Time // kept to the microsecond, returned in UTC; zero means now
	Action        string    // one of the Audit… action constants
	Actor         string    // who acted, e.g. "management:1a2b3c4d" or a token's public id
	ProjectID     string    // the project concerned; "" for none (stored as NULL)
	TargetType    string    // AuditTargetProject, AuditTargetToken, …
	TargetID      string    // the target's public id
	RequestID     string    // the x-request-id of the request that caused it
	ClientAddress string    // the client's IP address as the trusted proxy saw it
	Outcome       string    // AuditOutcomeSuccess or AuditOutcomeDenied
	Detail        string    // a short, secret-free description, e.g. the fields changed
}

// Page sizes of [Store.ListAudit].
const (
	DefaultAuditLimit = 100  // the page size when AuditQuery.Limit is 0
	MaxAuditLimit     = 1000 // the largest page size accepted
)

// Page sizes of [Store.ListProjectsPage] and [Store.ListTokensPage].
const (
	DefaultPageLimit = 100  // the page size when PageQuery.Limit is 0
	MaxPageLimit     = 1000 // the largest page size accepted
)

// PageQuery selects a page of a list kept oldest first (projects, tokens).
type PageQuery struct {
	// Limit is the page size, 1 to [MaxPageLimit]; 0 means [DefaultPageLimit].
	Limit int
	// Cursor continues a listing where the previous page ended: the next
	// cursor the listing returned, or "" for the first page.
	Cursor string
}

// AuditQuery selects a page of the audit log for [Store.ListAudit]. Empty
// and zero fields do not filter.
type AuditQuery struct {
	ProjectID string // only events of this project
	Action    string // only events with this action
	Actor     string // only events by this actor, e.g. "admin-ui"
	// TokenID keeps only events about this token (target type
	// [AuditTargetToken]): its creation, changes and revocation, and the
	// requests refused for it.
	TokenID       string
	Outcome       string    // only events with this outcome, [AuditOutcomeSuccess] or [AuditOutcomeDenied]
	ClientAddress string    // only events from this client address, exactly as stored
	From          time.Time // only events at or after From
	To            time.Time // only events before To
	// Limit is the page size, 1 to [MaxAuditLimit]; 0 means [DefaultAuditLimit].
	Limit int
	// Cursor continues a listing where the previous page ended: the next
	// cursor ListAudit returned, or "" for the first page.
	Cursor string
}
