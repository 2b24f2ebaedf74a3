// Command llm-proxy is the OpenAI gateway sidecar: `llm-proxy serve` runs the
// Envoy ext_proc server and the management API; see `llm-proxy --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/llm-proxy/llm-proxy/cmd/llm-proxy/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "llm-proxy:", err)
		if u := (*cli.UsageError)(nil); errors.As(err, &u) && u.Hint != "" {
			fmt.Fprintln(os.Stderr, u.Hint)
		}
		stop()
		os.Exit(cli.ExitCode(err))
	}
}
