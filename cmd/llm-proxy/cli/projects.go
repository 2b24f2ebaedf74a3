package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newManagementCmds returns the operator commands, each a client of the
// management API.
func newManagementCmds(e *env) []*cobra.Command {
	return []*cobra.Command{newProjectCmd(e), newTokenCmd(e), newUsageCmd(e), newAuditCmd(e), newCacheCmd(e)}
}

// projectOut is a project as the API shows it, for tables.
type projectOut struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	OpenAIAPIKey     string          `json:"openai_api_key"` // masked by the API
	Active           bool            `json:"active"`
	Limits           limitsOut       `json:"limits"`
	MonthlyBudgetUSD *json.Number    `json:"monthly_budget_usd"`
	CachePOST        bool            `json:"cache_post"`
	AllowBackground  bool            `json:"allow_background"`
	AllowBatches     bool            `json:"allow_batches"`
	Capture          captureOut      `json:"capture"`
	Rules            json.RawMessage `json:"rules"`
	CreatedAt        string          `json:"created_at"`
	UpdatedAt        string          `json:"updated_at"`
}

type captureOut struct {
	Enabled          bool     `json:"enabled"`
	RequestMaxBytes  int      `json:"request_max_bytes"`
	ResponseMaxBytes int      `json:"response_max_bytes"`
	Redact           []string `json:"redact"`
}

func (c captureOut) String() string {
	if !c.Enabled {
		return "off"
	}
	s := fmt.Sprintf("on, request ≤ %d B, response ≤ %d B", c.RequestMaxBytes, c.ResponseMaxBytes)
	if len(c.Redact) > 0 {
		s += ", redact " + strings.Join(c.Redact, " ")
	}
	return s
}

type limitsOut struct {
	RequestsPerMinute *int64 `json:"requests_per_minute"`
	TokensPerMinute   *int64 `json:"tokens_per_minute"`
	MaxConcurrent     *int64 `json:"max_concurrent"`
}

func (l limitsOut) String() string {
	if l == (limitsOut{}) {
		return "-"
	}
	return fmt.Sprintf("rpm=%s tpm=%s concurrent=%s", num(l.RequestsPerMinute), num(l.TokensPerMinute), num(l.MaxConcurrent))
}

type listOut[T any] struct {
	Data []T `json:"data"`
}

func projectTable(tw *tabwriter.Writer, l listOut[projectOut]) {
	row(tw, "ID", "NAME", "OPENAI KEY", "ACTIVE", "BUDGET/MONTH", "LIMITS", "CREATED")
	for _, p := range l.Data {
		row(tw, p.ID, p.Name, p.OpenAIAPIKey, yesNo(p.Active), money(p.MonthlyBudgetUSD), p.Limits.String(), p.CreatedAt)
	}
}

func projectDetail(tw *tabwriter.Writer, p projectOut) {
	row(tw, "id:", p.ID)
	row(tw, "name:", p.Name)
	row(tw, "openai key:", p.OpenAIAPIKey)
	row(tw, "active:", yesNo(p.Active))
	row(tw, "monthly budget:", money(p.MonthlyBudgetUSD))
	row(tw, "limits:", p.Limits.String())
	row(tw, "cache POST:", yesNo(p.CachePOST))
	row(tw, "background responses:", yesNo(p.AllowBackground))
	row(tw, "batches:", yesNo(p.AllowBatches))
	row(tw, "capture:", p.Capture.String())
	row(tw, "rules:", rulesString(p.Rules))
	row(tw, "created:", p.CreatedAt)
	row(tw, "updated:", p.UpdatedAt)
}

// limitFlags are the rate-limit flags of projects and tokens.
type limitFlags struct{ rpm, tpm, concurrent int64 }

func (l *limitFlags) bind(fs *pflag.FlagSet, removable bool) {
	suffix := ""
	if removable {
		suffix = "; 0 removes it"
	}
	fs.Int64Var(&l.rpm, "rpm", 0, "requests per minute"+suffix)
	fs.Int64Var(&l.tpm, "tpm", 0, "tokens (prompt plus completion) per minute"+suffix)
	fs.Int64Var(&l.concurrent, "max-concurrent", 0, "requests in flight at once"+suffix)
}

// body returns the limits object for the flags given (0 as null), or nil
// when none was.
func (l *limitFlags) body(fs *pflag.FlagSet) map[string]any {
	m := map[string]any{}
	for name, v := range map[string]struct {
		member string
		value  int64
	}{"rpm": {"requests_per_minute", l.rpm}, "tpm": {"tokens_per_minute", l.tpm}, "max-concurrent": {"max_concurrent", l.concurrent}} {
		if !fs.Changed(name) {
			continue
		}
		if v.value == 0 {
			m[v.member] = nil
		} else {
			m[v.member] = v.value
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// budget reads --budget: dollars as a JSON number, or "none" for null.
func budget(s string) (any, error) {
	if s == "none" {
		return nil, nil
	}
	var n json.Number
	if err := json.Unmarshal([]byte(s), &n); err != nil || strings.ContainsAny(s, "eE+") {
		return nil, usageErrorf("--budget %q is not an amount of dollars such as 25 or 0.5 (or none)", s)
	}
	return n, nil
}

// openAIKey reads a project's OpenAI key from --openai-key-file (a path,
// or - for standard input), else from $OPENAI_API_KEY: never from the
// command line, where shells and process lists would keep it.
func openAIKey(e *env, file string, stdin io.Reader) (string, error) {
	var raw []byte
	switch file {
	case "":
		if k := e.getenv("OPENAI_API_KEY"); k != "" {
			return k, nil
		}
		return "", usageErrorf("give the OpenAI key with --openai-key-file (a path, or - for standard input) or $OPENAI_API_KEY")
	case "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return "", fmt.Errorf("read OpenAI key from standard input: %w", err)
		}
		raw = b
	default:
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read OpenAI key: %w", err)
		}
		raw = b
	}
	k := strings.TrimSpace(string(raw))
	if k == "" {
		return "", usageErrorf("the OpenAI key given is empty")
	}
	return k, nil
}

func newProjectCmd(e *env) *cobra.Command {
	var conn connection
	// call sends one request and shows the project it answers.
	call := func(cmd *cobra.Command, method, path string, body any) error {
		return show(cmd, e, &conn, method, path, body, projectDetail)
	}
	projectPath := func(id string) string { return "/manage/projects/" + url.PathEscape(id) }

	var (
		name, keyFile, budgetFlag string
		limits                    limitFlags
		cachePOST, background     bool
		batches, inactive         bool
	)
	create := &cobra.Command{
		Use:   "create --name NAME [--openai-key-file FILE]",
		Short: "Create a project holding an OpenAI key",
		Long: `Create a project. Its OpenAI key is read from --openai-key-file (- for standard
input) or $OPENAI_API_KEY, never from the command line, and is shown masked from
then on.`,
		Example: `  llm-proxy project create --name team-a --openai-key-file key.txt
  pass show openai/team-a | llm-proxy project create --name team-a --openai-key-file - --budget 50 --rpm 600
  OPENAI_API_KEY=sk-… llm-proxy project create --name team-b -o json | jq -r .id`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := openAIKey(e, keyFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			body := map[string]any{"name": name, "openai_api_key": key}
			if l := limits.body(cmd.Flags()); l != nil {
				body["limits"] = l
			}
			if cmd.Flags().Changed("budget") {
				if body["monthly_budget_usd"], err = budget(budgetFlag); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("cache-post") {
				body["cache_post"] = cachePOST
			}
			if cmd.Flags().Changed("allow-background") {
				body["allow_background"] = background
			}
			if cmd.Flags().Changed("allow-batches") {
				body["allow_batches"] = batches
			}
			if inactive {
				body["active"] = false
			}
			return call(cmd, http.MethodPost, "/manage/projects", body)
		},
	}
	create.Flags().StringVar(&name, "name", "", "project name (required)")
	_ = create.MarkFlagRequired("name")
	create.Flags().StringVar(&keyFile, "openai-key-file", "", "file holding the OpenAI key; - reads standard input")
	create.Flags().StringVar(&budgetFlag, "budget", "", "monthly budget in US dollars")
	create.Flags().BoolVar(&cachePOST, "cache-post", false, "cache POST responses without per-request opt-in")
	create.Flags().BoolVar(&background, "allow-background", true, "allow background Responses")
	create.Flags().BoolVar(&batches, "allow-batches", true, "allow Batches")
	create.Flags().BoolVar(&inactive, "inactive", false, "create the project deactivated")
	limits.bind(create.Flags(), false)

	var listLimit int
	list := &cobra.Command{
		Use:     "list",
		Short:   "List projects, oldest first",
		Example: "  llm-proxy project list\n  llm-proxy project list -o json | jq -r '.data[].id'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showList(cmd, e, &conn, "/manage/projects", nil, listLimit, projectTable)
		},
	}
	list.Flags().IntVar(&listLimit, "limit", 0, "show at most this many (default: all, read page by page)")

	get := &cobra.Command{
		Use:     "get PROJECT_ID",
		Short:   "Show a project",
		Example: "  llm-proxy project get proj_0123456789abcdefghij\n  llm-proxy project get proj_… -o yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodGet, projectPath(args[0]), nil)
		},
	}

	var (
		newName, upBudget             string
		upLimits                      limitFlags
		upCache, upBackground, upBatc bool
	)
	update := &cobra.Command{
		Use:   "update PROJECT_ID [flags]",
		Short: "Change a project's name, limits, budget or policy",
		Long: `Change the settings given as flags; the others keep their values. A limit of 0
and a budget of "none" remove them. Use rotate-key to change the OpenAI key and
activate/deactivate to switch the project.`,
		Example: `  llm-proxy project update proj_… --rpm 600 --tpm 200000
  llm-proxy project update proj_… --budget none --name team-a-prod`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			body := map[string]any{}
			if fs.Changed("name") {
				body["name"] = newName
			}
			if l := upLimits.body(fs); l != nil {
				body["limits"] = l
			}
			if fs.Changed("budget") {
				b, err := budget(upBudget)
				if err != nil {
					return err
				}
				body["monthly_budget_usd"] = b
			}
			if fs.Changed("cache-post") {
				body["cache_post"] = upCache
			}
			if fs.Changed("allow-background") {
				body["allow_background"] = upBackground
			}
			if fs.Changed("allow-batches") {
				body["allow_batches"] = upBatc
			}
			if len(body) == 0 {
				return usageErrorf("nothing to change: give at least one flag (see --help)")
			}
			return call(cmd, http.MethodPatch, projectPath(args[0]), body)
		},
	}
	update.Flags().StringVar(&newName, "name", "", "new name")
	update.Flags().StringVar(&upBudget, "budget", "", `monthly budget in US dollars; "none" removes it`)
	update.Flags().BoolVar(&upCache, "cache-post", false, "cache POST responses without per-request opt-in")
	update.Flags().BoolVar(&upBackground, "allow-background", true, "allow background Responses")
	update.Flags().BoolVar(&upBatc, "allow-batches", true, "allow Batches")
	upLimits.bind(update.Flags(), true)

	switchActive := func(use, short, example string, active bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " PROJECT_ID", Short: short, Example: example, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return call(cmd, http.MethodPatch, projectPath(args[0]), map[string]any{"active": active})
			},
		}
	}
	deactivate := switchActive("deactivate", "Deactivate a project: its tokens fail until it is activated again",
		"  llm-proxy project deactivate proj_…", false)
	activate := switchActive("activate", "Activate a deactivated project", "  llm-proxy project activate proj_…", true)

	var rotateFile string
	rotate := &cobra.Command{
		Use:   "rotate-key PROJECT_ID [--openai-key-file FILE]",
		Short: "Replace a project's OpenAI key",
		Long: `Seal a new OpenAI key for the project; the proxy uses it from the next request.
The key is read from --openai-key-file (- for standard input) or $OPENAI_API_KEY.`,
		Example: "  llm-proxy project rotate-key proj_… --openai-key-file new-key.txt",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := openAIKey(e, rotateFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			return call(cmd, http.MethodPatch, projectPath(args[0]), map[string]any{"openai_api_key": key})
		},
	}
	rotate.Flags().StringVar(&rotateFile, "openai-key-file", "", "file holding the new OpenAI key; - reads standard input")

	var (
		captureOff      bool
		reqMax, respMax int
		redactPatterns  []string
	)
	capture := &cobra.Command{
		Use:   "capture PROJECT_ID [--off | --redact PATTERN…]",
		Short: "Turn capture of request and response bodies into usage events on or off",
		Long: `Copy the project's request and response bodies into its usage events, so
Lunary, Helicone and OpenTelemetry show the conversation; off by default. The
settings are replaced whole: flags left out take their defaults. Secrets
(sk-… keys, proxy tokens, bearer values) are always redacted; --redact adds a
preset (email, card_number, phone, ipv4, iban) or re:REGEXP, and may be repeated.`,
		Example: `  llm-proxy project capture proj_… --redact email --redact card_number
  llm-proxy project capture proj_… --response-max-bytes 65536 --redact 're:ACME-[0-9]{6}'
  llm-proxy project capture proj_… --off`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if captureOff {
				if changedOwnFlags(cmd) > 1 {
					return usageErrorf("--off takes no other capture flag")
				}
				return call(cmd, http.MethodPatch, projectPath(args[0]), map[string]any{"capture": nil})
			}
			c := map[string]any{"enabled": true, "redact": append([]string{}, redactPatterns...)}
			if reqMax != 0 {
				c["request_max_bytes"] = reqMax
			}
			if respMax != 0 {
				c["response_max_bytes"] = respMax
			}
			return call(cmd, http.MethodPatch, projectPath(args[0]), map[string]any{"capture": c})
		},
	}
	capture.Flags().BoolVar(&captureOff, "off", false, "stop capturing")
	capture.Flags().IntVar(&reqMax, "request-max-bytes", 0, "cap of a captured request body (default 65536)")
	capture.Flags().IntVar(&respMax, "response-max-bytes", 0, "cap of a captured response body (default 262144)")
	capture.Flags().StringArrayVar(&redactPatterns, "redact", nil, "a preset or re:REGEXP to replace with [REDACTED]; repeatable")

	cmd := group("project", "Create, list, change and switch projects",
		"  llm-proxy project list\n  llm-proxy project create --name team-a --openai-key-file key.txt",
		create, list, get, update, deactivate, activate, rotate, capture,
		newRulesCmd("project", true, func(cmd *cobra.Command, id string, body map[string]any) error {
			return call(cmd, http.MethodPatch, projectPath(id), body)
		}))
	conn.bind(cmd)
	return cmd
}
