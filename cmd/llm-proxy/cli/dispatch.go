package cli

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/eventsink/dispatch"
	"github.com/llm-proxy/llm-proxy/redisclient"
)

// newDispatchCmd is `llm-proxy dispatch`; its help lists the settings.
func newDispatchCmd(e *env) *cobra.Command {
	var settings strings.Builder
	for _, v := range config.DispatchVars {
		fmt.Fprintf(&settings, "  %-32s default %s\n      %s\n", v.Name, v.Default, v.Help)
	}
	settings.WriteString("\nOpenTelemetry (the otlp target), the standard variables:\n\n")
	for _, v := range config.DispatchOTLPVars {
		fmt.Fprintf(&settings, "  %-32s default %s\n      %s\n", v.Name, v.Default, v.Help)
	}
	return &cobra.Command{
		Use:   "dispatch",
		Short: "Deliver usage events from the Redis Stream to file, webhook, Lunary, Helicone, OTLP",
		Long: `Reads usage events from the Redis Stream through a consumer group and
delivers each to every target, at least once, until SIGINT or SIGTERM.
Settings (environment variables):

` + settings.String(),
		Example: `  LLM_PROXY_REDIS_URL=redis://127.0.0.1:6379 LLM_PROXY_DISPATCH_TARGETS=webhook \
  LLM_PROXY_WEBHOOK_URL=https://example.com/hook LLM_PROXY_WEBHOOK_SECRET=… llm-proxy dispatch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDispatch(cmd.Context(), e.getenv, e.stderr)
		},
	}
}

// runDispatch runs `llm-proxy dispatch` until ctx ends.
func runDispatch(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
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

	backends, closeBackends, err := dispatchBackends(ctx, cfg)
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
	if cfg.MetricsAddr != "" {
		return runDispatchWithMetrics(ctx, cfg.MetricsAddr, d)
	}
	return d.Run(ctx)
}

// dispatchBackends builds the configured backends, in the order named, and
// a func that closes those holding resources.
func dispatchBackends(ctx context.Context, cfg config.Dispatch) ([]dispatch.Backend, func(), error) {
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
			b, err = dispatch.NewHelicone(dispatch.HeliconeOptions{URL: cfg.HeliconeURL, APIKey: cfg.HeliconeKey,
				UpstreamURL: cfg.UpstreamURL, HTTPOptions: httpOpts})
			err = wrapVar("LLM_PROXY_HELICONE_URL", err)
		case "otlp":
			var o *dispatch.OTLP
			o, err = dispatch.NewOTLP(ctx, dispatch.OTLPOptions{
				Protocol:           cfg.OTLP.Protocol,
				Endpoint:           cfg.OTLP.Endpoint,
				Headers:            cfg.OTLP.Headers,
				Timeout:            cfg.Timeout,
				ServiceName:        cfg.OTLP.ServiceName,
				ServiceVersion:     buildVersion(),
				ResourceAttributes: cfg.OTLP.ResourceAttributes,
				UpstreamURL:        cfg.UpstreamURL,
			})
			if err == nil {
				closers = append(closers, o)
				b = o
			}
			err = wrapVar("OTEL_EXPORTER_OTLP_ENDPOINT", err)
		}
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		backends = append(backends, b)
	}
	return backends, closeAll, nil
}

// buildVersion is the main module's version as the build recorded it, or ""
// for a development build.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return ""
	}
	return bi.Main.Version
}

func wrapVar(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}
