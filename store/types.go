package store

import (
	"errors"
	"time"
)

// Errors returned by [Store] methods; callers test them with errors.Is.
var (
	// ErrNotFound means the project or token does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a row with the same unique key already exists.
	ErrConflict = errors.New("conflict")
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
	CreatedAt             time.Time
	UpdatedAt             time.Time
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
	ID            string // public id, safe to log
	ProjectID     string
	Name          string
	Hash          string // hex HMAC-SHA-256 of the secret
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
}

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
type UsageRecord struct {
	ProjectID    string
	Day          string // UTC date in [DayLayout], e.g. "2025-03-04"
	Model        string
	PriceVersion string // the price table version CostMicroUSD was computed with

	Requests         int64
	PromptTokens     int64
	CompletionTokens int64
	CachedTokens     int64
	ReasoningTokens  int64
	CostMicroUSD     int64 // millionths of a US dollar
}
