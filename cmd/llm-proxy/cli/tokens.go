package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// tokenOut is a proxy token as the API shows it, for tables.
type tokenOut struct {
	ID           string          `json:"id"`
	ProjectID    string          `json:"project_id"`
	Name         string          `json:"name"`
	Prefix       string          `json:"prefix"`
	Active       bool            `json:"active"`
	Legacy       bool            `json:"legacy"`
	ExpiresAt    *string         `json:"expires_at"`
	MaxRequests  *int64          `json:"max_requests"`
	RequestCount int64           `json:"request_count"`
	CacheHits    int64           `json:"cache_hit_count"`
	LastUsedAt   *string         `json:"last_used_at"`
	RevokedAt    *string         `json:"revoked_at"`
	Limits       limitsOut       `json:"limits"`
	Rules        json.RawMessage `json:"rules"`
	CreatedAt    string          `json:"created_at"`
	Token        string          `json:"token"`
}

// state is how a token stands, in a word, and whether it is legacy
// (imported from the predecessor proxy).
func (t tokenOut) state() string {
	state := "active"
	switch {
	case t.RevokedAt != nil:
		state = "revoked"
	case !t.Active:
		state = "inactive"
	}
	if t.Legacy {
		state += " (legacy)"
	}
	return state
}

func (t tokenOut) requests() string {
	return fmt.Sprintf("%d/%s", t.RequestCount, num(t.MaxRequests))
}

func tokenTable(tw *tabwriter.Writer, l listOut[tokenOut]) {
	row(tw, "ID", "PROJECT", "NAME", "PREFIX", "STATE", "EXPIRES", "REQUESTS/MAX", "LAST USED")
	for _, t := range l.Data {
		row(tw, t.ID, t.ProjectID, t.Name, t.Prefix+"…", t.state(), orDash(t.ExpiresAt), t.requests(), orDash(t.LastUsedAt))
	}
}

func tokenDetail(tw *tabwriter.Writer, t tokenOut) {
	row(tw, "id:", t.ID)
	row(tw, "project:", t.ProjectID)
	row(tw, "name:", t.Name)
	row(tw, "prefix:", t.Prefix+"…")
	row(tw, "state:", t.state())
	row(tw, "legacy:", yesNo(t.Legacy))
	row(tw, "expires:", orDash(t.ExpiresAt))
	row(tw, "requests/max:", t.requests())
	row(tw, "cache hits:", fmt.Sprint(t.CacheHits))
	row(tw, "last used:", orDash(t.LastUsedAt))
	row(tw, "revoked:", orDash(t.RevokedAt))
	row(tw, "limits:", t.Limits.String())
	row(tw, "rules:", rulesString(t.Rules))
	row(tw, "created:", t.CreatedAt)
	if t.Token != "" {
		row(tw, "token:", t.Token)
	}
}

// tokenSecretWarning goes to stderr with a new token, so standard output
// holds only what a script reads (-o json | jq -r .token).
const tokenSecretWarning = "The token is shown only this once: store it now. Only its HMAC is kept."

func newTokenCmd(e *env) *cobra.Command {
	var conn connection
	call := func(cmd *cobra.Command, method, path string, body any) error {
		return show(cmd, e, &conn, method, path, body, tokenDetail)
	}
	tokenPath := func(id string) string { return "/manage/tokens/" + url.PathEscape(id) }

	var (
		project, name, expiresIn, expiresAt string
		maxRequests                         int64
		limits                              limitFlags
	)
	create := &cobra.Command{
		Use:   "create --project PROJECT_ID [flags]",
		Short: "Issue a proxy token (shown once)",
		Long: `Issue a proxy token for a project. The secret is printed once, in the output
(the "token" member with -o json); a warning that it cannot be shown again goes to
standard error.`,
		Example: `  llm-proxy token create --project proj_… --name ci --expires-in 30d --max-requests 10000
  TOKEN=$(llm-proxy token create --project proj_… -o json | jq -r .token)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			body := map[string]any{"project_id": project}
			if fs.Changed("name") {
				body["name"] = name
			}
			if fs.Changed("expires-in") && fs.Changed("expires-at") {
				return usageErrorf("give --expires-in or --expires-at, not both")
			}
			if fs.Changed("expires-in") {
				body["expires_in"] = expiresIn
			}
			if fs.Changed("expires-at") {
				body["expires_at"] = expiresAt
			}
			if fs.Changed("max-requests") {
				body["max_requests"] = maxRequests
			}
			if l := limits.body(fs); l != nil {
				body["limits"] = l
			}
			raw, err := conn.fetch(cmd, e, http.MethodPost, "/manage/tokens", body)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stderr, tokenSecretWarning)
			return render(e.stdout, conn.output, raw, tokenDetail)
		},
	}
	create.Flags().StringVar(&project, "project", "", "project id (required)")
	_ = create.MarkFlagRequired("project")
	create.Flags().StringVar(&name, "name", "", "label")
	create.Flags().StringVar(&expiresIn, "expires-in", "", `lifetime: a Go duration ("720h") or days ("30d")`)
	create.Flags().StringVar(&expiresAt, "expires-at", "", "expiry, RFC 3339")
	create.Flags().Int64Var(&maxRequests, "max-requests", 0, "lifetime request cap")
	limits.bind(create.Flags(), false)

	var (
		listProject string
		listLimit   int
	)
	list := &cobra.Command{
		Use:     "list [--project PROJECT_ID]",
		Short:   "List tokens, oldest first",
		Example: "  llm-proxy token list --project proj_…\n  llm-proxy token list -o json | jq '.data[] | select(.legacy)'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if listProject != "" {
				q.Set("project_id", listProject)
			}
			return showList(cmd, e, &conn, "/manage/tokens", q, listLimit, tokenTable)
		},
	}
	list.Flags().StringVar(&listProject, "project", "", "only this project's tokens")
	list.Flags().IntVar(&listLimit, "limit", 0, "show at most this many (default: all, read page by page)")

	get := &cobra.Command{
		Use:     "get TOKEN_ID",
		Short:   "Show a token (never its secret)",
		Example: "  llm-proxy token get tok_…",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodGet, tokenPath(args[0]), nil)
		},
	}
	revoke := &cobra.Command{
		Use:     "revoke TOKEN_ID",
		Short:   "Revoke a token, for good",
		Example: "  llm-proxy token revoke tok_…",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, http.MethodDelete, tokenPath(args[0]), nil)
		},
	}

	var (
		upName, upIn, upAt string
		upActive, noExpiry bool
		upMax              int64
		upLimits           limitFlags
	)
	update := &cobra.Command{
		Use:   "update TOKEN_ID [flags]",
		Short: "Change a token's name, expiry, cap, limits or activity",
		Long: `Change the settings given as flags; the others keep their values. --max-requests 0
and a limit of 0 remove them; --no-expiry removes the expiry. --active=false pauses
a token (revoke ends it for good).`,
		Example: `  llm-proxy token update tok_… --expires-in 90d --max-requests 50000
  llm-proxy token update tok_… --active=false`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			body := map[string]any{}
			if fs.Changed("name") {
				body["name"] = upName
			}
			if fs.Changed("active") {
				body["active"] = upActive
			}
			switch n := countChanged(cmd, "expires-in", "expires-at", "no-expiry"); {
			case n > 1:
				return usageErrorf("give one of --expires-in, --expires-at and --no-expiry")
			case fs.Changed("expires-in"):
				body["expires_in"] = upIn
			case fs.Changed("expires-at"):
				body["expires_at"] = upAt
			case noExpiry:
				body["expires_at"] = nil
			}
			if fs.Changed("max-requests") {
				if upMax == 0 {
					body["max_requests"] = nil
				} else {
					body["max_requests"] = upMax
				}
			}
			if l := upLimits.body(fs); l != nil {
				body["limits"] = l
			}
			if len(body) == 0 {
				return usageErrorf("nothing to change: give at least one flag (see --help)")
			}
			return call(cmd, http.MethodPatch, tokenPath(args[0]), body)
		},
	}
	update.Flags().StringVar(&upName, "name", "", "new label")
	update.Flags().BoolVar(&upActive, "active", true, "activate (true) or pause (false)")
	update.Flags().StringVar(&upIn, "expires-in", "", "new lifetime from now")
	update.Flags().StringVar(&upAt, "expires-at", "", "new expiry, RFC 3339")
	update.Flags().BoolVar(&noExpiry, "no-expiry", false, "remove the expiry")
	update.Flags().Int64Var(&upMax, "max-requests", 0, "new lifetime cap; 0 removes it")
	upLimits.bind(update.Flags(), true)

	cmd := group("token", "Issue, list, change and revoke proxy tokens",
		"  llm-proxy token create --project proj_… --expires-in 30d\n  llm-proxy token list --project proj_…",
		create, list, get, revoke, update,
		newRulesCmd("token", false, func(cmd *cobra.Command, id string, body map[string]any) error {
			return call(cmd, http.MethodPatch, tokenPath(id), body)
		}))
	conn.bind(cmd)
	return cmd
}

func countChanged(cmd *cobra.Command, names ...string) int {
	n := 0
	for _, name := range names {
		if cmd.Flags().Changed(name) {
			n++
		}
	}
	return n
}
