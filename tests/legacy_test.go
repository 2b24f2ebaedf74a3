package tests

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cmd/llm-proxy/cli"
	"github.com/llm-proxy/llm-proxy/predecessor/predecessortest"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// TestPredecessorImport moves predecessor-shaped databases (a SQLite file
// and a PostgreSQL schema; plaintext and hashed tokens; clear and encrypted
// keys) into a running stack with `llm-proxy import predecessor`, then
// sends requests through Envoy with the old tokens: they work with their
// project's key, count against their caps, and are refused when revoked
// or their project is inactive.
func TestPredecessorImport(t *testing.T) {
	encKey := bytes.Repeat([]byte{9}, 32)
	for _, tc := range []struct {
		name     string
		postgres bool
		variant  predecessortest.Variant
	}{
		{"sqlite, hashed tokens, encrypted keys", false, predecessortest.Variant{KeyColumn: "api_key", HashTokens: true, EncryptionKey: encKey}},
		{"postgres, plaintext tokens and keys", true, predecessortest.Variant{KeyColumn: "openai_api_key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				from string
				data predecessortest.Data
				opts stackOptions
			)
			if tc.postgres {
				from = testenv.NewPostgresDB(t)
				db, err := sql.Open("pgx", from)
				if err != nil {
					t.Fatal(err)
				}
				tc.variant.Postgres = true
				data = predecessortest.Build(t, db, tc.variant)
				db.Close()
				opts.databaseURL = testenv.NewPostgresDB(t)
			} else {
				from = filepath.Join(t.TempDir(), "old.db")
				db, err := sql.Open("sqlite", from)
				if err != nil {
					t.Fatal(err)
				}
				data = predecessortest.Build(t, db, tc.variant)
				db.Close()
			}
			s := startStack(t, opts)

			args := []string{"import", "predecessor", "--from", from}
			if tc.variant.EncryptionKey != nil {
				keyFile := filepath.Join(t.TempDir(), "encryption-key")
				if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(tc.variant.EncryptionKey)+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--encryption-key-file", keyFile)
			}
			var out bytes.Buffer
			if err := cli.Run(context.Background(), args, func(k string) string { return s.proxyEnv[k] }, &out, &out); err != nil {
				t.Fatalf("import: %v\n%s", err, out.String())
			}
			for _, want := range []string{"projects:     imported 3\n", "tokens:       imported 9\n", "audit events: imported 4\n"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("import summary lacks %q:\n%s", want, out.String())
				}
			}

			ctx := context.Background()
			keys := map[string]string{}
			active := map[string]bool{}
			for _, p := range data.Projects {
				keys[p.ID], active[p.ID] = p.Key, p.Active
			}
			for _, tok := range data.Tokens {
				s.upstream.Reset()
				_, err := s.client(tok.Secret).Chat.Completions.New(ctx, chatParams("hello from the old proxy"))
				switch {
				case !tok.Active:
					if statusOf(err) != 401 {
						t.Errorf("revoked token %s: %v, want 401", tok.ID, err)
					}
				case !active[tok.ProjectID]:
					if statusOf(err) != 403 {
						t.Errorf("token %s of an inactive project: %v, want 403", tok.ID, err)
					}
				case err != nil:
					t.Errorf("token %s: %v", tok.ID, err)
				default:
					reqs := s.upstream.Requests()
					if len(reqs) != 1 || reqs[0].Authorization != "Bearer "+keys[tok.ProjectID] {
						t.Errorf("token %s: upstream saw %d requests with the wrong key", tok.ID, len(reqs))
					}
				}
			}

			// The counts went on from the predecessor's, and the API shows
			// the tokens as legacy.
			first := data.Tokens[0]
			deadline := time.Now().Add(hangBound)
			for {
				var got struct {
					Legacy       bool   `json:"legacy"`
					RequestCount int64  `json:"request_count"`
					Prefix       string `json:"prefix"`
				}
				s.mustManage("GET", "/manage/tokens/"+first.ID, nil, 200, &got)
				if got.RequestCount == first.RequestCount+1 {
					if !got.Legacy || !strings.HasPrefix(got.Prefix, "sk-") {
						t.Errorf("imported token shows as %+v", got)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("request count %d, want %d", got.RequestCount, first.RequestCount+1)
				}
				time.Sleep(50 * time.Millisecond)
			}

			// The CLI shows them as legacy too.
			table, _, err := s.runCLI("token", "list", "--project", first.ProjectID)
			if err != nil || !strings.Contains(table, " active (legacy) ") || !strings.Contains(table, " revoked (legacy) ") {
				t.Errorf("token list: %v\n%s", err, table)
			}

			// Running the import again changes nothing.
			out.Reset()
			if err := cli.Run(context.Background(), args, func(k string) string { return s.proxyEnv[k] }, &out, &out); err != nil {
				t.Fatalf("second import: %v", err)
			}
			if !strings.Contains(out.String(), fmt.Sprintf("tokens:       imported 0, skipped %d (already imported)", len(data.Tokens))) {
				t.Errorf("second import:\n%s", out.String())
			}
		})
	}
}
