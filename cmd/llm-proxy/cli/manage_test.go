package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/llm-proxy/llm-proxy/adminapi"
)

// operator runs operator commands against one running serve.
type operator struct {
	t    *testing.T
	env  map[string]string
	spec *openapi3.T
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	_, env := startServeEnv(t)
	// The command finds the management token the first start generated in
	// the data dir, and the API on LLM_PROXY_HTTP_ADDR, as on `make run`.
	loader := openapi3.NewLoader()
	spec, err := loader.LoadFromData(adminapi.OpenAPI())
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	return &operator{t: t, env: env, spec: spec}
}

// run runs one command line and returns its stdout, stderr and error.
func (o *operator) run(args ...string) (string, string, error) {
	o.t.Helper()
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), args, func(k string) string { return o.env[k] }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// mustRun runs a command that must succeed and returns its stdout.
func (o *operator) mustRun(args ...string) string {
	o.t.Helper()
	out, errOut, err := o.run(args...)
	if err != nil {
		o.t.Fatalf("%s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// json runs a command with -o json, checks its output against the named
// schema of openapi.yaml and decodes it into v.
func (o *operator) json(schema string, v any, args ...string) {
	o.t.Helper()
	out := o.mustRun(append(args, "-o", "json")...)
	o.conforms(schema, []byte(out))
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			o.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func (o *operator) conforms(schema string, raw []byte) {
	o.t.Helper()
	ref := o.spec.Components.Schemas[schema]
	if ref == nil {
		o.t.Fatalf("openapi.yaml has no schema %s", schema)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		o.t.Fatalf("output is not JSON: %v\n%s", err, raw)
	}
	if err := ref.Value.VisitJSON(v); err != nil {
		o.t.Errorf("output does not match %s: %v\n%s", schema, err, raw)
	}
}

func TestOperatorCommands(t *testing.T) {
	o := newOperator(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	const key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var p struct {
		ID           string `json:"id"`
		OpenAIAPIKey string `json:"openai_api_key"`
		Active       bool   `json:"active"`
	}
	o.json("Project", &p, "project", "create", "--name", "team-a", "--openai-key-file", keyFile, "--budget", "12.5", "--rpm", "600")
	if p.OpenAIAPIKey != "sk-p…6789" || !p.Active {
		t.Errorf("created project: %+v", p)
	}
	o.json("Project", nil, "project", "get", p.ID)
	o.json("ProjectList", nil, "project", "list")

	// The table is for people: aligned columns, the key masked.
	table := o.mustRun("project", "list")
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], "sk-p…6789") ||
		strings.Index(lines[0], "NAME") != strings.Index(lines[1], "team-a") {
		t.Errorf("project list table:\n%s", table)
	}
	for _, args := range [][]string{{"project", "list"}, {"project", "get", p.ID}, {"project", "list", "-o", "json"}, {"project", "get", p.ID, "-o", "yaml"}} {
		if out := o.mustRun(args...); strings.Contains(out, key) {
			t.Errorf("%v printed the OpenAI key", args)
		}
	}

	// YAML holds the same object as JSON.
	var fromYAML, fromJSON map[string]any
	if err := yaml.Unmarshal([]byte(o.mustRun("project", "get", p.ID, "-o", "yaml")), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(o.mustRun("project", "get", p.ID, "-o", "json")), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if fy, fj := mustJSON(t, fromYAML), mustJSON(t, fromJSON); fy != fj {
		t.Errorf("yaml %s\njson %s", fy, fj)
	}

	var deactivated struct{ Active bool }
	o.json("Project", &deactivated, "project", "deactivate", p.ID)
	if deactivated.Active {
		t.Error("deactivate left the project active")
	}
	o.json("Project", nil, "project", "activate", p.ID)

	// Capture: on with patterns (replaced whole), shown in the detail, off again.
	var captured struct {
		Capture struct {
			Enabled          bool     `json:"enabled"`
			RequestMaxBytes  int      `json:"request_max_bytes"`
			ResponseMaxBytes int      `json:"response_max_bytes"`
			Redact           []string `json:"redact"`
		} `json:"capture"`
	}
	o.json("Project", &captured, "project", "capture", p.ID, "--redact", "email", "--redact", "re:ACME-[0-9]{3,6}", "--response-max-bytes", "4096")
	if c := captured.Capture; !c.Enabled || c.RequestMaxBytes != 65536 || c.ResponseMaxBytes != 4096 ||
		strings.Join(c.Redact, "|") != "email|re:ACME-[0-9]{3,6}" {
		t.Errorf("capture on: %+v", c)
	}
	if detail := o.mustRun("project", "get", p.ID); !strings.Contains(detail, "capture:               on, request ≤ 65536 B, response ≤ 4096 B, redact email re:ACME-[0-9]{3,6}") {
		t.Errorf("project detail:\n%s", detail)
	}
	if _, _, err := o.run("project", "capture", p.ID, "--redact", "re:("); err == nil || !strings.Contains(err.Error(), "param capture.redact[0]") {
		t.Errorf("a bad pattern: err %v", err)
	}
	// Rules: set from flags (params as JSON where they parse, else strings), shown, cleared.
	var ruled struct {
		Rules json.RawMessage `json:"rules"`
	}
	o.json("Project", &ruled, "project", "rules", p.ID, "--model", "gpt-4o*", "--model", "o3-mini", "--max-output-tokens", "500",
		"--over-max", "clamp", "--param", "n=1", "--param", "service_tier=auto,default", "--no-tools", "--cors-origin", "https://*.example.com")
	const wantRules = `{"cors":{"origins":["https://*.example.com"]},"max_output_tokens":500,"models":["gpt-4o*","o3-mini"],"no_tools":true,"over_max":"clamp","params":{"n":[1],"service_tier":["auto","default"]}}`
	canon := func(raw []byte) string {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		return mustJSON(t, v)
	}
	if got := canon(ruled.Rules); got != canon([]byte(wantRules)) {
		t.Errorf("project rules %s, want %s", got, wantRules)
	}
	if detail := o.mustRun("project", "get", p.ID); !strings.Contains(detail, `"models":["gpt-4o*","o3-mini"]`) {
		t.Errorf("project detail lacks the rules:\n%s", detail)
	}
	if _, _, err := o.run("project", "rules", p.ID, "--over-max", "cut"); err == nil || !strings.Contains(err.Error(), "param rules.over_max") {
		t.Errorf("a bad over-max: err %v", err)
	}
	o.json("Project", &ruled, "project", "rules", p.ID, "--clear")
	if got := canon(ruled.Rules); got != "{}" {
		t.Errorf("rules after --clear: %s", got)
	}

	o.json("Project", &captured, "project", "capture", p.ID, "--off")
	if c := captured.Capture; c.Enabled || len(c.Redact) != 0 || c.RequestMaxBytes != 65536 {
		t.Errorf("capture off: %+v", c)
	}
	o.json("Project", nil, "project", "update", p.ID, "--budget", "none", "--tpm", "1000")
	newKey := filepath.Join(t.TempDir(), "new-key")
	if err := os.WriteFile(newKey, []byte("sk-proj-ZZZZZZZZZZZZZZZZZZZZZZZZZZZZwxyz"), 0o600); err != nil {
		t.Fatal(err)
	}
	var rotated struct {
		OpenAIAPIKey string `json:"openai_api_key"`
	}
	o.json("Project", &rotated, "project", "rotate-key", p.ID, "--openai-key-file", newKey)
	if rotated.OpenAIAPIKey != "sk-p…wxyz" {
		t.Errorf("rotated key shows as %q", rotated.OpenAIAPIKey)
	}

	// A created token: the secret alone on stdout through jq's eyes, the
	// warning on stderr.
	stdout, stderr, err := o.run("token", "create", "--project", p.ID, "--name", "ci", "--expires-in", "30d", "--max-requests", "100", "-o", "json")
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	o.conforms("CreatedToken", []byte(stdout))
	var tok struct {
		ID, Token string
	}
	if err := json.Unmarshal([]byte(stdout), &tok); err != nil || !strings.HasPrefix(tok.Token, "llmp_") {
		t.Fatalf("token create printed %q (%v)", stdout, err)
	}
	if stderr != tokenSecretWarning+"\n" {
		t.Errorf("token create stderr = %q", stderr)
	}
	o.json("Token", nil, "token", "get", tok.ID)
	o.json("TokenList", nil, "token", "list", "--project", p.ID)
	if out := o.mustRun("token", "list"); strings.Contains(out, tok.Token) {
		t.Error("token list printed the secret")
	}
	var updated struct {
		MaxRequests *int64 `json:"max_requests"`
	}
	o.json("Token", &updated, "token", "update", tok.ID, "--max-requests", "0", "--name", "ci-2")
	if updated.MaxRequests != nil {
		t.Errorf("max requests after --max-requests 0: %v", *updated.MaxRequests)
	}
	var revoked struct {
		RevokedAt *string `json:"revoked_at"`
	}
	o.json("Token", &revoked, "token", "revoke", tok.ID)
	if revoked.RevokedAt == nil {
		t.Error("revoke left revoked_at null")
	}

	// Usage: one project's report, or one per project.
	o.json("UsageReport", nil, "usage", "--project", p.ID, "--from", "2025-03-01", "--to", "2025-03-31")
	lines = strings.Split(strings.TrimSpace(o.mustRun("usage", "--project", p.ID, "--from", "2025-03-01", "--to", "2025-03-31")), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "PROJECT DATE MODEL REQUESTS ERRORS PROMPT COMPLETION TOTAL TOKENS COST" ||
		strings.Join(strings.Fields(lines[1]), " ") != p.ID+" 2025-03-01..2025-03-31 (total) 0 0 0 0 0 $0" {
		t.Errorf("usage table:\n%s", strings.Join(lines, "\n"))
	}
	var reports []json.RawMessage
	if err := json.Unmarshal([]byte(o.mustRun("usage", "-o", "json")), &reports); err != nil || len(reports) != 1 {
		t.Fatalf("usage of every project: %v, %d reports", err, len(reports))
	}
	o.conforms("UsageReport", reports[0])

	var audit struct {
		Data []struct {
			ID, Action string
		} `json:"data"`
	}
	o.json("AuditList", &audit, "audit", "list", "--project", p.ID, "--action", "token.revoke")
	if len(audit.Data) != 1 {
		t.Fatalf("token.revoke events: %+v", audit.Data)
	}
	o.json("AuditEvent", nil, "audit", "get", audit.Data[0].ID)

	var purged struct{ Purged int }
	o.json("PurgeResult", &purged, "cache", "purge", "--project", p.ID)
	o.json("PurgeResult", &purged, "cache", "purge", "--all")
	o.json("PurgeResult", &purged, "cache", "purge", "--project", p.ID, "--method", "GET", "--path", "/v1/models")
}

// Usage errors exit 2 and say what is wrong; refusals exit 1 with the API's
// message.
func TestOperatorExitCodes(t *testing.T) {
	o := newOperator(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, ExitUsage, "no command given"},
		{[]string{"projekt"}, ExitUsage, `unknown command "projekt"`},
		{[]string{"project"}, ExitUsage, "needs a subcommand"},
		{[]string{"project", "get"}, ExitUsage, "accepts 1 arg"},
		{[]string{"project", "list", "--bogus"}, ExitUsage, "unknown flag: --bogus"},
		{[]string{"project", "list", "-o", "xml"}, ExitUsage, `--output must be table, json or yaml, not "xml"`},
		{[]string{"project", "create", "--openai-key-file", "/dev/null"}, ExitUsage, `required flag(s) "name" not set`},
		{[]string{"token", "update", "tok_x"}, ExitUsage, "nothing to change"},
		{[]string{"cache", "purge"}, ExitUsage, "give --project PROJECT_ID or --all"},
		{[]string{"project", "get", "proj_doesnotexist"}, ExitFailure, `No project with id "proj_doesnotexist". (HTTP 404, not_found)`},
		{[]string{"token", "create", "--project", "proj_doesnotexist"}, ExitFailure, `project_id "proj_doesnotexist" names no project.`},
		{[]string{"audit", "get", "aud_nothing"}, ExitFailure, `No audit event with id "aud_nothing".`},
		{[]string{"import", "predecessor"}, ExitUsage, `required flag(s) "from" not set`},
		{[]string{"import", "predecessor", "--from", "old.db", "--encryption-key", "c2hvcnQ="}, ExitUsage, "--encryption-key must be the predecessor's ENCRYPTION_KEY"},
		{[]string{"import", "predecessor", "--from", "old.db", "--expire-legacy-after", "soon"}, ExitUsage, `--expire-legacy-after "soon"`},
		{[]string{"import", "predecessor", "--from", "/nonexistent/old.db"}, ExitFailure, "predecessor database /nonexistent/old.db: stat /nonexistent/old.db: no such file or directory"},
	} {
		_, _, err := o.run(tc.args...)
		if got := ExitCode(err); got != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: exit %d, error %v; want exit %d and %q", tc.args, got, err, tc.code, tc.msg)
		}
		var u *UsageError
		if errors.As(err, &u) && !strings.HasPrefix(u.Hint, "Run 'llm-proxy") {
			t.Errorf("%v: hint %q", tc.args, u.Hint)
		}
	}
	// A wrong management token is a refusal too.
	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := o.run("project", "list", "--token-file", bad)
	if ExitCode(err) != ExitFailure || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("wrong management token: %v", err)
	}
}

// Every command has help with examples, and cobra's completion is there.
func TestHelpAndCompletion(t *testing.T) {
	root := newRoot(&env{getenv: func(string) string { return "" }, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}})
	for _, c := range allCommands(root) {
		if c.Name() == "help" || c.HasParent() && c.Parent().Name() == "completion" || c.Name() == "completion" {
			continue
		}
		if c.Example == "" {
			t.Errorf("%s has no examples", c.CommandPath())
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var out bytes.Buffer
		if err := Run(context.Background(), []string{"completion", shell}, func(string) string { return "" }, &out, &out); err != nil || !strings.Contains(out.String(), "llm-proxy") {
			t.Errorf("completion %s: %v", shell, err)
		}
	}
	// Commands from before cobra keep their one-dash flags.
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"envoy-config", "-listener-port", "12345", "-upstream=example.com:443"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "12345") || !strings.Contains(out.String(), "example.com") {
		t.Error("envoy-config ignored its one-dash flags")
	}
}

func allCommands(c *cobra.Command) []*cobra.Command {
	all := []*cobra.Command{c}
	for _, sub := range c.Commands() {
		all = append(all, allCommands(sub)...)
	}
	return all
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
