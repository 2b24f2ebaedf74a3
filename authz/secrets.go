package authz

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/llm-proxy/llm-proxy/store"
)

// TokenPrefix starts every proxy token, so a leaked one is recognisable by secret
// scanners and cannot be mistaken for an OpenAI key.
const TokenPrefix = "llmp_"

// tokenEntropyBytes is 256 bits, above the 192-bit floor we promise.
const tokenEntropyBytes = 32

// tokenDisplayLen is how much of a token may be shown: the prefix plus four
// characters of the random part, which identifies it without weakening it.
const tokenDisplayLen = len(TokenPrefix) + 4

// LegacyTokenPrefix starts the tokens of the predecessor proxy, which
// imported tokens keep ("sk-" and about 74 random bits in base64url). They
// validate like ours; see [LegacySHA256].
const LegacyTokenPrefix = "sk-"

// Bounds of the random part of a legacy token (the predecessor's are about
// 13 characters; a UUID is 36): shorter or longer strings, OpenAI's own
// keys among them, are refused without a store read.
const (
	minLegacySecretLen = 8
	maxLegacySecretLen = 43
)

// LegacySHA256 is the stored hash of a legacy token whose predecessor kept
// only its unkeyed SHA-256: [store.LegacySHA256Prefix] and the hex digest.
// Tokens imported in clear are stored under [Hasher.Hash] like ours.
func LegacySHA256(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return store.LegacySHA256Prefix + hex.EncodeToString(sum[:])
}

// NewToken returns a fresh random proxy token and its display prefix.
func NewToken() (secret, display string) {
	b := make([]byte, tokenEntropyBytes)
	rand.Read(b) // never fails since Go 1.24: it crashes the process instead
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, secret[:tokenDisplayLen]
}

// Mask returns s with everything but the first and last four characters hidden,
// the only form in which a key or token may appear in a response or a log.
func Mask(s string) string {
	if len(s) <= 12 {
		return strings.Repeat("*", len(s))
	}
	return s[:4] + "…" + s[len(s)-4:]
}

// Hasher computes the stored form of a proxy token. It is keyed, so the stored
// hashes cannot be brute-forced offline without the key.
type Hasher struct{ key []byte }

// NewHasher returns a Hasher; the key must be at least 32 bytes.
func NewHasher(key []byte) (Hasher, error) {
	if len(key) < 32 {
		return Hasher{}, fmt.Errorf("token hash key: need at least 32 bytes, got %d", len(key))
	}
	return Hasher{key: append([]byte(nil), key...)}, nil
}

// Hash returns the hex HMAC-SHA-256 of a token secret.
func (h Hasher) Hash(secret string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// ErrUnknownKeyID means a sealed value names an encryption key this process does
// not hold: it was sealed elsewhere, or the old key was removed before re-encryption.
var ErrUnknownKeyID = errors.New("unknown encryption key id")

// Keyring seals and opens OpenAI keys with AES-256-GCM. The first key seals; all
// keys open, so a key can be rotated in without downtime and old rows re-sealed
// later.
type Keyring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

// KeyID derives the public id of an encryption key: a short hash, so the id can be
// stored beside each ciphertext without revealing anything of the key.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("llm-proxy key id\x00"), key...))
	return hex.EncodeToString(sum[:4])
}

// NewKeyring builds a Keyring. Each key must be 32 bytes; keys[0] seals.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring: no key")
	}
	k := &Keyring{aeads: make(map[string]cipher.AEAD, len(keys))}
	for i, key := range keys {
		if len(key) != 32 {
			return nil, fmt.Errorf("keyring: key %d is %d bytes, want 32", i, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %d: %w", i, err)
		}
		id := KeyID(key)
		if i == 0 {
			k.primary = id
		}
		k.aeads[id] = aead
	}
	return k, nil
}

// Seal encrypts plaintext under the primary key. The ciphertext is base64 of
// nonce‖sealed; keyID names the key needed to open it. The key id is bound as
// additional data, so a ciphertext cannot be relabelled to another key.
func (k *Keyring) Seal(plaintext string) (ciphertext, keyID string) {
	aead := k.aeads[k.primary]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(nonce)
	out := aead.Seal(nonce, nonce, []byte(plaintext), []byte(k.primary))
	return base64.StdEncoding.EncodeToString(out), k.primary
}

// Open decrypts a value made by Seal.
func (k *Keyring) Open(ciphertext, keyID string) (string, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return "", fmt.Errorf("open sealed key: %w: %s", ErrUnknownKeyID, keyID)
	}
	raw, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil || len(raw) < aead.NonceSize() {
		return "", errors.New("open sealed key: malformed ciphertext")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(keyID))
	if err != nil {
		return "", fmt.Errorf("open sealed key: %w", err)
	}
	return string(plain), nil
}

// PrimaryKeyID is the id new values are sealed under.
func (k *Keyring) PrimaryKeyID() string { return k.primary }
