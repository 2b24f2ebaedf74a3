package authz

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestNewTokenIsRandomAndRecognisable(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, display := NewToken()
		if !strings.HasPrefix(tok, TokenPrefix) || !wellFormed(tok) {
			t.Fatalf("token %q lacks prefix or shape", tok)
		}
		if !strings.HasPrefix(tok, display) || len(display) >= len(tok)/2 {
			t.Fatalf("display %q must be a short prefix of the token", display)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
	tok, _ := NewToken()
	if bits := (len(tok) - len(TokenPrefix)) * 6; bits < 192 {
		t.Fatalf("token carries %d bits, want ≥ 192", bits)
	}
}

func TestMask(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sk-proj-abcdefghijklmnopqrstuvwxyz", "sk-p…wxyz"},
		{"short", "*****"},
		{"", ""},
	} {
		if got := Mask(tc.in); got != tc.want {
			t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHasherIsKeyed(t *testing.T) {
	if _, err := NewHasher(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte key must be refused")
	}
	h1, _ := NewHasher(bytes.Repeat([]byte{1}, 32))
	h2, _ := NewHasher(bytes.Repeat([]byte{2}, 32))
	if h1.Hash("x") == h2.Hash("x") {
		t.Fatal("hash must depend on the key")
	}
	if a, b := h1.Hash("x"), h1.Hash("x"); a != b || strings.Contains(h1.Hash("llmp_secret"), "secret") {
		t.Fatal("hash must be deterministic and opaque")
	}
}

func TestKeyringSealOpenRotate(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	old, err := NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	ct, kid := old.Seal("sk-real-key")
	if strings.Contains(ct, "sk-real-key") || kid != KeyID(oldKey) {
		t.Fatalf("ciphertext %q / key id %q", ct, kid)
	}
	if ct2, _ := old.Seal("sk-real-key"); ct2 == ct {
		t.Fatal("sealing twice must use fresh nonces")
	}
	rotated, err := NewKeyring(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(ct, kid); err != nil || got != "sk-real-key" {
		t.Fatalf("open after rotation = %q, %v", got, err)
	}
	if _, kid2 := rotated.Seal("x"); kid2 != KeyID(newKey) {
		t.Fatal("the first key must seal")
	}
	if _, err := rotated.Open(ct, KeyID(newKey)); err == nil {
		t.Fatal("relabelled ciphertext must not open")
	}
	onlyNew, _ := NewKeyring(newKey)
	if _, err := onlyNew.Open(ct, kid); !errors.Is(err, ErrUnknownKeyID) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := NewKeyring(make([]byte, 16)); err == nil {
		t.Fatal("short key must be refused")
	}
}
