package cli

import (
	"encoding/json"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/llm-proxy/llm-proxy/policy"
)

// rulesString shows rules in a detail view: "-" when none, else the members
// set, in the API's JSON.
func rulesString(r json.RawMessage) string {
	if s := strings.TrimSpace(string(r)); s != "" && s != "{}" && s != "null" {
		return s
	}
	return "-"
}

// newRulesCmd is `project rules` and `token rules`: it replaces the rules
// of one project or token whole (see policy.Rules), from flags. call sends
// the PATCH and shows the answer; forProject adds the CORS flags.
func newRulesCmd(kind string, forProject bool, call func(cmd *cobra.Command, id string, body map[string]any) error) *cobra.Command {
	var (
		clear                   bool
		models, params, origins []string
		methods, headers        []string
		maxOut, maxBody         int64
		overMax                 string
		noTools                 bool
		maxAge                  int
	)
	narrow := ""
	if !forProject {
		narrow = " A token's rules narrow its project's: a request must pass both."
	}
	cmd := &cobra.Command{
		Use:   "rules " + strings.ToUpper(kind) + "_ID [flags | --clear]",
		Short: "Set what the " + kind + "'s requests may do: models, output ceiling, parameter values, tools, body size",
		Long: `Replace the ` + kind + `'s rules whole with the flags given (flags left out allow
everything); --clear removes them.` + narrow + `
--model takes exact names or patterns with * (gpt-4o*); --param NAME=V1,V2 lists
the values a body parameter may take, each JSON (1, true, "x") or else a string.`,
		Example: `  llm-proxy ` + kind + ` rules ` + kind[:4] + `_… --model 'gpt-4o-mini*' --model o3-mini --max-output-tokens 2000 --over-max clamp
  llm-proxy ` + kind + ` rules ` + kind[:4] + `_… --param n=1 --param service_tier=auto,default --no-tools
  llm-proxy ` + kind + ` rules ` + kind[:4] + `_… --clear`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if clear {
				if changedOwnFlags(cmd) > 1 {
					return usageErrorf("--clear takes no other rules flag")
				}
				return call(cmd, args[0], map[string]any{"rules": nil})
			}
			r := policy.Rules{Models: models, MaxOutputTokens: maxOut, OverMax: overMax, NoTools: noTools, MaxBodyBytes: maxBody}
			for _, p := range params {
				name, values, ok := strings.Cut(p, "=")
				if !ok || name == "" || values == "" {
					return usageErrorf("--param %q: want NAME=VALUE[,VALUE…]", p)
				}
				if r.Params == nil {
					r.Params = map[string][]json.RawMessage{}
				}
				r.Params[name] = append(r.Params[name], paramValues(values)...)
			}
			if len(origins) > 0 {
				r.CORS = &policy.CORS{Origins: origins, Methods: methods, Headers: headers, MaxAgeSeconds: maxAge}
			} else if len(methods)+len(headers) > 0 || maxAge != 0 {
				return usageErrorf("--cors-method, --cors-header and --cors-max-age need --cors-origin")
			}
			return call(cmd, args[0], map[string]any{"rules": r})
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&clear, "clear", false, "remove every rule")
	fs.StringArrayVar(&models, "model", nil, "a model requests may name, exact or with *; repeatable")
	fs.Int64Var(&maxOut, "max-output-tokens", 0, "ceiling on max_tokens / max_completion_tokens / max_output_tokens")
	fs.StringVar(&overMax, "over-max", "", "refuse (default) or clamp a request above the ceiling")
	fs.StringArrayVar(&params, "param", nil, "NAME=V1,V2: the values a body parameter may take; repeatable")
	fs.BoolVar(&noTools, "no-tools", false, "refuse requests that offer the model tools")
	fs.Int64Var(&maxBody, "max-body-bytes", 0, "cap on the request body")
	if forProject {
		fs.StringArrayVar(&origins, "cors-origin", nil, "a browser origin that may call the API (https://app.example.com, https://*.example.com); repeatable")
		fs.StringArrayVar(&methods, "cors-method", nil, "a method pages may use (default GET, POST, DELETE); repeatable")
		fs.StringArrayVar(&headers, "cors-header", nil, "a request header pages may send (default: the OpenAI SDKs'); repeatable")
		fs.IntVar(&maxAge, "cors-max-age", 0, "seconds a browser may cache a preflight (default 600)")
	}
	return cmd
}

// changedOwnFlags counts the flags of cmd itself (not the connection or
// output flags every command has) given on the command line.
func changedOwnFlags(cmd *cobra.Command) int {
	n := 0
	cmd.LocalNonPersistentFlags().Visit(func(*pflag.Flag) { n++ })
	return n
}

// paramValues reads "1,true,auto" or a JSON array as JSON values: each item
// that is valid JSON as itself, else a string.
func paramValues(s string) []json.RawMessage {
	var arr []json.RawMessage
	if strings.HasPrefix(strings.TrimSpace(s), "[") && json.Unmarshal([]byte(s), &arr) == nil {
		return arr
	}
	var out []json.RawMessage
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if json.Valid([]byte(v)) {
			out = append(out, json.RawMessage(v))
			continue
		}
		b, _ := json.Marshal(v)
		out = append(out, b)
	}
	return out
}
