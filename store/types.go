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
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// ProjectUpdate changes the non-nil fields of a project. The key fields change together.
type ProjectUpdate struct {
	Name          *string
	KeyCiphertext *string
	KeyID         *string
	KeyHint       *string
	Active        *bool
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
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// TokenUpdate changes a token. Pointer fields change when non-nil; the nullable
// fields ExpiresAt and MaxRequests change when their Set flag is true (nil then clears).
type TokenUpdate struct {
	Name           *string
	Active         *bool
	SetExpiresAt   bool
	ExpiresAt      *time.Time
	SetMaxRequests bool
	MaxRequests    *int64
}

// TokenUsage is a batch of counted use of one token, added to its stored counters.
type TokenUsage struct {
	TokenID    string
	Requests   int64
	CacheHits  int64
	LastUsedAt time.Time
}
