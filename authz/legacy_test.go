package authz

import (
	"context"
	"errors"
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
)

// Imported tokens of the predecessor validate: by the SHA-256 it kept, or
// by our HMAC when it kept the secret; a validated one is cached like ours.
func TestLegacyTokens(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	const hashedSecret, clearSecret = "sk-AbCdEfGhIjKlMn_-1", "sk-ZyXwVuTsRqPo9876"
	f.s.tokens[LegacySHA256(hashedSecret)] = store.Token{ID: "tok_h", ProjectID: "proj_1", Active: true, Legacy: true}
	f.s.tokens[f.a.hasher.Hash(clearSecret)] = store.Token{ID: "tok_c", ProjectID: "proj_1", Active: true, Legacy: true}
	const notLegacy = "sk-NotImportedButSha"
	f.s.tokens[LegacySHA256(notLegacy)] = store.Token{ID: "tok_n", ProjectID: "proj_1", Active: true}

	for _, tc := range []struct {
		secret string
		id     string
		reads  int64 // store reads of tokens for the first call
	}{
		{hashedSecret, "tok_h", 2}, // HMAC first, then the SHA-256
		{clearSecret, "tok_c", 1},
	} {
		before := f.s.reads.Load()
		p, err := f.a.Authenticate(ctx, tc.secret)
		if err != nil || p.TokenID != tc.id || p.OpenAIKey != "sk-project-key-123456" {
			t.Fatalf("%s: %+v, %v", tc.id, p, err)
		}
		if _, err := f.a.Authenticate(ctx, tc.secret); err != nil {
			t.Fatal(err)
		}
		if n := f.s.reads.Load() - before; n != tc.reads {
			t.Errorf("%s: %d token reads for two requests, want %d (then cached)", tc.id, n, tc.reads)
		}
	}

	before := f.s.reads.Load()
	for _, secret := range []string{"sk-short", "sk-has space inside", "sk-" + string(make([]byte, 200)), "pk-AbCdEfGhIjKlMn"} {
		if _, err := f.a.Authenticate(ctx, secret); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%q: %v, want ErrInvalidToken", secret, err)
		}
	}
	if n := f.s.reads.Load() - before; n != 0 {
		t.Errorf("malformed legacy secrets cost %d store reads", n)
	}
	if _, err := f.a.Authenticate(ctx, notLegacy); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token under a SHA-256 but not legacy: %v, want ErrInvalidToken", err)
	}

	// Revocation applies as to ours.
	tok := f.s.tokens[LegacySHA256(hashedSecret)]
	tok.Active = false
	f.s.tokens[LegacySHA256(hashedSecret)] = tok
	f.a.InvalidateToken("tok_h")
	if _, err := f.a.Authenticate(ctx, hashedSecret); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("revoked legacy token: %v, want ErrTokenRevoked", err)
	}
}
