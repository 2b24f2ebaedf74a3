package authz

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

// memStore is an in-memory credentialStore for unit tests of the Authorizer's
// own logic; the real stores are exercised by the store suite and e2e tests.
type memStore struct {
	mu        sync.Mutex
	tokens    map[string]store.Token // by hash
	projects  map[string]store.Project
	reads     atomic.Int64 // of tokens
	projReads atomic.Int64
	failAdd   bool
}

func (m *memStore) GetTokenByHash(_ context.Context, hash string) (store.Token, error) {
	m.reads.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[hash]
	if !ok {
		return store.Token{}, store.ErrNotFound
	}
	return t, nil
}

func (m *memStore) GetProject(_ context.Context, id string) (store.Project, error) {
	m.projReads.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.projects[id]
	if !ok {
		return store.Project{}, store.ErrNotFound
	}
	return p, nil
}

func (m *memStore) AddTokenUsage(_ context.Context, us []store.TokenUsage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failAdd {
		return errors.New("store down")
	}
	for _, u := range us {
		for h, t := range m.tokens {
			if t.ID == u.TokenID {
				t.RequestCount += u.Requests
				m.tokens[h] = t
			}
		}
	}
	return nil
}

type fixture struct {
	a      *Authorizer
	s      *memStore
	secret string
	hash   string
	now    time.Time
}

func newFixture(t testing.TB, maxRequests *int64) *fixture {
	t.Helper()
	keys, _ := NewKeyring(bytes.Repeat([]byte{3}, 32))
	hasher, _ := NewHasher(bytes.Repeat([]byte{4}, 32))
	ct, kid := keys.Seal("sk-project-key-123456")
	secret, display := NewToken()
	f := &fixture{s: &memStore{
		tokens:   map[string]store.Token{},
		projects: map[string]store.Project{"proj_1": {ID: "proj_1", Active: true, KeyCiphertext: ct, KeyID: kid}},
	}, secret: secret, hash: hasher.Hash(secret), now: time.Unix(1_700_000_000, 0)}
	f.s.tokens[f.hash] = store.Token{ID: "tok_1", ProjectID: "proj_1", Hash: f.hash, Prefix: display, Active: true, MaxRequests: maxRequests}
	f.a = NewAuthorizer(f.s, hasher, keys, Options{CacheTTL: time.Minute, Now: func() time.Time { return f.now }})
	return f
}

func (f *fixture) update(fn func(*store.Token, *store.Project)) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	tok, proj := f.s.tokens[f.hash], f.s.projects["proj_1"]
	fn(&tok, &proj)
	f.s.tokens[f.hash], f.s.projects["proj_1"] = tok, proj
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	p, err := f.a.Authenticate(ctx, f.secret)
	if err != nil || p.OpenAIKey != "sk-project-key-123456" || p.TokenID != "tok_1" || p.ProjectID != "proj_1" {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	for range 10 {
		if _, err := f.a.Authenticate(ctx, f.secret); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.s.reads.Load(); n != 1 {
		t.Fatalf("store read %d times, want 1 (cached)", n)
	}

	for _, tc := range []struct {
		name   string
		secret string
		change func(*store.Token, *store.Project)
		want   error
	}{
		{"garbage", "sk-not-ours", nil, ErrInvalidToken},
		{"unknown", func() string { s, _ := NewToken(); return s }(), nil, ErrInvalidToken},
		{"revoked", f.secret, func(tk *store.Token, _ *store.Project) { tk.Active = false }, ErrTokenRevoked},
		{"expired", f.secret, func(tk *store.Token, _ *store.Project) { e := f.now.Add(-time.Second); tk.ExpiresAt = &e }, ErrTokenExpired},
		{"project inactive", f.secret, func(_ *store.Token, p *store.Project) { p.Active = false }, ErrProjectInactive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			if tc.secret == f.secret || tc.change != nil {
				tc.secret = f.secret
			}
			if _, err := f.a.Authenticate(ctx, tc.secret); err != nil && tc.change != nil {
				t.Fatalf("before change: %v", err)
			}
			if tc.change != nil {
				f.update(tc.change)
				// Invalidation is what makes the change visible before the TTL.
				f.a.InvalidateToken("tok_1")
				f.a.InvalidateProject("proj_1")
			}
			if _, err := f.a.Authenticate(ctx, tc.secret); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCacheTTLPicksUpChangesMadeElsewhere(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.a.Authenticate(ctx, f.secret); err != nil {
		t.Fatal(err)
	}
	f.update(func(tk *store.Token, _ *store.Project) { tk.Active = false })
	if _, err := f.a.Authenticate(ctx, f.secret); err != nil {
		t.Fatalf("within TTL the cached answer stands: %v", err)
	}
	f.now = f.now.Add(time.Minute)
	if _, err := f.a.Authenticate(ctx, f.secret); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("after TTL: %v", err)
	}
}

func TestCountsSurviveFailedFlushesReloadsAndRestarts(t *testing.T) {
	limit := int64(5)
	f := newFixture(t, &limit)
	ctx := context.Background()
	p, err := f.a.Authenticate(ctx, f.secret)
	if err != nil || p.MaxRequests == nil || *p.MaxRequests != 5 {
		t.Fatalf("principal %+v, %v: the cap must travel to the limiter", p, err)
	}
	for range 3 {
		f.a.CountRequest("tok_1")
	}
	f.s.failAdd = true
	if err := f.a.Flush(ctx); err == nil {
		t.Fatal("flush must report the store error")
	}
	f.s.failAdd = false
	if err := f.a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.s.tokens[f.hash].RequestCount; got != 3 {
		t.Fatalf("stored count %d, want 3 (nothing lost on a failed flush)", got)
	}
	// A reload from the store (TTL passed) neither forgets nor double counts.
	f.now = f.now.Add(time.Hour)
	f.a.CountRequest("tok_1")
	if _, err := f.a.Authenticate(ctx, f.secret); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.a.RequestCount("tok_1"); n != 4 {
		t.Fatalf("count after reload %d, want 4", n)
	}
	if err := f.a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A fresh instance (a restart) starts from the flushed count.
	again := NewAuthorizer(f.s, f.a.hasher, f.a.keys, Options{CacheTTL: time.Minute})
	if _, err := again.Authenticate(ctx, f.secret); err != nil {
		t.Fatal(err)
	}
	if n, _ := again.RequestCount("tok_1"); n != 4 {
		t.Fatalf("count after restart %d, want 4", n)
	}
}

func TestPrincipalCarriesProjectPolicy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ background, batches bool }{{true, true}, {false, true}, {true, false}, {false, false}} {
		f := newFixture(t, nil)
		f.update(func(_ *store.Token, p *store.Project) { p.AllowBackground, p.AllowBatches = tc.background, tc.batches })
		p, err := f.a.Authenticate(ctx, f.secret)
		if err != nil {
			t.Fatal(err)
		}
		if p.AllowBackground != tc.background || p.AllowBatches != tc.batches {
			t.Errorf("project allows background %t, batches %t: principal has %t, %t",
				tc.background, tc.batches, p.AllowBackground, p.AllowBatches)
		}
	}
}

func TestProjectKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	wantKey := func(want string) {
		t.Helper()
		key, err := f.a.ProjectKey(ctx, "proj_1")
		if err != nil || key != want {
			t.Fatalf("ProjectKey = %q, %v; want %q", key, err, want)
		}
	}
	wantKey("sk-project-key-123456")
	wantKey("sk-project-key-123456")
	if n := f.s.projReads.Load(); n != 1 {
		t.Errorf("store read %d times, want 1 (cached)", n)
	}

	// Money owed is owed: an inactive project still has its key.
	f.update(func(_ *store.Token, p *store.Project) { p.Active = false })
	f.a.InvalidateProject("proj_1")
	wantKey("sk-project-key-123456")
	if n := f.s.projReads.Load(); n != 2 {
		t.Errorf("store read %d times after invalidation, want 2", n)
	}

	// A rotated key is seen after an invalidation, or else after the TTL.
	rotate := func(key string) {
		ct, kid := f.a.keys.Seal(key)
		f.update(func(_ *store.Token, p *store.Project) { p.KeyCiphertext, p.KeyID = ct, kid })
	}
	rotate("sk-rotated-1")
	wantKey("sk-project-key-123456") // cached
	f.a.InvalidateProject("proj_1")
	wantKey("sk-rotated-1")
	rotate("sk-rotated-2")
	f.now = f.now.Add(59 * time.Second)
	wantKey("sk-rotated-1")
	f.now = f.now.Add(time.Second)
	wantKey("sk-rotated-2")
	rotate("sk-rotated-3")
	f.a.InvalidateToken("tok_1") // not the project's key
	wantKey("sk-rotated-2")
	f.a.InvalidateAll()
	wantKey("sk-rotated-3")

	if _, err := f.a.ProjectKey(ctx, "proj_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ProjectKey of an unknown project: err = %v, want ErrNotFound", err)
	}
	f.s.mu.Lock()
	f.s.projects["proj_bad"] = store.Project{ID: "proj_bad", KeyCiphertext: "not sealed", KeyID: "k-unknown"}
	f.s.mu.Unlock()
	key, err := f.a.ProjectKey(ctx, "proj_bad")
	if err == nil || errors.Is(err, store.ErrNotFound) || key != "" {
		t.Errorf("ProjectKey of a key that does not open = %q, %v; want a keyring error", key, err)
	}
}

// FuzzAuthenticate: no string other than the issued token authenticates, and
// none makes Authenticate panic.
func FuzzAuthenticate(f *testing.F) {
	fx := newFixture(f, nil)
	f.Add(fx.secret)
	f.Add(fx.secret[:len(fx.secret)-1] + "x")
	f.Add(TokenPrefix)
	f.Add("")
	f.Fuzz(func(t *testing.T, secret string) {
		p, err := fx.a.Authenticate(context.Background(), secret)
		if (err == nil) != (secret == fx.secret) {
			t.Fatalf("Authenticate(%q) = %+v, %v", secret, p, err)
		}
	})
}
