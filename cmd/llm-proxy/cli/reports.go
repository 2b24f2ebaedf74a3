package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/eventsink"
)

// usageOut is a project's usage report (UsageReport), for tables.
type usageOut struct {
	ProjectID string `json:"project_id"`
	From      string `json:"from"`
	To        string `json:"to"`
	Data      []struct {
		Date             string      `json:"date"`
		Model            string      `json:"model"`
		Requests         int64       `json:"requests"`
		Errors           int64       `json:"errors"`
		PromptTokens     int64       `json:"prompt_tokens"`
		CompletionTokens int64       `json:"completion_tokens"`
		TotalTokens      int64       `json:"total_tokens"`
		CostUSD          json.Number `json:"cost_usd"`
	} `json:"data"`
	Total struct {
		Requests         int64       `json:"requests"`
		Errors           int64       `json:"errors"`
		PromptTokens     int64       `json:"prompt_tokens"`
		CompletionTokens int64       `json:"completion_tokens"`
		TotalTokens      int64       `json:"total_tokens"`
		CostUSD          json.Number `json:"cost_usd"`
	} `json:"total"`
}

func usageTable(tw *tabwriter.Writer, reports []usageOut) {
	row(tw, "PROJECT", "DATE", "MODEL", "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "TOTAL TOKENS", "COST")
	for _, r := range reports {
		for _, d := range r.Data {
			row(tw, r.ProjectID, d.Date, d.Model, fmt.Sprint(d.Requests), fmt.Sprint(d.Errors), fmt.Sprint(d.PromptTokens),
				fmt.Sprint(d.CompletionTokens), fmt.Sprint(d.TotalTokens), "$"+d.CostUSD.String())
		}
		t := r.Total
		row(tw, r.ProjectID, r.From+".."+r.To, "(total)", fmt.Sprint(t.Requests), fmt.Sprint(t.Errors), fmt.Sprint(t.PromptTokens),
			fmt.Sprint(t.CompletionTokens), fmt.Sprint(t.TotalTokens), "$"+t.CostUSD.String())
	}
}

func newUsageCmd(e *env) *cobra.Command {
	var (
		conn              connection
		project, from, to string
	)
	cmd := &cobra.Command{
		Use:   "usage [--project PROJECT_ID] [--from YYYY-MM-DD] [--to YYYY-MM-DD]",
		Short: "Usage and cost by day and model",
		Long: `Show usage and cost per UTC day and model, of one project or of every project.
Without dates: the current month up to today. With -o json: the API's usage report
(with --project) or a JSON array of one report per project.`,
		Example: `  llm-proxy usage
  llm-proxy usage --project proj_… --from 2025-03-01 --to 2025-03-31
  llm-proxy usage -o json | jq '[.[].total.cost_usd] | add'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := conn.client(e)
			if err != nil {
				return err
			}
			q := url.Values{}
			if from != "" {
				q.Set("from", from)
			}
			if to != "" {
				q.Set("to", to)
			}
			report := func(id string) ([]byte, error) {
				return c.do(cmd.Context(), http.MethodGet, "/manage/projects/"+url.PathEscape(id)+"/usage", q, nil)
			}
			if project != "" {
				raw, err := report(project)
				if err != nil {
					return err
				}
				return render(e.stdout, conn.output, raw, func(tw *tabwriter.Writer, u usageOut) { usageTable(tw, []usageOut{u}) })
			}
			rawProjects, err := c.list(cmd.Context(), "/manage/projects", nil, 0)
			if err != nil {
				return err
			}
			var projects listOut[projectOut]
			if err := json.Unmarshal(rawProjects, &projects); err != nil {
				return err
			}
			reports := make([]json.RawMessage, 0, len(projects.Data))
			for _, p := range projects.Data {
				raw, err := report(p.ID)
				if err != nil {
					return fmt.Errorf("usage of project %s: %w", p.ID, err)
				}
				reports = append(reports, raw)
			}
			all, err := json.Marshal(reports)
			if err != nil {
				return err
			}
			return render(e.stdout, conn.output, all, usageTable)
		},
	}
	cmd.Flags().StringVar(&project, "project", "", "one project (default: every project)")
	cmd.Flags().StringVar(&from, "from", "", "first day, YYYY-MM-DD (UTC)")
	cmd.Flags().StringVar(&to, "to", "", "last day, YYYY-MM-DD (UTC), included")
	conn.bind(cmd)
	return cmd
}

// auditTarget shows an audit event's target as kind:id.
func auditTarget(a eventsink.AuditJSON) string {
	if a.TargetType == "" && a.TargetID == "" {
		return "-"
	}
	return strings.Trim(a.TargetType+":"+a.TargetID, ":")
}

func auditTable(tw *tabwriter.Writer, l listOut[eventsink.AuditJSON]) {
	row(tw, "TIME", "ACTION", "OUTCOME", "PROJECT", "TARGET", "ACTOR", "CLIENT", "DETAIL")
	for _, a := range l.Data {
		row(tw, a.Time, a.Action, a.Outcome, orDash(a.ProjectID), auditTarget(a), a.Actor, a.ClientAddress, a.Detail)
	}
}

func auditDetail(tw *tabwriter.Writer, a eventsink.AuditJSON) {
	row(tw, "id:", a.ID)
	row(tw, "time:", a.Time)
	row(tw, "action:", a.Action)
	row(tw, "outcome:", a.Outcome)
	row(tw, "actor:", a.Actor)
	row(tw, "project:", orDash(a.ProjectID))
	row(tw, "target:", auditTarget(a))
	row(tw, "request id:", a.RequestID)
	row(tw, "client address:", a.ClientAddress)
	row(tw, "detail:", a.Detail)
}

// verifyDetail prints what GET /manage/audit/verify found.
func verifyDetail(tw *tabwriter.Writer, v adminapi.AuditVerification) {
	state := "intact"
	if !v.Intact {
		state = "BROKEN"
	}
	row(tw, "chain:", state)
	row(tw, "checked:", strconv.FormatInt(v.Checked, 10))
	row(tw, "unchained:", strconv.FormatInt(v.Unchained, 10))
	row(tw, "head:", cmp.Or(v.Head, "-"))
	if b := v.FirstBroken; b != nil {
		row(tw, "first broken link:", fmt.Sprintf("position %d, event %s: %s", b.Seq, cmp.Or(b.ID, "-"), b.Reason))
	}
}

func newAuditCmd(e *env) *cobra.Command {
	var (
		conn                      connection
		project, action, from, to string
		actor, token, outcome     string
		client                    string
		limit                     int
	)
	list := &cobra.Command{
		Use:   "list [filters]",
		Short: "List audit events, newest first",
		Example: `  llm-proxy audit list --project proj_… --limit 20
  llm-proxy audit list --action auth.unknown_token --from 2025-03-01T00:00:00Z -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"project_id": project, "action": action, "from": from, "to": to,
				"actor": actor, "token_id": token, "outcome": outcome, "client_address": client} {
				if v != "" {
					q.Set(k, v)
				}
			}
			return showList(cmd, e, &conn, "/manage/audit", q, limit, auditTable)
		},
	}
	list.Flags().StringVar(&project, "project", "", "only events of this project")
	list.Flags().StringVar(&action, "action", "", "only events with this action, e.g. token.revoke")
	list.Flags().StringVar(&from, "from", "", "only events at or after this time (RFC 3339)")
	list.Flags().StringVar(&to, "to", "", "only events before this time (RFC 3339)")
	list.Flags().StringVar(&actor, "actor", "", "only events by this actor, e.g. admin-ui")
	list.Flags().StringVar(&token, "token", "", "only events about this token (its id)")
	list.Flags().StringVar(&outcome, "outcome", "", "only events with this outcome: success or denied")
	list.Flags().StringVar(&client, "client", "", "only events from this client IP address")
	list.Flags().IntVar(&limit, "limit", 100, "show at most this many; 0 shows all")

	get := &cobra.Command{
		Use:     "get EVENT_ID",
		Short:   "Show one audit event",
		Example: "  llm-proxy audit get aud_…",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd, e, &conn, http.MethodGet, "/manage/audit/"+url.PathEscape(args[0]), nil, auditDetail)
		},
	}
	verify := &cobra.Command{
		Use:     "verify",
		Short:   "Check the audit log's hash chain; exits 1 naming the first broken link",
		Example: "  llm-proxy audit verify",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw, err := conn.fetch(cmd, e, http.MethodGet, "/manage/audit/verify", nil)
			if err != nil {
				return err
			}
			if err := render(e.stdout, conn.output, raw, verifyDetail); err != nil {
				return err
			}
			var v adminapi.AuditVerification
			if err := json.Unmarshal(raw, &v); err != nil {
				return fmt.Errorf("read the API's answer: %w", err)
			}
			if b := v.FirstBroken; b != nil {
				return fmt.Errorf("the audit chain is broken at position %d (event %s): %s", b.Seq, cmp.Or(b.ID, "-"), b.Reason)
			}
			return nil
		},
	}
	cmd := group("audit", "Read the audit log", "  llm-proxy audit list --limit 20", list, get, verify)
	conn.bind(cmd)
	return cmd
}

func newCacheCmd(e *env) *cobra.Command {
	var (
		conn         connection
		project      string
		all          bool
		method, path string
		prefix       string
	)
	purge := &cobra.Command{
		Use:   "purge (--project PROJECT_ID [--method M --path P] | --prefix PATH [--project PROJECT_ID] | --all)",
		Short: "Remove cached responses",
		Long: `Remove a project's cached responses, one request's entry (--method and --path, for
a request without a body), the entries whose request path starts with --prefix (of --project,
or of every project without it; a plain string prefix, so /v1/models also matches /v1/models-x),
or every entry (--all), and print how many went.`,
		Example: `  llm-proxy cache purge --project proj_…
  llm-proxy cache purge --project proj_… --method GET --path /v1/models
  llm-proxy cache purge --prefix /v1/models/ --project proj_…
  llm-proxy cache purge --prefix /v1/files
  llm-proxy cache purge --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var body map[string]any
			switch {
			case all && (project != "" || prefix != ""):
				return usageErrorf("give --project or --prefix, or --all, not both")
			case all:
				body = map[string]any{"all": true}
			case prefix != "" && (method != "" || path != ""):
				return usageErrorf("give --prefix or --method and --path, not both")
			case prefix != "":
				body = map[string]any{"prefix": prefix}
				if project != "" {
					body["project_id"] = project
				}
			case project == "":
				return usageErrorf("give --project PROJECT_ID or --all (or --prefix PATH)")
			case (method == "") != (path == ""):
				return usageErrorf("--method and --path go together")
			default:
				body = map[string]any{"project_id": project}
				if path != "" {
					body["request"] = map[string]any{"method": method, "path": path}
				}
			}
			return show(cmd, e, &conn, http.MethodPost, "/manage/cache/purge", body, func(tw *tabwriter.Writer, r struct {
				Purged int `json:"purged"`
			}) {
				row(tw, fmt.Sprintf("purged %d cached responses", r.Purged))
			})
		},
	}
	purge.Flags().StringVar(&project, "project", "", "the project whose entries go")
	purge.Flags().BoolVar(&all, "all", false, "purge every entry of every project")
	purge.Flags().StringVar(&method, "method", "", "with --path: one request's entry, e.g. GET")
	purge.Flags().StringVar(&path, "path", "", "with --method: the request's path and query, e.g. /v1/models")
	purge.Flags().StringVar(&prefix, "prefix", "", "the entries whose request path (without query) starts with this, e.g. /v1/models/")
	cmd := group("cache", "Manage the response cache", "  llm-proxy cache purge --project proj_…", purge)
	conn.bind(cmd)
	return cmd
}
