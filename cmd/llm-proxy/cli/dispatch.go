package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/eventsink/dispatch"
	"github.com/llm-proxy/llm-proxy/redisclient"
)

func printDispatchUsage(w io.Writer) {
	fmt.Fprint(w, dispatchUsage)
	for _, v := range config.DispatchVars {
		fmt.Fprintf(w, "  %-32s default %s\n      %s\n", v.Name, v.Default, v.Help)
	}
}

const dispatchUsage = `usage: llm-proxy dispatch

Reads usage events from the Redis Stream through a consumer group and
delivers each to every target, at least once, until SIGINT or SIGTERM.
Settings (environment variables):

`

// runDispatch runs `llm-proxy dispatch` until ctx ends.
func runDispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			printDispatchUsage(stdout)
			return nil
		}
		printDispatchUsage(stderr)
		return fmt.Errorf("dispatch takes no arguments, got %q", args[0])
	}
	cfg, err := config.LoadDispatch(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := zerolog.New(stderr).Level(cfg.LogLevel).With().Timestamp().Str("component", "dispatch").Logger()

	rdb, err := redisclient.New(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("LLM_PROXY_REDIS_URL: %w", err)
	}
	defer rdb.Close()

	backends, closeBackends, err := dispatchBackends(cfg)
	if err != nil {
		return err
	}
	defer closeBackends()

	d, err := dispatch.New(rdb, dispatch.Options{
		Stream:           cfg.Stream,
		Group:            cfg.Group,
		DeadLetterStream: cfg.DeadStream,
		Backends:         backends,
		BatchSize:        cfg.Batch,
		MaxAttempts:      cfg.MaxAttempts,
		ClaimIdle:        cfg.ClaimIdle,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// dispatchBackends builds the configured backends, in the order named, and
// a func that closes those holding resources.
func dispatchBackends(cfg config.Dispatch) ([]dispatch.Backend, func(), error) {
	httpOpts := dispatch.HTTPOptions{Timeout: cfg.Timeout, Concurrency: cfg.Concurrency}
	var backends []dispatch.Backend
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	for _, t := range cfg.Targets {
		var (
			b   dispatch.Backend
			err error
		)
		switch t {
		case "file":
			var f *dispatch.File
			if f, err = dispatch.OpenFile(cfg.File); err == nil {
				closers = append(closers, f)
				b = f
			}
			err = wrapVar("LLM_PROXY_DISPATCH_FILE", err)
		case "webhook":
			b, err = dispatch.NewWebhook(dispatch.WebhookOptions{URL: cfg.WebhookURL, Secret: cfg.WebhookKey, HTTPOptions: httpOpts})
			err = wrapVar("LLM_PROXY_WEBHOOK_URL", err)
		case "lunary":
			b, err = dispatch.NewLunary(dispatch.LunaryOptions{URL: cfg.LunaryURL, APIKey: cfg.LunaryKey, HTTPOptions: httpOpts})
			err = wrapVar("LLM_PROXY_LUNARY_URL", err)
		case "helicone":
			b, err = dispatch.NewHelicone(dispatch.HeliconeOptions{URL: cfg.HeliconeURL, APIKey: cfg.HeliconeKey, HTTPOptions: httpOpts})
			err = wrapVar("LLM_PROXY_HELICONE_URL", err)
		}
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		backends = append(backends, b)
	}
	return backends, closeAll, nil
}

func wrapVar(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}
