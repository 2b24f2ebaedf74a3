package cli

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/predecessor"
)

// newImportCmd is `llm-proxy import predecessor`. Unlike the operator
// commands it writes to the store itself, as migrate does: it runs where
// serve's settings are (LLM_PROXY_DATABASE_URL and the keys), usually once.
func newImportCmd(e *env) *cobra.Command {
	var (
		from, encKey, encKeyFile string
		expireAfter              string
		dryRun                   bool
	)
	pred := &cobra.Command{
		Use:   "predecessor --from <sqlite path | postgres URL> [flags]",
		Short: "Import projects, tokens and the audit log of the standalone proxy",
		Long: `Copy the standalone predecessor proxy's projects (keys re-sealed under
LLM_PROXY_ENCRYPTION_KEY, ids kept), tokens (flagged legacy; they keep working,
with their expiry, activity, request counts and caps) and audit events (original
times) into the store LLM_PROXY_DATABASE_URL names, and print a summary.

Every key is decrypted before anything is written: a key that cannot be stops the
import, naming its project. Running it again imports nothing twice.`,
		Example: `  llm-proxy import predecessor --from /srv/old-proxy/data/llm-proxy.db --dry-run
  llm-proxy import predecessor --from postgres://old@db/llmproxy --encryption-key "$ENCRYPTION_KEY" --expire-legacy-after 90d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := predecessor.Options{From: from, DryRun: dryRun}
			if encKeyFile != "" {
				if encKey != "" {
					return usageErrorf("give --encryption-key or --encryption-key-file, not both")
				}
				b, err := os.ReadFile(encKeyFile)
				if err != nil {
					return fmt.Errorf("read the predecessor's encryption key: %w", err)
				}
				encKey = strings.TrimSpace(string(b))
			}
			if encKey != "" {
				k, err := base64.StdEncoding.DecodeString(encKey)
				if err != nil || len(k) != 32 {
					return usageErrorf("--encryption-key must be the predecessor's ENCRYPTION_KEY: base64 of 32 bytes")
				}
				o.EncryptionKey = k
			}
			if expireAfter != "" {
				d, err := adminapi.ParseLifetime(expireAfter)
				if err != nil || d <= 0 {
					return usageErrorf("--expire-legacy-after %q: a positive duration such as 90d or 2160h", expireAfter)
				}
				o.ExpireLegacyAfter = d
			}
			return importPredecessor(cmd, e, o)
		},
	}
	pred.Flags().StringVar(&from, "from", "", "the predecessor's database: a SQLite file or a postgres:// URL (required)")
	_ = pred.MarkFlagRequired("from")
	pred.Flags().StringVar(&encKey, "encryption-key", "", "the predecessor's ENCRYPTION_KEY (base64), when its keys are stored enc:v1:")
	pred.Flags().StringVar(&encKeyFile, "encryption-key-file", "", "file holding the predecessor's ENCRYPTION_KEY (kept out of the process list)")
	pred.Flags().BoolVar(&dryRun, "dry-run", false, "read and check everything, print what would be imported, write nothing")
	pred.Flags().StringVar(&expireAfter, "expire-legacy-after", "", "make every imported token expire within this long (e.g. 90d)")
	return group("import", "Import data from other systems",
		"  llm-proxy import predecessor --from old.db --dry-run", pred)
}

func importPredecessor(cmd *cobra.Command, e *env, o predecessor.Options) error {
	ctx := cmd.Context()
	cfg, err := config.Load(e.getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if cfg.Embedded() {
		// The keys serve will use, generated now if this runs first.
		if _, err := config.EnsureSecrets(&cfg); err != nil {
			return err
		}
	}
	if o.Keys, o.Hasher, err = secretKeys(cfg); err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	sum, err := predecessor.Import(ctx, st, o)
	if err != nil {
		return fmt.Errorf("import predecessor: %w", err)
	}
	sum.Write(e.stdout)
	if o.DryRun {
		fmt.Fprintln(e.stdout, "Dry run: nothing was written.")
	} else {
		fmt.Fprintf(e.stdout, "Done in %s. Imported tokens are flagged legacy; they work through a running serve within seconds.\n", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
