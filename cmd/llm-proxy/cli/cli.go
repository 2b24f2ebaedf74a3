// Package cli is llm-proxy's command line: it parses arguments, builds the
// components from configuration and runs them until the context ends. It is a
// package rather than main so the end-to-end tests run the very same wiring in
// process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/store"
)

const usageText = `usage: llm-proxy <command> [arguments]

commands:
  serve                      run the ext_proc gRPC server and the management API
  migrate up|down|status     apply, roll back one, or list schema migrations
  envoy-config [flags]       print envoy/envoy.yaml with addresses changed (see -h)
  dispatch                   deliver usage events from the Redis Stream to file, webhook, Lunary, Helicone (see -h)
  healthcheck                exit 0 if the local serve is ready (for container health checks)
  help                       show this text

Settings are environment variables (LLM_PROXY_*); see the README.
`

// Run executes one command. getenv is os.Getenv in production.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, getenv, stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], getenv, stdout)
	case "envoy-config":
		return envoyConfig(args[1:], stdout, stderr)
	case "dispatch":
		return runDispatch(ctx, args[1:], getenv, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	default:
		fmt.Fprint(stderr, usageText)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) != 1 || !strings.Contains(" up down status ", " "+args[0]+" ") {
		return errors.New("usage: llm-proxy migrate up|down|status")
	}
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
	return st.Migrate(ctx, args[0], stdout)
}

// flagSet returns a FlagSet that reports to stderr and does not exit.
func flagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}
