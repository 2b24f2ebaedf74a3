package authz

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

// Reasons a bearer token is refused. They are distinct so audit records can say
// which, but clients see one answer for the first three (401), so an attacker
// cannot tell a revoked token from one that never existed. Quotas and rates
// are the limiter's business (package ratelimit), not this package's; the one
// rate kept here is of failed authentications, which protects the store.
var (
	// ErrInvalidToken: malformed, or no such token.
	ErrInvalidToken = errors.New("invalid proxy token")
	// ErrTokenRevoked: the token exists but was revoked or deactivated.
	ErrTokenRevoked = errors.New("proxy token revoked")
	// ErrTokenExpired: the token's expiry has passed.
	ErrTokenExpired = errors.New("proxy token expired")
	// ErrProjectInactive: the token is fine but its project is deactivated.
	ErrProjectInactive = errors.New("project inactive")
	// ErrTooManyFailures: the client address failed to authenticate too often
	// lately, so its token was not looked at. It comes wrapped in a
	// [*FailureLimitError] that says when to retry (a 429, not a 401).
	ErrTooManyFailures = errors.New("too many failed authentications")
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
	MonthlyBudgetMicroUSD *int64         // the project's; nil: none
	MaxRequests           *int64         // the token's lifetime cap; nil: none
	CachePOST             bool           // the project caches POST responses without per-request opt-in
	AllowBackground       bool           // the project allows background Responses ("background": true)
	AllowBatches          bool           // the project allows Batches (POST /v1/batches)
	Capture               policy.Capture // the project's capture of bodies into usage events
	// Rules are the project's and the token's rules, both of which a
	// request must pass (models, parameters, body size, CORS).
	Rules policy.Combined
}

// credentialStore is what the Authorizer needs of the store.
type credentialStore interface {
	GetTokenByHash(ctx context.Context, hash string) (store.Token, error)
	GetProject(ctx context.Context, id string) (store.Project, error)
	AddTokenUsage(ctx context.Context, usage []store.TokenUsage) error
}

// Authorizer validates proxy tokens against the store, caching what it learns:
// valid and refused tokens for the cache TTL, unknown ones for the shorter
// negative TTL. It also limits failed authentications per client address
// ([Authorizer.AuthenticateFrom]) and tells the caller which denials to audit
// one by one ([Authorizer.ShouldAudit]). It is safe for concurrent use.
type Authorizer struct {
	store    credentialStore
	hasher   Hasher
	keys     *Keyring
	ttl      time.Duration
	now      func() time.Time
	metrics  *metrics
	failures *failureGate      // has its own lock
	denials  *denialAggregator // has its own lock

	mu sync.Mutex
	// gen is the cache generation: every invalidation bumps it, and a store
	// read is cached only if gen did not move while it ran (see load). One
	// counter for all tokens, not one per token: a load does not know which
	// token id or project it is reading until it has read it, invalidations
	// name ids rather than hashes, and they are rare (management changes), so
	// a global generation costs at most an extra read now and then, where
	// per-id generations would need maps of ids that grow with every revoke.
	gen         uint64                 // guarded by mu
	byHash      map[string]*credential // guarded by mu
	unknown     *negativeCache         // hashes the store does not know; guarded by mu
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

// Defaults of [Options] fields left zero.
const (
	DefaultNegativeTTL       = 5 * time.Second
	DefaultNegativeCacheSize = 100_000
	DefaultFailureLimit      = 20
	DefaultFailureWindow     = time.Minute
	DefaultAuditBurst        = 10
	DefaultAuditWindow       = time.Minute
	DefaultMaxAddresses      = 100_000
)

// Options configures an [Authorizer]. The zero value of every field but
// CacheTTL is usable.
type Options struct {
	// CacheTTL bounds how long a validated token is trusted without re-reading the
	// store. Changes made through this instance's management API take effect at
	// once regardless; the TTL covers changes made elsewhere.
	CacheTTL time.Duration

	// NegativeTTL is how long a token hash the store does not know is
	// remembered as unknown, so that repeating it costs no store query. It is
	// capped at CacheTTL; 0 means [DefaultNegativeTTL]; negative disables the
	// negative cache. Every invalidation forgets all unknown hashes at once.
	NegativeTTL time.Duration
	// NegativeCacheSize bounds how many unknown hashes are remembered (about
	// 150 bytes each); beyond it the oldest are forgotten first. 0 means
	// [DefaultNegativeCacheSize].
	NegativeCacheSize int

	// FailureLimit and FailureWindow bound failed authentications per client
	// address, as [Authorizer.AuthenticateFrom] counts them: an address may
	// fail FailureLimit times in a row, then once per FailureWindow/FailureLimit
	// (a token bucket of FailureLimit refilled over FailureWindow). 0 means
	// [DefaultFailureLimit] and [DefaultFailureWindow]; a negative
	// FailureLimit disables the limit.
	FailureLimit  int
	FailureWindow time.Duration

	// AuditBurst and AuditWindow shape [Authorizer.ShouldAudit]: per client
	// address and reason, the first AuditBurst denials of each AuditWindow are
	// to be audited one by one and the rest only counted. 0 means
	// [DefaultAuditBurst] and [DefaultAuditWindow]; a negative AuditBurst has
	// every denial audited.
	AuditBurst  int
	AuditWindow time.Duration

	// MaxAddresses bounds the client addresses the failure limit tracks (new
	// ones beyond it are not limited), and separately the (address, reason)
	// pairs the audit aggregation tracks (new ones beyond it share one
	// [OverflowAddr] pair per reason). 0 means [DefaultMaxAddresses].
	MaxAddresses int

	// Registerer receives the llm_proxy_authz_* series; nil: none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewAuthorizer returns an Authorizer reading credentials from s.
func NewAuthorizer(s credentialStore, h Hasher, k *Keyring, o Options) *Authorizer {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	o.NegativeTTL = min(o.NegativeTTL, o.CacheTTL)
	if o.NegativeCacheSize <= 0 {
		o.NegativeCacheSize = DefaultNegativeCacheSize
	}
	if o.FailureLimit == 0 {
		o.FailureLimit = DefaultFailureLimit
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = DefaultFailureWindow
	}
	if o.AuditBurst == 0 {
		o.AuditBurst = DefaultAuditBurst
	}
	if o.AuditWindow <= 0 {
		o.AuditWindow = DefaultAuditWindow
	}
	if o.MaxAddresses <= 0 {
		o.MaxAddresses = DefaultMaxAddresses
	}
	return &Authorizer{
		store: s, hasher: h, keys: k, ttl: o.CacheTTL, now: o.Now,
		metrics:     newMetrics(o.Registerer),
		failures:    newFailureGate(o.FailureLimit, o.FailureWindow, o.MaxAddresses),
		denials:     newDenialAggregator(o.AuditBurst, o.AuditWindow, o.MaxAddresses),
		byHash:      make(map[string]*credential),
		unknown:     newNegativeCache(o.NegativeTTL, o.NegativeCacheSize),
		counters:    make(map[string]*counter),
		projectKeys: make(map[string]*projectKey),
	}
}

// Authenticate turns a bearer token into a Principal. Refusals wrap one of the
// package's errors; any other error is the store failing. It does not count
// the request: call [Authorizer.CountRequest] once the request is admitted.
// It is [Authorizer.AuthenticateFrom] without a client address: it neither
// counts failures nor is limited by them.
//
// Once an invalidation ([Authorizer.InvalidateToken] and its kin, local or
// through a [Broadcast]) has returned, no call admits a token on the
// strength of a store read that began before it: such a read is not cached,
// and if it would admit, the token is read again first. Malformed tokens
// (wrong prefix or length) never reach the store, and a well-formed token
// the store does not know is remembered for [Options.NegativeTTL].
func (a *Authorizer) Authenticate(ctx context.Context, secret string) (Principal, error) {
	return a.AuthenticateFrom(ctx, "", secret)
}

// AuthenticateFrom is [Authorizer.Authenticate] for a request from client
// address addr, which must be Envoy's view of the peer, never a header the
// client sets. Each refusal (any of the package's errors but
// ErrTooManyFailures) counts as a failure of addr. While addr has used up
// its allowance ([Options.FailureLimit] per [Options.FailureWindow]), every
// request from it is refused with a [*FailureLimitError], before the store
// or the negative cache is asked and without counting as a failure, unless
// its token is in this instance's validation cache (which costs nothing to
// check): clients sharing an address with a sprayer, behind a NAT say, keep
// working with a token in use here. An empty addr is neither counted nor
// limited.
func (a *Authorizer) AuthenticateFrom(ctx context.Context, addr, secret string) (Principal, error) {
	now := a.now()
	var (
		hash            string
		c               *credential
		cached, unknown bool
		gen             uint64
	)
	if wellFormed(secret) || legacyForm(secret) {
		hash = a.hasher.Hash(secret)
		a.mu.Lock()
		c, cached = a.byHash[hash]
		cached = cached && now.Sub(c.loadedAt) < a.ttl
		unknown = a.unknown.has(hash, now)
		gen = a.gen
		a.mu.Unlock()
	}
	if !cached {
		if wait := a.failures.wait(addr, now); wait > 0 {
			a.metrics.gated.Inc()
			return Principal{}, &FailureLimitError{RetryAfter: wait}
		}
		var err error
		switch {
		case hash == "":
			err = ErrInvalidToken // no store round trip for garbage
		case unknown:
			a.metrics.negativeHits.Inc()
			err = ErrInvalidToken
		default:
			c, err = a.load(ctx, secret, hash, gen, now)
		}
		if err != nil {
			if refusal(err) {
				a.failures.fail(addr, now)
			}
			return Principal{}, err
		}
	}
	p, err := c.principal(now)
	if err != nil {
		a.failures.fail(addr, now)
	}
	return p, err
}

// legacyForm reports whether secret has the form of the predecessor
// proxy's tokens, which imported tokens keep: "sk-" and base64url. OpenAI
// keys sent by mistake are longer, or start with their kind ("sk-proj-").
func legacyForm(secret string) bool {
	rest, ok := strings.CutPrefix(secret, LegacyTokenPrefix)
	if !ok || len(rest) < minLegacySecretLen || len(rest) > maxLegacySecretLen {
		return false
	}
	for _, kind := range []string{"proj-", "svcacct-", "admin-"} {
		if strings.HasPrefix(rest, kind) {
			return false
		}
	}
	return ids.Valid(rest) // the same alphabet, base64url's
}

func wellFormed(secret string) bool {
	const want = len(TokenPrefix) + (tokenEntropyBytes*8+5)/6
	return len(secret) == want && strings.HasPrefix(secret, TokenPrefix)
}

// refusal reports whether err is the token being refused, as opposed to the
// store failing.
func refusal(err error) bool {
	return errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrTokenRevoked) ||
		errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrProjectInactive)
}

// principal is what c grants at now, or the refusal.
func (c *credential) principal(now time.Time) (Principal, error) {
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
		Capture: c.project.Capture, Rules: policy.Combined{Project: c.project.Rules, Token: c.token.Rules},
	}, nil
}

// maxLoadAttempts bounds how often load reads a token whose every read
// overlapped an invalidation.
const maxLoadAttempts = 3

// load reads a token and its project from the store and caches what it read
// (an unknown hash in the negative cache) if no invalidation happened since
// generation gen, which the caller saw before deciding to load. If one did,
// the read may predate the change the invalidation announced (a revoke that
// committed while the read was in flight), so it is not cached; a refusal is
// still answered, since refusing a request that overlapped a change is safe,
// but a credential that would admit is read again, up to maxLoadAttempts
// times, after which load fails closed with a non-refusal error.
func (a *Authorizer) load(ctx context.Context, secret, hash string, gen uint64, now time.Time) (*credential, error) {
	for attempt := 1; ; attempt++ {
		a.metrics.loads.Inc()
		tok, err := a.lookup(ctx, secret, hash)
		found := !errors.Is(err, store.ErrNotFound)
		if found && err != nil {
			return nil, fmt.Errorf("load token: %w", err)
		}
		var c *credential
		if found {
			if c, err = a.open(ctx, tok, now); err != nil {
				return nil, err
			}
		}

		a.mu.Lock()
		if found {
			a.seedCounter(tok)
		}
		current := a.gen == gen
		if current && found {
			a.byHash[hash] = c
		} else if current {
			a.unknown.add(hash, now)
		}
		gen = a.gen
		a.mu.Unlock()

		if !current {
			a.metrics.staleLoads.Inc()
		}
		switch {
		case !found:
			return nil, ErrInvalidToken
		case current:
			return c, nil
		}
		if _, err := c.principal(now); err != nil {
			return c, nil // a refusal stands; it was just not cached
		}
		if attempt == maxLoadAttempts {
			return nil, fmt.Errorf("load token %s: invalidated during each of %d reads", tok.ID, attempt)
		}
	}
}

// lookup reads the token whose secret has HMAC hash. A legacy secret (see
// [legacyForm]) the store does not know by its HMAC is looked up by the
// SHA-256 the predecessor kept instead of the secret; only a token imported
// as legacy is found that way. Either way the caller caches the answer under
// the HMAC, so a legacy token costs its second read only when unknown.
func (a *Authorizer) lookup(ctx context.Context, secret, hash string) (store.Token, error) {
	tok, err := a.store.GetTokenByHash(ctx, hash)
	if !errors.Is(err, store.ErrNotFound) || !legacyForm(secret) {
		return tok, err
	}
	tok, err = a.store.GetTokenByHash(ctx, LegacySHA256(secret))
	if err == nil && !tok.Legacy {
		return store.Token{}, fmt.Errorf("token %s: stored under a legacy hash but not legacy: %w", tok.ID, store.ErrNotFound)
	}
	return tok, err
}

// open reads tok's project and opens its key.
func (a *Authorizer) open(ctx context.Context, tok store.Token, now time.Time) (*credential, error) {
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
	return &credential{token: tok, project: proj, openAIKey: key, loadedAt: now}, nil
}

// seedCounter folds a token's stored request count into its counter. The
// store's count includes every flush, ours and other replicas'; our own
// unflushed requests are on top. Never go backwards: a flush may be in
// flight. a.mu must be held.
func (a *Authorizer) seedCounter(tok store.Token) {
	if n, ok := a.counters[tok.ID]; ok {
		n.used = max(n.used, tok.RequestCount+n.pending)
	} else {
		a.counters[tok.ID] = &counter{used: tok.RequestCount}
	}
}

// ProjectKey returns a project's OpenAI key, in clear, for work done on the
// project's behalf after its request: polling OpenAI for a background
// Response or a Batch whose charge is still to be settled. Like
// [Principal.OpenAIKey] it goes into an upstream Authorization header and
// nowhere else. The project need not be active: what its work cost is owed
// all the same. An unknown project is an error wrapping [store.ErrNotFound];
// any other error is the store or the keyring failing. The key is cached
// like a validated token: for the cache TTL, and until
// [Authorizer.InvalidateProject] or [Authorizer.InvalidateAll]; a read that
// overlapped an invalidation is answered but not cached.
func (a *Authorizer) ProjectKey(ctx context.Context, projectID string) (string, error) {
	now := a.now()
	a.mu.Lock()
	k, ok := a.projectKeys[projectID]
	gen := a.gen
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
	if a.gen == gen {
		a.projectKeys[projectID] = &projectKey{key: key, loadedAt: now}
	}
	return key, nil
}

// CountRequest counts one admitted request of a token, for its stored
// request_count and last_used_at (written by [Authorizer.Flush]).
func (a *Authorizer) CountRequest(tokenID string) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.counterLocked(tokenID)
	n.used++
	n.pending++
	n.lastUsed = now
}

// CountCacheHit counts one request of a token answered from the cache.
func (a *Authorizer) CountCacheHit(tokenID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counterLocked(tokenID).cacheHits++
}

// counterLocked returns the counter of a token, adding an empty one if it
// has none. a.mu must be held.
func (a *Authorizer) counterLocked(tokenID string) *counter {
	n, ok := a.counters[tokenID]
	if !ok {
		n = &counter{}
		a.counters[tokenID] = n
	}
	return n
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

// InvalidateToken drops a token from the cache so its next use re-reads the
// store. Like every invalidation it also forgets every unknown hash and
// voids the store reads in flight (they are answered from a fresh read, and
// not cached): once it returns, no read that began before it can put the
// token's old state back into the cache. Call it after creating a token too,
// so a secret that was tried before it existed validates at once rather than
// after [Options.NegativeTTL].
func (a *Authorizer) InvalidateToken(tokenID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.invalidate()
	for h, c := range a.byHash {
		if c.token.ID == tokenID {
			delete(a.byHash, h)
		}
	}
}

// InvalidateProject drops every cached token of a project, and its key, with
// the guarantees of [Authorizer.InvalidateToken].
func (a *Authorizer) InvalidateProject(projectID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.invalidate()
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

// InvalidateAll drops the whole validation cache, project keys and unknown
// hashes included (counters are kept), with the guarantees of
// [Authorizer.InvalidateToken].
func (a *Authorizer) InvalidateAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.invalidate()
	clear(a.byHash)
	clear(a.projectKeys)
}

// invalidate starts a new cache generation, so that no store read in flight
// is cached, and forgets the unknown hashes: one of them may have just been
// created. a.mu must be held.
func (a *Authorizer) invalidate() {
	a.gen++
	a.unknown.clear()
}
