package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/store"
)

// openStore opens the configured store and, unless LLM_PROXY_AUTO_MIGRATE
// is false, applies pending migrations: what serve and the import share.
func openStore(ctx context.Context, cfg config.Config) (*store.Store, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.AutoMigrate {
		if err := st.Migrate(ctx, "up", io.Discard); err != nil {
			st.Close()
			return nil, err
		}
	}
	return st, nil
}

// secretKeys builds the keyring that seals projects' OpenAI keys and the
// hasher under which proxy tokens are stored, from the configuration.
func secretKeys(cfg config.Config) (*authz.Keyring, authz.Hasher, error) {
	keyring, err := authz.NewKeyring(append([][]byte{cfg.EncryptionKey}, cfg.OldEncryptionKeys...)...)
	if err != nil {
		return nil, authz.Hasher{}, fmt.Errorf("LLM_PROXY_ENCRYPTION_KEY: %w", err)
	}
	hasher, err := authz.NewHasher(cfg.TokenHashKey)
	if err != nil {
		return nil, authz.Hasher{}, fmt.Errorf("LLM_PROXY_TOKEN_HASH_KEY: %w", err)
	}
	return keyring, hasher, nil
}
