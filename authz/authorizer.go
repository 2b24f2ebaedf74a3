package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

// Reasons a bearer token is refused. They are distinct so audit records can say
// which, but clients see one answer for the first three (401), so an attacker
// cannot tell a revoked token from one that never existed. Quotas and rates
// are the limiter's business (package ratelimit), not this package's.
var (
	// ErrInvalidToken: malformed, or no such token.
	ErrInvalidToken = errors.New("invalid proxy token")
	// ErrTokenRevoked: the token exists but was revoked or deactivated.
	ErrTokenRevoked = errors.New("proxy token revoked")
	// ErrTokenExpired: the token's expiry has passed.
	ErrTokenExpired = errors.New("proxy token expired")
	// ErrProjectInactive: the token is fine but its project is deactivated.
	ErrProjectInactive = errors.New("project inactive")
)

// DeniedError is the refusal of a token that exists: it names the token and
// project (public ids) for the audit log. It wraps ErrTokenRevoked,
// ErrTokenExpired or ErrProjectInactive.
type DeniedError struct {
	TokenID, ProjectID string
	Err                error
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("token %s of project %s: %v", e.TokenID, e.ProjectID, e.Err)
}

func (e *DeniedError) Unwrap() error { return e.Err }

// Principal is an authenticated request's identity, the key to swap in, and
// the limits that apply to it.
type Principal struct {
	TokenID   string
	ProjectID string
	// OpenAIKey is the project's real key, in clear. It goes into the upstream
	// Authorization header and nowhere else: never log or return it.
	OpenAIKey string

	ProjectLimits         store.Limits
	TokenLimits           store.Limits
	MonthlyBudgetMicroUSD *int64 // the project's; nil: none
	MaxRequests           *int64 // the token's lifetime cap; nil: none
	CachePOST             bool   // the project caches POST responses without per-request opt-in
	AllowBackground       bool   // the project allows background Responses ("background": true)
	AllowBatches          bool   // the project allows Batches (POST /v1/batches)
}

// credentialStore is what the Authorizer needs of the store.
type credentialStore interface {
	GetTokenByHash(ctx context.Context, hash string) (store.Token, error)
	GetProject(ctx context.Context, id string) (store.Project, error)
	AddTokenUsage(ctx context.Context, usage []store.TokenUsage) error
}

// Authorizer validates proxy tokens against the store, caching what it learns.
// It is safe for concurrent use.
type Authorizer struct {
	store  credentialStore
	hasher Hasher
	keys   *Keyring
	ttl    time.Duration
	now    func() time.Time

	mu          sync.Mutex
	byHash      map[string]*credential // guarded by mu
	counters    map[string]*counter    // by token id; guarded by mu
	projectKeys map[string]*projectKey // by project id; guarded by mu
}

// credential is a validated token with its project, as cached.
type credential struct {
	token     store.Token
	project   store.Project
	openAIKey string
	loadedAt  time.Time
}

// projectKey is a project's opened OpenAI key, as cached by
// [Authorizer.ProjectKey].
type projectKey struct {
	key      string
	loadedAt time.Time
}

// counter is a token's lifetime request count. used is authoritative on this
// instance; pending is the part not yet written to the store.
type counter struct {
	used      int64
	pending   int64
	cacheHits int64 // not yet flushed
	lastUsed  time.Time
}

// Options configures an [Authorizer].
type Options struct {
	// CacheTTL bounds how long a validated token is trusted without re-reading the
	// store. Changes made through this instance's management API take effect at
	// once regardless; the TTL covers changes made elsewhere.
	CacheTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewAuthorizer returns an Authorizer reading credentials from s.
func NewAuthorizer(s credentialStore, h Hasher, k *Keyring, o Options) *Authorizer {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Authorizer{
		store: s, hasher: h, keys: k, ttl: o.CacheTTL, now: o.Now,
		byHash:      make(map[string]*credential),
		counters:    make(map[string]*counter),
		projectKeys: make(map[string]*projectKey),
	}
}

// Authenticate turns a bearer token into a Principal. Refusals wrap one of the
// package's errors; any other error is the store failing. It does not count
// the request: call [Authorizer.CountRequest] once the request is admitted.
func (a *Authorizer) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !wellFormed(secret) {
		return Principal{}, ErrInvalidToken // no store round trip for garbage
	}
	hash := a.hasher.Hash(secret)
	now := a.now()

	a.mu.Lock()
	c, ok := a.byHash[hash]
	a.mu.Unlock()
	if !ok || now.Sub(c.loadedAt) >= a.ttl {
		var err error
		if c, err = a.load(ctx, hash, now); err != nil {
			return Principal{}, err
		}
	}

	deny := func(reason error) error {
		return &DeniedError{TokenID: c.token.ID, ProjectID: c.project.ID, Err: reason}
	}
	switch {
	case !c.token.Active:
		return Principal{}, deny(ErrTokenRevoked)
	case c.token.ExpiresAt != nil && !now.Before(*c.token.ExpiresAt):
		return Principal{}, deny(ErrTokenExpired)
	case !c.project.Active:
		return Principal{}, deny(ErrProjectInactive)
	}
	return Principal{
		TokenID: c.token.ID, ProjectID: c.project.ID, OpenAIKey: c.openAIKey,
		ProjectLimits: c.project.Limits, TokenLimits: c.token.Limits,
		MonthlyBudgetMicroUSD: c.project.MonthlyBudgetMicroUSD, MaxRequests: c.token.MaxRequests,
		CachePOST: c.project.CachePOST, AllowBackground: c.project.AllowBackground, AllowBatches: c.project.AllowBatches,
	}, nil
}

func wellFormed(secret string) bool {
	const want = len(TokenPrefix) + (tokenEntropyBytes*8+5)/6
	return len(secret) == want && strings.HasPrefix(secret, TokenPrefix)
}

// load reads a token and its project from the store and caches them.
func (a *Authorizer) load(ctx context.Context, hash string, now time.Time) (*credential, error) {
	tok, err := a.store.GetTokenByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, fmt.Errorf("load token: %w", err)
	}
	proj, err := a.store.GetProject(ctx, tok.ProjectID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("token %s: project gone: %w", tok.ID, ErrInvalidToken)
	}
	if err != nil {
		return nil, fmt.Errorf("load project of token %s: %w", tok.ID, err)
	}
	key, err := a.keys.Open(proj.KeyCiphertext, proj.KeyID)
	if err != nil {
		return nil, fmt.Errorf("project %s: %w", proj.ID, err)
	}
	c := &credential{token: tok, project: proj, openAIKey: key, loadedAt: now}

	a.mu.Lock()
	defer a.mu.Unlock()
	a.byHash[hash] = c
	// The store's count includes every flush, ours and other replicas'; our own
	// unflushed requests are on top. Never go backwards: a flush may be in flight.
	if n, ok := a.counters[tok.ID]; ok {
		n.used = max(n.used, tok.RequestCount+n.pending)
	} else {
		a.counters[tok.ID] = &counter{used: tok.RequestCount}
	}
	return c, nil
}

// ProjectKey returns a project's OpenAI key, in clear, for work done on the
// project's behalf after its request: polling OpenAI for a background
// Response or a Batch whose charge is still to be settled. Like
// [Principal.OpenAIKey] it goes into an upstream Authorization header and
// nowhere else. The project need not be active: what its work cost is owed
// all the same. An unknown project is an error wrapping [store.ErrNotFound];
// any other error is the store or the keyring failing. The key is cached
// like a validated token: for the cache TTL, and until
// [Authorizer.InvalidateProject] or [Authorizer.InvalidateAll].
func (a *Authorizer) ProjectKey(ctx context.Context, projectID string) (string, error) {
	now := a.now()
	a.mu.Lock()
	k, ok := a.projectKeys[projectID]
	a.mu.Unlock()
	if ok && now.Sub(k.loadedAt) < a.ttl {
		return k.key, nil
	}
	proj, err := a.store.GetProject(ctx, projectID)
	if err != nil {
		return "", fmt.Errorf("load project %s: %w", projectID, err)
	}
	key, err := a.keys.Open(proj.KeyCiphertext, proj.KeyID)
	if err != nil {
		return "", fmt.Errorf("project %s: %w", projectID, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.projectKeys[projectID] = &projectKey{key: key, loadedAt: now}
	return key, nil
}

// CountRequest counts one admitted request of a token, for its stored
// request_count and last_used_at (written by [Authorizer.Flush]).
func (a *Authorizer) CountRequest(tokenID string) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.counters[tokenID]
	if !ok {
		n = &counter{}
		a.counters[tokenID] = n
	}
	n.used++
	n.pending++
	n.lastUsed = now
}

// CountCacheHit counts one request of a token answered from the cache.
func (a *Authorizer) CountCacheHit(tokenID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.counters[tokenID]
	if !ok {
		n = &counter{}
		a.counters[tokenID] = n
	}
	n.cacheHits++
}

// RequestCount is the token's lifetime count as this instance knows it: the
// stored count at its last load plus what it counted since. It seeds the
// limiter's lifetime counter.
func (a *Authorizer) RequestCount(tokenID string) (int64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.counters[tokenID]
	if !ok {
		return 0, false
	}
	return n.used, true
}

// InvalidateToken drops a token from the cache so its next use re-reads the store.
func (a *Authorizer) InvalidateToken(tokenID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for h, c := range a.byHash {
		if c.token.ID == tokenID {
			delete(a.byHash, h)
		}
	}
}

// InvalidateProject drops every cached token of a project, and its key.
func (a *Authorizer) InvalidateProject(projectID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.projectKeys, projectID)
	for h, c := range a.byHash {
		if c.project.ID == projectID {
			delete(a.byHash, h)
		}
	}
}

// Flush writes the requests counted since the last flush to the store. On
// failure the counts are kept for the next attempt, so nothing is lost while
// the process lives; a crash loses at most what was counted since the last
// successful flush.
func (a *Authorizer) Flush(ctx context.Context) error {
	a.mu.Lock()
	var batch []store.TokenUsage
	for id, n := range a.counters {
		if n.pending > 0 || n.cacheHits > 0 {
			batch = append(batch, store.TokenUsage{TokenID: id, Requests: n.pending, CacheHits: n.cacheHits, LastUsedAt: n.lastUsed})
			n.pending, n.cacheHits = 0, 0
		}
	}
	a.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := a.store.AddTokenUsage(ctx, batch)
	if err != nil {
		a.mu.Lock()
		for _, u := range batch {
			a.counters[u.TokenID].pending += u.Requests
			a.counters[u.TokenID].cacheHits += u.CacheHits
		}
		a.mu.Unlock()
		return fmt.Errorf("flush token usage: %w", err)
	}
	return nil
}

// InvalidateAll drops the whole validation cache, project keys included
// (counters are kept).
func (a *Authorizer) InvalidateAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.byHash)
	clear(a.projectKeys)
}
