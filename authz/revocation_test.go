package authz

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/store"
)

// heldStore is a memStore whose next reads can be held in flight: a held
// read takes its snapshot of the store, reports on started, and returns that
// snapshot only when the test sends on release. So a test can change the
// store and invalidate while a load is between its read and its caching.
type heldStore struct {
	*memStore
	started chan string // "token" or "project", once per held read, after its snapshot
	release chan struct{}

	mu                      sync.Mutex
	holdTokens, holdProject int // reads still to hold
}

func newHeldStore(m *memStore) *heldStore {
	return &heldStore{memStore: m, started: make(chan string), release: make(chan struct{})}
}

func (h *heldStore) hold(tokens, projects int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holdTokens, h.holdProject = tokens, projects
}

func (h *heldStore) take(n *int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *n == 0 {
		return false
	}
	*n--
	return true
}

func (h *heldStore) GetTokenByHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := h.memStore.GetTokenByHash(ctx, hash)
	if h.take(&h.holdTokens) {
		h.started <- "token"
		<-h.release
	}
	return t, err
}

func (h *heldStore) GetProject(ctx context.Context, id string) (store.Project, error) {
	p, err := h.memStore.GetProject(ctx, id)
	if h.take(&h.holdProject) {
		h.started <- "project"
		<-h.release
	}
	return p, err
}

// authorizer returns an Authorizer over s with f's keys and clock; a zero
// CacheTTL in o means a minute.
func (f *fixture) authorizer(s credentialStore, o Options) *Authorizer {
	if o.CacheTTL == 0 {
		o.CacheTTL = time.Minute
	}
	o.Now = func() time.Time { return f.now }
	return NewAuthorizer(s, f.a.hasher, f.a.keys, o)
}

// count reads a counter.
func count(t *testing.T, c prometheus.Counter) int {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}

// inFlight starts Authenticate(secret) and waits until one of its store
// reads (of the token or of its project) is held; the result arrives on the
// returned channel once the read is released.
func inFlight(t *testing.T, a *Authorizer, hs *heldStore, secret string) <-chan error {
	t.Helper()
	res := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(context.Background(), secret)
		res <- err
	}()
	<-hs.started
	return res
}

// TestLoadThatRacedARevokeIsNotCached interleaves a store load with a revoke
// deterministically: the load reads the token (or its project) while it is
// valid and is held; the store is changed and the change invalidated
// (locally, through a Broadcast message, or by a resubscription's
// InvalidateAll), which returns; then the load is released. Without the
// cache generation, the load would cache what it read before the change and
// the token would validate for the cache TTL.
func TestLoadThatRacedARevokeIsNotCached(t *testing.T) {
	ctx := context.Background()
	revoke := func(tk *store.Token, _ *store.Project) { tk.Active = false }
	deactivate := func(_ *store.Token, p *store.Project) { p.Active = false }
	for _, tc := range []struct {
		name                 string
		holdToken, holdProj  int // which read is in flight during the change
		change               func(*store.Token, *store.Project)
		invalidate           func(*Authorizer)
		want                 error
		readsAfter, readsEnd int64 // token reads once the raced request answered, and after 3 more
	}{
		// The raced read would admit: it is read again before answering.
		{"revoke, InvalidateToken", 1, 0, revoke,
			func(a *Authorizer) { a.InvalidateToken("tok_1") }, ErrTokenRevoked, 2, 2},
		{"revoke, broadcast from another replica", 1, 0, revoke,
			func(a *Authorizer) { (&Broadcast{local: a, log: zerolog.Nop()}).apply("token:tok_1") }, ErrTokenRevoked, 2, 2},
		{"revoke, resubscription drops all", 1, 0, revoke,
			func(a *Authorizer) { a.InvalidateAll() }, ErrTokenRevoked, 2, 2},
		{"deactivate project, InvalidateProject", 0, 1, deactivate,
			func(a *Authorizer) { a.InvalidateProject("proj_1") }, ErrProjectInactive, 2, 2},
		{"deactivate project, broadcast", 0, 1, deactivate,
			func(a *Authorizer) { (&Broadcast{local: a, log: zerolog.Nop()}).apply("project:proj_1") }, ErrProjectInactive, 2, 2},
		// The raced load read the project after the change: its refusal is
		// answered, but not cached, so the next request reads the store again.
		{"token read before, project after", 1, 0, deactivate,
			func(a *Authorizer) { a.InvalidateProject("proj_1") }, ErrProjectInactive, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			hs := newHeldStore(f.s)
			a := f.authorizer(hs, Options{})
			hs.hold(tc.holdToken, tc.holdProj)
			res := inFlight(t, a, hs, f.secret) // has read while valid

			f.update(tc.change)
			tc.invalidate(a) // the revoke has returned ...
			hs.release <- struct{}{}

			// ... so the request in flight, which answers after it, is refused.
			if err := <-res; !errors.Is(err, tc.want) {
				t.Fatalf("request in flight during the revoke: err = %v, want %v", err, tc.want)
			}
			if n := f.s.reads.Load(); n != tc.readsAfter {
				t.Fatalf("token read %d times, want %d", n, tc.readsAfter)
			}
			if n := count(t, a.metrics.staleLoads); n != 1 {
				t.Errorf("stale loads = %d, want 1", n)
			}
			// Later requests are refused too: nothing read before the revoke
			// was cached.
			for range 3 {
				if _, err := a.Authenticate(ctx, f.secret); !errors.Is(err, tc.want) {
					t.Fatalf("next request: err = %v, want %v", err, tc.want)
				}
			}
			if n := f.s.reads.Load(); n != tc.readsEnd {
				t.Fatalf("token read %d times in all, want %d (a refusal read after the revoke is cached)", n, tc.readsEnd)
			}
		})
	}
}

func TestLoadThatRacedAnUnrelatedInvalidationIsReadAgain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	hs := newHeldStore(f.s)
	a := f.authorizer(hs, Options{})
	hs.hold(1, 0)
	res := inFlight(t, a, hs, f.secret)
	a.InvalidateProject("proj_other")
	hs.release <- struct{}{}
	if err := <-res; err != nil {
		t.Fatalf("a valid token is refused after an unrelated invalidation: %v", err)
	}
	if _, err := a.Authenticate(ctx, f.secret); err != nil {
		t.Fatal(err)
	}
	if n := f.s.reads.Load(); n != 2 {
		t.Fatalf("token read %d times, want 2 (read again, then cached)", n)
	}
}

// TestLoadInvalidatedDuringEveryReadFailsClosed: when each of the bounded
// reads overlaps an invalidation, the token is not admitted on a read that
// may be stale; the caller sees a store-like error (a 500), not a refusal.
func TestLoadInvalidatedDuringEveryReadFailsClosed(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	hs := newHeldStore(f.s)
	a := f.authorizer(hs, Options{})
	hs.hold(maxLoadAttempts, 0)
	res := make(chan error, 1)
	go func() {
		_, err := a.AuthenticateFrom(ctx, "198.51.100.1", f.secret)
		res <- err
	}()
	for range maxLoadAttempts {
		<-hs.started
		a.InvalidateProject("proj_other")
		hs.release <- struct{}{}
	}
	err := <-res
	if err == nil || refusal(err) {
		t.Fatalf("err = %v, want a non-refusal error", err)
	}
	if n := f.s.reads.Load(); n != maxLoadAttempts {
		t.Fatalf("token read %d times, want %d", n, maxLoadAttempts)
	}
	if wait := a.failures.wait("198.51.100.1", f.now); wait != 0 || len(a.failures.cur) != 0 {
		t.Error("a store-side failure was counted against the client address")
	}
	if _, err := a.Authenticate(ctx, f.secret); err != nil {
		t.Fatalf("once reads settle the token validates: %v", err)
	}
}

// TestUnknownTokenLoadThatRacedACreationIsNotCached: a lookup that found
// nothing, in flight while the token is created and the creation
// invalidated, is not remembered as unknown.
func TestUnknownTokenLoadThatRacedACreationIsNotCached(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	hs := newHeldStore(f.s)
	a := f.authorizer(hs, Options{})
	secret, display := NewToken()
	hash := a.hasher.Hash(secret)
	hs.hold(1, 0)
	res := inFlight(t, a, hs, secret) // has found nothing

	f.s.mu.Lock()
	f.s.tokens[hash] = store.Token{ID: "tok_new", ProjectID: "proj_1", Hash: hash, Prefix: display, Active: true}
	f.s.mu.Unlock()
	a.InvalidateToken("tok_new")
	hs.release <- struct{}{}

	if err := <-res; !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("request in flight during the creation: err = %v, want ErrInvalidToken", err)
	}
	if _, err := a.Authenticate(ctx, secret); err != nil {
		t.Fatalf("the created token must validate at once: %v", err)
	}
	if n := f.s.reads.Load(); n != 2 {
		t.Fatalf("token read %d times, want 2", n)
	}
}

func TestProjectKeyReadThatRacedARotationIsNotCached(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	hs := newHeldStore(f.s)
	a := f.authorizer(hs, Options{})
	hs.hold(0, 1)
	res := make(chan string, 1)
	go func() {
		key, _ := a.ProjectKey(ctx, "proj_1")
		res <- key
	}()
	<-hs.started // has read the old key
	ct, kid := a.keys.Seal("sk-rotated")
	f.update(func(_ *store.Token, p *store.Project) { p.KeyCiphertext, p.KeyID = ct, kid })
	a.InvalidateProject("proj_1")
	hs.release <- struct{}{}
	if key := <-res; key != "sk-project-key-123456" {
		t.Fatalf("raced read answered %q, want the key it read", key)
	}
	if key, err := a.ProjectKey(ctx, "proj_1"); err != nil || key != "sk-rotated" {
		t.Fatalf("next ProjectKey = %q, %v; want the rotated key (the raced read was not cached)", key, err)
	}
}
