package authz

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

func TestRepeatedUnknownTokenCostsOneStoreQueryPerNegativeTTL(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{})
	unknown, _ := NewToken()
	for range 2000 {
		if _, err := a.Authenticate(ctx, unknown); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("err = %v, want ErrInvalidToken", err)
		}
	}
	if n := f.s.reads.Load(); n != 1 {
		t.Fatalf("2000 attempts of one unknown token read the store %d times, want 1", n)
	}
	if n := count(t, a.metrics.negativeHits); n != 1999 {
		t.Errorf("negative cache hits = %d, want 1999", n)
	}
	f.now = f.now.Add(DefaultNegativeTTL - time.Nanosecond)
	a.Authenticate(ctx, unknown)
	if n := f.s.reads.Load(); n != 1 {
		t.Fatalf("store read %d times just before the negative TTL, want 1", n)
	}
	f.now = f.now.Add(time.Nanosecond)
	a.Authenticate(ctx, unknown)
	if n := f.s.reads.Load(); n != 2 {
		t.Fatalf("store read %d times once the negative TTL passed, want 2", n)
	}
}

func TestNegativeTTLOption(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		cacheTTL time.Duration
		negTTL   time.Duration
		want     time.Duration // 0: nothing remembered
	}{
		{"default", time.Minute, 0, DefaultNegativeTTL},
		{"set", time.Minute, 30 * time.Second, 30 * time.Second},
		{"capped at the cache TTL", 2 * time.Second, 0, 2 * time.Second},
		{"disabled", time.Minute, -1, 0},
		{"no caching at all", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			o := Options{CacheTTL: tc.cacheTTL, NegativeTTL: tc.negTTL, Now: func() time.Time { return f.now }}
			a := NewAuthorizer(f.s, f.a.hasher, f.a.keys, o)
			unknown, _ := NewToken()
			start := f.now
			var wantReads int64
			for _, at := range []time.Duration{0, tc.want - time.Nanosecond, tc.want} {
				f.now = start.Add(max(at, 0))
				a.Authenticate(ctx, unknown)
				if at == 0 || at == tc.want || tc.want == 0 {
					wantReads++
				}
				if n := f.s.reads.Load(); n != wantReads {
					t.Fatalf("at +%v: store read %d times, want %d", at, n, wantReads)
				}
			}
		})
	}
}

// TestCreatedTokenValidatesAtOnce: a secret tried before its token existed
// is remembered as unknown; the management API's invalidation after the
// creation forgets that, so the new token works on the next request.
func TestCreatedTokenValidatesAtOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{})
	secret, display := NewToken()
	if _, err := a.Authenticate(ctx, secret); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("before creation: %v", err)
	}
	hash := a.hasher.Hash(secret)
	f.s.mu.Lock()
	f.s.tokens[hash] = store.Token{ID: "tok_new", ProjectID: "proj_1", Hash: hash, Prefix: display, Active: true}
	f.s.mu.Unlock()
	if _, err := a.Authenticate(ctx, secret); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("without an invalidation the negative entry stands for its TTL: %v", err)
	}
	a.InvalidateToken("tok_new")
	if p, err := a.Authenticate(ctx, secret); err != nil || p.TokenID != "tok_new" {
		t.Fatalf("after the creation's invalidation: %+v, %v", p, err)
	}
	if n := f.s.reads.Load(); n != 2 {
		t.Fatalf("store read %d times, want 2", n)
	}
}

func TestNegativeCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{NegativeCacheSize: 3})
	var tokens [4]string
	for i := range tokens {
		tokens[i], _ = NewToken()
	}
	try := func(i int, wantReads int64) {
		t.Helper()
		if _, err := a.Authenticate(ctx, tokens[i]); !errors.Is(err, ErrInvalidToken) {
			t.Fatal(err)
		}
		if n := f.s.reads.Load(); n != wantReads {
			t.Fatalf("after token %d: store read %d times, want %d", i, n, wantReads)
		}
	}
	try(0, 1)
	try(1, 2)
	try(2, 3)
	try(0, 3) // remembered
	try(3, 4) // the cache is full: token 0, the oldest, goes
	try(1, 4)
	try(2, 4)
	try(3, 4)
	try(0, 5) // forgotten; now token 1 goes
	try(1, 6)
	if n := len(a.unknown.until); n != 3 {
		t.Fatalf("%d hashes remembered, want 3", n)
	}
}

func TestNegativeCacheReinsertion(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	n := newNegativeCache(5*time.Second, 2)
	n.add("h1", now)
	now = now.Add(5 * time.Second)
	if n.has("h1", now) {
		t.Fatal("h1 outlived its TTL")
	}
	n.add("h1", now) // the ring holds h1 twice
	n.add("h2", now) // evicts h1's first insertion, which must not take the second with it
	if !n.has("h1", now) || !n.has("h2", now) {
		t.Fatalf("h1 %t, h2 %t; want both remembered", n.has("h1", now), n.has("h2", now))
	}
	n.clear()
	if n.has("h1", now) || n.has("h2", now) || len(n.ring) != 0 {
		t.Fatal("clear kept entries")
	}
}

func TestMalformedTokensNeverReachTheStore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	good, _ := NewToken()
	for _, secret := range []string{
		"",
		TokenPrefix,
		"sk-proj-" + strings.Repeat("a", 40),
		"LLMP_" + good[len(TokenPrefix):],      // prefix is case-sensitive
		"xxxx_" + good[len(TokenPrefix):],      // right length, wrong prefix
		good[:len(good)-1],                     // one short
		good + "A",                             // one long
		"Bearer " + good,                       // the header, not the token
		strings.Repeat("llmp_", len(good)/5+1), // long garbage
	} {
		if _, err := f.a.Authenticate(ctx, secret); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Authenticate(%q): err = %v, want ErrInvalidToken", secret, err)
		}
		if _, err := f.a.AuthenticateFrom(ctx, "192.0.2.1", secret); !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrTooManyFailures) {
			t.Errorf("AuthenticateFrom(%q): err = %v", secret, err)
		}
	}
	if n := f.s.reads.Load(); n != 0 {
		t.Fatalf("malformed tokens read the store %d times, want 0", n)
	}
	if n := len(f.a.unknown.until); n != 0 {
		t.Fatalf("malformed tokens took %d negative cache entries, want 0", n)
	}
}
