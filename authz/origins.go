package authz

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

// projectLister is the store as [Origins] reads it.
type projectLister interface {
	ListProjects(ctx context.Context) ([]store.Project, error)
}

var _ projectLister = (*store.Store)(nil)

// Defaults of [OriginsOptions].
const (
	DefaultOriginsTTL = 10 * time.Second
	// originsRetry is how long a failed read leaves the last copy in use
	// before the store is asked again.
	originsRetry = time.Second
)

// OriginsOptions configures [NewOrigins].
type OriginsOptions struct {
	// TTL is the longest a read of the projects is used (0:
	// [DefaultOriginsTTL]); an invalidation ends it sooner.
	TTL time.Duration
	Now func() time.Time
}

// Origins holds the CORS policy of every active project, for the preflights
// of browser apps: a preflight carries no token, so it can only be judged
// against all of them (the request that follows is judged against its own
// project's, from its [Principal]).
//
// The policies are read from the store all at once, at most once per TTL,
// and again after any invalidation of the [Authorizer] it was made with —
// the management API's after every project change, and through [Broadcast]
// those of every other replica — so a changed policy answers the next
// preflight. A read that fails keeps the last one in use (asking again a
// second later). Origins starts no goroutine: a preflight that finds the copy
// stale reads it, one read at a time.
type Origins struct {
	store projectLister
	auth  *Authorizer // nil: the TTL alone ends a copy
	ttl   time.Duration
	now   func() time.Time

	current atomic.Pointer[originsCopy]
	loading chan struct{} // holds one token while a read runs
}

// originsCopy is one read of the projects' policies.
type originsCopy struct {
	policies []*policy.CORS
	gen      uint64    // the authorizer's cache generation before the read
	until    time.Time // when it must be read again
}

// NewOrigins returns an Origins reading st, refreshed on auth's
// invalidations (auth may be nil).
func NewOrigins(st projectLister, auth *Authorizer, o OriginsOptions) *Origins {
	if o.TTL <= 0 {
		o.TTL = DefaultOriginsTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Origins{store: st, auth: auth, ttl: o.TTL, now: o.Now, loading: make(chan struct{}, 1)}
}

// CORSPolicies returns the CORS policies of the active projects that have
// one, oldest project first. The slice and what it points to are shared by
// every caller and must not be changed. The error is a read of the store
// that failed when no earlier read succeeded, or ctx's.
func (o *Origins) CORSPolicies(ctx context.Context) ([]*policy.CORS, error) {
	if c := o.current.Load(); o.fresh(c) {
		return c.policies, nil
	}
	select {
	case o.loading <- struct{}{}:
		defer func() { <-o.loading }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	last := o.current.Load()
	if o.fresh(last) {
		return last.policies, nil // read by the caller this one waited for
	}
	gen, now := o.auth.generation(), o.now()
	projects, err := o.store.ListProjects(ctx)
	if err != nil {
		if last == nil {
			return nil, fmt.Errorf("read projects' CORS origins: %w", err)
		}
		o.current.Store(&originsCopy{policies: last.policies, gen: gen, until: now.Add(min(originsRetry, o.ttl))})
		return last.policies, nil
	}
	var policies []*policy.CORS
	for _, p := range projects {
		if p.Active && p.Rules.CORS != nil {
			policies = append(policies, p.Rules.CORS)
		}
	}
	o.current.Store(&originsCopy{policies: policies, gen: gen, until: now.Add(o.ttl)})
	return policies, nil
}

// fresh reports whether c may still be used: within its TTL, and no
// invalidation happened since its read began.
func (o *Origins) fresh(c *originsCopy) bool {
	return c != nil && o.now().Before(c.until) && c.gen == o.auth.generation()
}

// generation is the cache generation, which every invalidation moves (0 for
// a nil Authorizer).
func (a *Authorizer) generation() uint64 {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen
}
