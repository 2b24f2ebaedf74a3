// Package cli is llm-proxy's command line: it parses arguments, builds the
// components from configuration and runs them until the context ends. It is a
// package rather than main so the end-to-end tests run the very same wiring in
// process.
//
// Commands are cobra commands. The server side (serve, migrate, dispatch,
// envoy-config, healthcheck) reads its settings from the environment; the
// operator commands (project, token, usage, audit, cache) are clients of the
// management REST API and never open the database.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/store"
)

// Exit codes of the binary; see [ExitCode].
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and failed, or the API refused it
	ExitUsage   = 2 // the command line was wrong: unknown command or flag, bad arguments
)

// UsageError is a mistake in the command line: the binary exits with
// [ExitUsage] and prints Hint, which points at the command's --help.
type UsageError struct {
	Err  error
	Hint string // set by [Run]
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode is the process exit code for the error Run returned.
func ExitCode(err error) int {
	var u *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &u):
		return ExitUsage
	default:
		return ExitFailure
	}
}

// env is what every command reads its settings from and writes to.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// Run executes one command line (args without the program name). getenv is
// os.Getenv in production. Errors wrapping [*UsageError] are mistakes in
// the command line; see [ExitCode].
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(singleDashFlags(root, args))
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "required flag(s)") {
		// cobra's own check of MarkFlagRequired, which has no error type.
		err = &UsageError{Err: err}
	}
	var u *UsageError
	if errors.As(err, &u) {
		u.Hint = fmt.Sprintf("Run '%s --help' for usage.", commandPath(root, args))
	}
	return err
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "llm-proxy",
		Short: "OpenAI gateway as an Envoy ext_proc sidecar, and its operators' tools",
		Long: `llm-proxy runs as an Envoy ext_proc sidecar that swaps per-project proxy tokens
for the project's OpenAI key (serve), and manages projects and tokens through the
management API (project, token, usage, audit, cache).

Server settings are environment variables (LLM_PROXY_*); see the README.
Operator commands talk to the management API at --url (LLM_PROXY_URL) with the
management token from LLM_PROXY_MANAGEMENT_TOKEN or --token-file.`,
		Example: `  llm-proxy serve
  llm-proxy project create --name team-a --openai-key-file key.txt
  llm-proxy token create --project proj_… --expires-in 30d -o json | jq -r .token`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a subcommand the root refuses: an unknown command is a
		// usage error, not an invitation to print help and succeed.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(e.stderr)
			_ = cmd.Help()
			return usageErrorf("no command given")
		},
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	root.AddCommand(
		newServeCmd(e), newMigrateCmd(e), newEnvoyConfigCmd(e), newDispatchCmd(e), newHealthcheckCmd(e),
		newImportCmd(e), newChatCmd(e), newDoctorCmd(e),
	)
	root.AddCommand(newManagementCmds(e)...)
	markUsageErrors(root)
	return root
}

// group is a command that only holds subcommands: run alone, or with an
// unknown subcommand, it is a usage error.
func group(use, short, example string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageErrorf("%s needs a subcommand: %s", cmd.CommandPath(), subcommandNames(cmd))
		},
	}
	c.AddCommand(subs...)
	return c
}

func subcommandNames(cmd *cobra.Command) string {
	var names []string
	for _, s := range cmd.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}

func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // what cobra uses for its own message
	}
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageErrorf("%s", msg)
}

// markUsageErrors makes every argument-count error of the tree a
// [*UsageError], whichever validator produced it.
func markUsageErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			err := check(cmd, args)
			var u *UsageError
			if err != nil && !errors.As(err, &u) {
				err = &UsageError{Err: err}
			}
			return err
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

// oneDashCommands are the commands whose flags Go's flag package parsed
// before cobra, which accepts one dash for long flags; scripts rely on it.
var oneDashCommands = map[string]bool{"envoy-config": true}

// singleDashFlags rewrites "-name" to "--name" for the long flags of the
// command args select, if it is one of [oneDashCommands]. Single-letter
// flags ("-o") are left alone, and so is every other command's arguments
// (a chat message may start with a dash).
func singleDashFlags(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil || !oneDashCommands[cmd.Name()] {
		return args
	}
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && lookupFlag(cmd, name) != nil {
			out[i] = "-" + a
		}
	}
	return out
}

func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}

// commandPath names the command args select, for the pointer to its help.
func commandPath(root *cobra.Command, args []string) string {
	if cmd, _, err := root.Find(args); err == nil && cmd != nil {
		return cmd.CommandPath()
	}
	return root.CommandPath()
}

func newServeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the ext_proc gRPC server and the management API",
		Long: `Run the ext_proc gRPC server (LLM_PROXY_GRPC_ADDR), the management API, /metrics,
/healthz and /readyz (LLM_PROXY_HTTP_ADDR) until SIGINT or SIGTERM, then drain.
Every setting is an environment variable; see the README.`,
		Example: `  llm-proxy serve
  LLM_PROXY_DATABASE_URL=postgres://… LLM_PROXY_REDIS_URL=redis://… llm-proxy serve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), e.getenv, e.stdout, e.stderr)
		},
	}
}

func newMigrateCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate up|down|status",
		Short: "Apply, roll back one, or list schema migrations",
		Long: `Apply every pending schema migration (up), roll back the last one (down), or list
them (status), on the database LLM_PROXY_DATABASE_URL names. serve applies pending
migrations itself unless LLM_PROXY_AUTO_MIGRATE=false.`,
		Example: `  llm-proxy migrate status
  LLM_PROXY_DATABASE_URL=postgres://… llm-proxy migrate up`,
		ValidArgs: []string{"up", "down", "status"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return migrate(cmd.Context(), args[0], e.getenv, e.stdout)
		},
	}
}

func newHealthcheckCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if the local serve is ready (for container health checks)",
		Long: `Ask the serve at LLM_PROXY_HTTP_ADDR for /readyz and exit 0 if it is ready, 1 if
not: a health check for images without a shell or curl.`,
		Example: `  llm-proxy healthcheck && echo ready`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return healthcheck(cmd.Context(), e.getenv)
		},
	}
}

func migrate(ctx context.Context, direction string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if cfg.Embedded() {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Migrate(ctx, direction, stdout)
}
