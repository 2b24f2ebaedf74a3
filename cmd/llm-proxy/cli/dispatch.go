package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/eventsink/dispatch"
)

// dispatchVars documents the settings of `llm-proxy dispatch`, with their
// defaults. LLM_PROXY_LOG_LEVEL is shared with serve.
var dispatchVars = []struct{ Name, Default, Help string }{
	{"LLM_PROXY_REDIS_URL", "(required)", "redis:// or rediss:// URL of the Redis holding the event stream"},
	{"LLM_PROXY_EVENTS_STREAM", "llmproxy:events", "the Redis Stream the event sink writes and dispatch reads"},
	{"LLM_PROXY_DISPATCH_GROUP", dispatch.DefaultGroup, "consumer group shared by every dispatch process"},
	{"LLM_PROXY_DISPATCH_DEAD_STREAM", "<stream>" + dispatch.DeadLetterSuffix, "stream receiving entries that could not be delivered"},
	{"LLM_PROXY_DISPATCH_TARGETS", "(required)", "comma-separated backends: file, webhook, lunary, helicone"},
	{"LLM_PROXY_DISPATCH_FILE", "(required with file)", "JSONL file the file backend appends to"},
	{"LLM_PROXY_WEBHOOK_URL", "(required with webhook)", "http(s) URL each event is POSTed to"},
	{"LLM_PROXY_WEBHOOK_SECRET", "(required with webhook)", "at least 16 bytes; HMAC-SHA-256 key of the X-LLM-Proxy-Signature header"},
	{"LLM_PROXY_LUNARY_URL", dispatch.DefaultLunaryURL, "Lunary API base URL"},
	{"LLM_PROXY_LUNARY_API_KEY", "(required with lunary)", "Lunary project key"},
	{"LLM_PROXY_HELICONE_URL", dispatch.DefaultHeliconeURL, "Helicone logging API base URL"},
	{"LLM_PROXY_HELICONE_API_KEY", "(required with helicone)", "Helicone API key"},
	{"LLM_PROXY_DISPATCH_MAX_ATTEMPTS", strconv.Itoa(dispatch.DefaultMaxAttempts), "deliveries of an entry before it is dead-lettered"},
	{"LLM_PROXY_DISPATCH_CLAIM_IDLE", dispatch.DefaultClaimIdle.String(), "how long an entry sits unacknowledged on a consumer before another claims it"},
	{"LLM_PROXY_DISPATCH_BATCH", strconv.Itoa(dispatch.DefaultBatchSize), "entries read and delivered at once"},
	{"LLM_PROXY_DISPATCH_TIMEOUT", dispatch.DefaultTimeout.String(), "bound on one HTTP request to a backend"},
	{"LLM_PROXY_DISPATCH_CONCURRENCY", strconv.Itoa(dispatch.DefaultConcurrency), "requests in flight at once to the webhook and to Helicone"},
}

// dispatchTargets are the backends LLM_PROXY_DISPATCH_TARGETS may name.
var dispatchTargets = []string{"file", "webhook", "lunary", "helicone"}

// dispatchConfig is the configuration of `llm-proxy dispatch`.
type dispatchConfig struct {
	RedisURL    string
	Stream      string
	Group       string
	DeadStream  string
	Targets     []string
	File        string
	WebhookURL  string
	WebhookKey  []byte
	LunaryURL   string
	LunaryKey   string
	HeliconeURL string
	HeliconeKey string
	MaxAttempts int
	ClaimIdle   time.Duration
	Batch       int
	Timeout     time.Duration
	Concurrency int
	LogLevel    zerolog.Level
}

func (c dispatchConfig) has(target string) bool {
	for _, t := range c.Targets {
		if t == target {
			return true
		}
	}
	return false
}

// loadDispatchConfig reads the settings through getenv and reports every
// problem at once, each naming its variable.
func loadDispatchConfig(getenv func(string) string) (dispatchConfig, error) {
	var errs []error
	fail := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s %s", name, fmt.Sprintf(format, args...)))
	}
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	integer := func(name string, def, lo, hi int) int {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			fail(name, "must be an integer from %d to %d, got %q", lo, hi, v)
		}
		return n
	}
	duration := func(name string, def time.Duration) time.Duration {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fail(name, "must be a positive duration such as 30s, got %q", v)
		}
		return d
	}
	httpURL := func(name, def string, required bool) string {
		v := str(name, def)
		if v == "" {
			if required {
				fail(name, "is required")
			}
			return ""
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fail(name, "must be an http:// or https:// URL")
		}
		return v
	}

	c := dispatchConfig{
		RedisURL:    str("LLM_PROXY_REDIS_URL", ""),
		Stream:      str("LLM_PROXY_EVENTS_STREAM", "llmproxy:events"),
		Group:       str("LLM_PROXY_DISPATCH_GROUP", dispatch.DefaultGroup),
		MaxAttempts: integer("LLM_PROXY_DISPATCH_MAX_ATTEMPTS", dispatch.DefaultMaxAttempts, 1, 1000),
		ClaimIdle:   duration("LLM_PROXY_DISPATCH_CLAIM_IDLE", dispatch.DefaultClaimIdle),
		Batch:       integer("LLM_PROXY_DISPATCH_BATCH", dispatch.DefaultBatchSize, 1, 10000),
		Timeout:     duration("LLM_PROXY_DISPATCH_TIMEOUT", dispatch.DefaultTimeout),
		Concurrency: integer("LLM_PROXY_DISPATCH_CONCURRENCY", dispatch.DefaultConcurrency, 1, 1000),
	}
	c.DeadStream = str("LLM_PROXY_DISPATCH_DEAD_STREAM", c.Stream+dispatch.DeadLetterSuffix)
	if c.DeadStream == c.Stream {
		fail("LLM_PROXY_DISPATCH_DEAD_STREAM", "must differ from LLM_PROXY_EVENTS_STREAM")
	}

	switch u, err := url.Parse(c.RedisURL); {
	case c.RedisURL == "":
		fail("LLM_PROXY_REDIS_URL", "is required: dispatch reads the event stream from Redis")
	case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "":
		fail("LLM_PROXY_REDIS_URL", "must be a redis:// or rediss:// URL")
	}

	level := str("LLM_PROXY_LOG_LEVEL", "info")
	lv, err := zerolog.ParseLevel(level)
	if err != nil || lv == zerolog.NoLevel {
		fail("LLM_PROXY_LOG_LEVEL", "must be debug, info, warn or error, got %q", level)
		lv = zerolog.InfoLevel
	}
	c.LogLevel = lv

	seen := map[string]bool{}
	for _, t := range strings.Split(getenv("LLM_PROXY_DISPATCH_TARGETS"), ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		switch {
		case t == "":
		case !strings.Contains(" "+strings.Join(dispatchTargets, " ")+" ", " "+t+" "):
			fail("LLM_PROXY_DISPATCH_TARGETS", "names unknown target %q (known: %s)", t, strings.Join(dispatchTargets, ", "))
		case seen[t]:
			fail("LLM_PROXY_DISPATCH_TARGETS", "names %q twice", t)
		default:
			seen[t] = true
			c.Targets = append(c.Targets, t)
		}
	}
	if len(c.Targets) == 0 && !hasErrFor(errs, "LLM_PROXY_DISPATCH_TARGETS") {
		fail("LLM_PROXY_DISPATCH_TARGETS", "is required: one or more of %s, comma-separated", strings.Join(dispatchTargets, ", "))
	}

	if c.has("file") {
		if c.File = str("LLM_PROXY_DISPATCH_FILE", ""); c.File == "" {
			fail("LLM_PROXY_DISPATCH_FILE", "is required when LLM_PROXY_DISPATCH_TARGETS includes file")
		}
	}
	if c.has("webhook") {
		c.WebhookURL = httpURL("LLM_PROXY_WEBHOOK_URL", "", true)
		// The secret is used as given, byte for byte; it is never trimmed.
		switch secret := getenv("LLM_PROXY_WEBHOOK_SECRET"); {
		case secret == "":
			fail("LLM_PROXY_WEBHOOK_SECRET", "is required when LLM_PROXY_DISPATCH_TARGETS includes webhook: receivers verify the signature with it")
		case len(secret) < dispatch.MinWebhookSecret:
			fail("LLM_PROXY_WEBHOOK_SECRET", "must be at least %d bytes", dispatch.MinWebhookSecret)
		default:
			c.WebhookKey = []byte(secret)
		}
	}
	if c.has("lunary") {
		c.LunaryURL = httpURL("LLM_PROXY_LUNARY_URL", dispatch.DefaultLunaryURL, true)
		if c.LunaryKey = str("LLM_PROXY_LUNARY_API_KEY", ""); c.LunaryKey == "" {
			fail("LLM_PROXY_LUNARY_API_KEY", "is required when LLM_PROXY_DISPATCH_TARGETS includes lunary")
		}
	}
	if c.has("helicone") {
		c.HeliconeURL = httpURL("LLM_PROXY_HELICONE_URL", dispatch.DefaultHeliconeURL, true)
		if c.HeliconeKey = str("LLM_PROXY_HELICONE_API_KEY", ""); c.HeliconeKey == "" {
			fail("LLM_PROXY_HELICONE_API_KEY", "is required when LLM_PROXY_DISPATCH_TARGETS includes helicone")
		}
	}
	return c, errors.Join(errs...)
}

func printDispatchUsage(w io.Writer) {
	fmt.Fprint(w, dispatchUsage)
	for _, v := range dispatchVars {
		fmt.Fprintf(w, "  %-32s default %s\n      %s\n", v.Name, v.Default, v.Help)
	}
}

func hasErrFor(errs []error, name string) bool {
	for _, err := range errs {
		if strings.HasPrefix(err.Error(), name+" ") {
			return true
		}
	}
	return false
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
	cfg, err := loadDispatchConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := zerolog.New(stderr).Level(cfg.LogLevel).With().Timestamp().Str("component", "dispatch").Logger()

	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("LLM_PROXY_REDIS_URL: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
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
func dispatchBackends(cfg dispatchConfig) ([]dispatch.Backend, func(), error) {
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
