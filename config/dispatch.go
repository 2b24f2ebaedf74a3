package config

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Dispatch is the configuration of `llm-proxy dispatch`.
type Dispatch struct {
	RedisURL    string
	Stream      string
	Group       string
	DeadStream  string
	Targets     []string
	File        string
	WebhookURL  string
	WebhookKey  []byte
	LunaryURL   string // "": the backend's documented default
	LunaryKey   string
	HeliconeURL string // "": the backend's documented default
	HeliconeKey string
	MaxAttempts int
	ClaimIdle   time.Duration
	Batch       int
	Timeout     time.Duration
	Concurrency int
	MetricsAddr string // "": no /metrics
	LogLevel    zerolog.Level
}

// DispatchTargets are the backends LLM_PROXY_DISPATCH_TARGETS may name.
var DispatchTargets = []string{"file", "webhook", "lunary", "helicone"}

// minWebhookSecret keeps webhook signatures from resting on a guessable key.
const minWebhookSecret = 16

// DispatchVars documents the settings of `llm-proxy dispatch`.
// LLM_PROXY_LOG_LEVEL is shared with serve.
var DispatchVars = []Var{
	{"LLM_PROXY_REDIS_URL", "(required)", "URL of the Redis holding the event stream: one server, a Redis Cluster or Sentinel, written as for serve"},
	{"LLM_PROXY_EVENTS_STREAM", "llmproxy:events", "the Redis Stream the event sink writes and dispatch reads"},
	{"LLM_PROXY_DISPATCH_GROUP", "dispatch", "consumer group shared by every dispatch process"},
	{"LLM_PROXY_DISPATCH_DEAD_STREAM", "<stream>:dead", "stream receiving entries that could not be delivered"},
	{"LLM_PROXY_DISPATCH_TARGETS", "(required)", "comma-separated backends: file, webhook, lunary, helicone"},
	{"LLM_PROXY_DISPATCH_FILE", "(required with file)", "JSONL file the file backend appends to"},
	{"LLM_PROXY_WEBHOOK_URL", "(required with webhook)", "http(s) URL each event is POSTed to"},
	{"LLM_PROXY_WEBHOOK_SECRET", "(required with webhook)", "at least 16 bytes; HMAC-SHA-256 key of the X-LLM-Proxy-Signature header"},
	{"LLM_PROXY_LUNARY_URL", "Lunary's API", "Lunary API base URL"},
	{"LLM_PROXY_LUNARY_API_KEY", "(required with lunary)", "Lunary project key"},
	{"LLM_PROXY_HELICONE_URL", "Helicone's logging API", "Helicone logging API base URL"},
	{"LLM_PROXY_HELICONE_API_KEY", "(required with helicone)", "Helicone API key"},
	{"LLM_PROXY_DISPATCH_MAX_ATTEMPTS", "10", "deliveries of an entry before it is dead-lettered"},
	{"LLM_PROXY_DISPATCH_CLAIM_IDLE", "1m0s", "how long an entry sits unacknowledged on a consumer before another claims it"},
	{"LLM_PROXY_DISPATCH_BATCH", "100", "entries read and delivered at once"},
	{"LLM_PROXY_DISPATCH_TIMEOUT", "10s", "bound on one HTTP request to a backend"},
	{"LLM_PROXY_DISPATCH_CONCURRENCY", "8", "requests in flight at once to the webhook and to Helicone"},
	{"LLM_PROXY_DISPATCH_METRICS_ADDR", "(none)", "host:port serving Prometheus /metrics (entries delivered, dead-lettered, claimed, retried); off when unset"},
}

// Has reports whether target is configured.
func (c Dispatch) Has(target string) bool { return slices.Contains(c.Targets, target) }

// LoadDispatch reads the dispatcher's settings through getenv, reporting
// every problem at once, each naming its variable.
func LoadDispatch(getenv func(string) string) (Dispatch, error) {
	p := parser{getenv: getenv}
	c := Dispatch{
		RedisURL:    p.redisURL("LLM_PROXY_REDIS_URL"),
		Stream:      p.str("LLM_PROXY_EVENTS_STREAM", "llmproxy:events"),
		Group:       p.str("LLM_PROXY_DISPATCH_GROUP", "dispatch"),
		MaxAttempts: p.integer("LLM_PROXY_DISPATCH_MAX_ATTEMPTS", 10, 1, 1000),
		ClaimIdle:   p.positive("LLM_PROXY_DISPATCH_CLAIM_IDLE", time.Minute),
		Batch:       p.integer("LLM_PROXY_DISPATCH_BATCH", 100, 1, 10000),
		Timeout:     p.positive("LLM_PROXY_DISPATCH_TIMEOUT", 10*time.Second),
		Concurrency: p.integer("LLM_PROXY_DISPATCH_CONCURRENCY", 8, 1, 1000),
		LogLevel:    p.level("LLM_PROXY_LOG_LEVEL", zerolog.InfoLevel),
	}
	if c.RedisURL == "" {
		p.fail("LLM_PROXY_REDIS_URL", "is required: dispatch reads the event stream from Redis")
	}
	if strings.TrimSpace(getenv("LLM_PROXY_DISPATCH_METRICS_ADDR")) != "" {
		c.MetricsAddr = p.addr("LLM_PROXY_DISPATCH_METRICS_ADDR", "")
	}
	c.DeadStream = p.str("LLM_PROXY_DISPATCH_DEAD_STREAM", c.Stream+":dead")
	if c.DeadStream == c.Stream {
		p.fail("LLM_PROXY_DISPATCH_DEAD_STREAM", "must differ from LLM_PROXY_EVENTS_STREAM")
	}
	for _, t := range strings.Split(getenv("LLM_PROXY_DISPATCH_TARGETS"), ",") {
		switch t = strings.ToLower(strings.TrimSpace(t)); {
		case t == "":
		case !slices.Contains(DispatchTargets, t):
			p.fail("LLM_PROXY_DISPATCH_TARGETS", "names unknown target %q (known: %s)", t, strings.Join(DispatchTargets, ", "))
		case c.Has(t):
			p.fail("LLM_PROXY_DISPATCH_TARGETS", "names %q twice", t)
		default:
			c.Targets = append(c.Targets, t)
		}
	}
	if len(c.Targets) == 0 && strings.TrimSpace(getenv("LLM_PROXY_DISPATCH_TARGETS")) == "" {
		p.fail("LLM_PROXY_DISPATCH_TARGETS", "is required: one or more of %s, comma-separated", strings.Join(DispatchTargets, ", "))
	}
	requiredFor := func(name, target string) string {
		v := p.str(name, "")
		if v == "" {
			p.fail(name, "is required when LLM_PROXY_DISPATCH_TARGETS includes %s", target)
		}
		return v
	}
	if c.Has("file") {
		c.File = requiredFor("LLM_PROXY_DISPATCH_FILE", "file")
	}
	if c.Has("webhook") {
		c.WebhookURL = p.httpURL("LLM_PROXY_WEBHOOK_URL", true)
		// The secret is used as given, byte for byte; it is never trimmed.
		switch secret := getenv("LLM_PROXY_WEBHOOK_SECRET"); {
		case secret == "":
			p.fail("LLM_PROXY_WEBHOOK_SECRET", "is required when LLM_PROXY_DISPATCH_TARGETS includes webhook: receivers verify the signature with it")
		case len(secret) < minWebhookSecret:
			p.fail("LLM_PROXY_WEBHOOK_SECRET", "must be at least %d bytes", minWebhookSecret)
		default:
			c.WebhookKey = []byte(secret)
		}
	}
	if c.Has("lunary") {
		c.LunaryURL = p.httpURL("LLM_PROXY_LUNARY_URL", false)
		c.LunaryKey = requiredFor("LLM_PROXY_LUNARY_API_KEY", "lunary")
	}
	if c.Has("helicone") {
		c.HeliconeURL = p.httpURL("LLM_PROXY_HELICONE_URL", false)
		c.HeliconeKey = requiredFor("LLM_PROXY_HELICONE_API_KEY", "helicone")
	}
	return c, p.err()
}

// positive is a duration that must be greater than zero.
func (p *parser) positive(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, "must be a positive duration such as 30s, got %q", v)
	}
	return d
}

// httpURL is an http(s) URL; "" when unset and not required.
func (p *parser) httpURL(name string, required bool) string {
	v := p.str(name, "")
	if v == "" {
		if required {
			p.fail(name, "is required")
		}
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.fail(name, "must be an http:// or https:// URL")
	}
	return v
}
