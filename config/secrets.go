package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DecodeKey accepts standard or URL-safe base64, padded or not, since keys are
// pasted from many tools.
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// GeneratedSecret is a secret that [EnsureSecrets] created on this start.
type GeneratedSecret struct {
	Name  string // the environment variable it stands in for
	Path  string
	Value string // printable form (base64 or the token itself)
}

// EnsureSecrets fills the secrets the environment left empty from files in the
// data dir, creating them (mode 0600) on the first start. It is only called for
// the embedded store: one machine, one data dir. It returns the secrets it
// created, so the caller can tell the operator once.
func EnsureSecrets(c *Config) ([]GeneratedSecret, error) {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	var created []GeneratedSecret
	load := func(name, file string, size int, asToken bool) (string, error) {
		path := filepath.Join(c.DataDir, file)
		b, err := os.ReadFile(path)
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: read %s: %w", name, path, err)
		}
		raw := make([]byte, size)
		rand.Read(raw)
		v := base64.StdEncoding.EncodeToString(raw)
		if asToken {
			v = "mgmt_" + base64.RawURLEncoding.EncodeToString(raw)
		}
		// O_EXCL: two processes racing on a first start must not both win.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("%s: create %s: %w", name, path, err)
		}
		if _, err := f.WriteString(v + "\n"); err != nil {
			f.Close()
			return "", fmt.Errorf("%s: write %s: %w", name, path, err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("%s: write %s: %w", name, path, err)
		}
		created = append(created, GeneratedSecret{Name: name, Path: path, Value: v})
		return v, nil
	}
	if c.ManagementToken == "" {
		v, err := load("LLM_PROXY_MANAGEMENT_TOKEN", "management-token", 32, true)
		if err != nil {
			return nil, err
		}
		c.ManagementToken = v
	}
	for _, s := range []struct {
		name, file string
		dst        *[]byte
	}{
		{"LLM_PROXY_ENCRYPTION_KEY", "encryption.key", &c.EncryptionKey},
		{"LLM_PROXY_TOKEN_HASH_KEY", "token-hash.key", &c.TokenHashKey},
	} {
		if *s.dst != nil {
			continue
		}
		v, err := load(s.name, s.file, 32, false)
		if err != nil {
			return nil, err
		}
		b, err := DecodeKey(v)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%s: %s does not hold base64 of 32 bytes", s.name, filepath.Join(c.DataDir, s.file))
		}
		*s.dst = b
	}
	return created, nil
}
