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
	// UpstreamURL is the OpenAI API base the requests went to: the URL
	// Helicone logs a captured request under, and the server.address and
	// server.port of the otlp spans.
	UpstreamURL string
	// OTLP is where the otlp target exports spans; set when Targets has it.
	OTLP        OTLPExport
	MaxAttempts int
	ClaimIdle   time.Duration
	Batch       int
	Timeout     time.Duration
	Concurrency int
	MetricsAddr string // "": no /metrics
	LogLevel    zerolog.Level
}

// OTLPExport is the otlp target's exporter, read from the standard
// OpenTelemetry variables (see [DispatchOTLPVars]).
type OTLPExport struct {
	// Protocol is "grpc" or "http/protobuf".
	Protocol string
	// Endpoint is the URL spans go to: for http/protobuf the full URL
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, or
	// OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces"), for grpc the endpoint as
	// given. "": the exporter's default (localhost).
	Endpoint string
	// Headers are sent with every export.
	Headers map[string]string
	// ServiceName is OTEL_SERVICE_NAME ("": the backend's default,
	// llm-proxy, unless ResourceAttributes names one).
	ServiceName string
	// ResourceAttributes are OTEL_RESOURCE_ATTRIBUTES.
	ResourceAttributes map[string]string
}

// DispatchTargets are the backends LLM_PROXY_DISPATCH_TARGETS may name.
var DispatchTargets = []string{"file", "webhook", "lunary", "helicone", "otlp"}

// minWebhookSecret keeps webhook signatures from resting on a guessable key.
const minWebhookSecret = 16

// DispatchVars documents the settings of `llm-proxy dispatch`.
// LLM_PROXY_LOG_LEVEL is shared with serve.
var DispatchVars = []Var{
	{"LLM_PROXY_REDIS_URL", "(required)", "URL of the Redis holding the event stream: one server, a Redis Cluster or Sentinel, written as for serve"},
	{"LLM_PROXY_EVENTS_STREAM", "llmproxy:events", "the Redis Stream the event sink writes and dispatch reads"},
	{"LLM_PROXY_DISPATCH_GROUP", "dispatch", "consumer group shared by every dispatch process"},
	{"LLM_PROXY_DISPATCH_DEAD_STREAM", "<stream>:dead", "stream receiving entries that could not be delivered"},
	{"LLM_PROXY_DISPATCH_TARGETS", "(required)", "comma-separated backends: file, webhook, lunary, helicone, otlp (otlp is added by itself when an OTLP endpoint is set; then the variable may be empty)"},
	{"LLM_PROXY_DISPATCH_FILE", "(required with file)", "JSONL file the file backend appends to"},
	{"LLM_PROXY_WEBHOOK_URL", "(required with webhook)", "http(s) URL each event is POSTed to"},
	{"LLM_PROXY_WEBHOOK_SECRET", "(required with webhook)", "at least 16 bytes; HMAC-SHA-256 key of the X-LLM-Proxy-Signature header"},
	{"LLM_PROXY_LUNARY_URL", "Lunary's API", "Lunary API base URL"},
	{"LLM_PROXY_LUNARY_API_KEY", "(required with lunary)", "Lunary project key"},
	{"LLM_PROXY_HELICONE_URL", "Helicone's logging API", "Helicone logging API base URL"},
	{"LLM_PROXY_HELICONE_API_KEY", "(required with helicone)", "Helicone API key"},
	{"LLM_PROXY_UPSTREAM_URL", "https://api.openai.com", "the OpenAI API base the requests went to: Helicone's request URL and the spans' server.address (as for serve)"},
	{"LLM_PROXY_DISPATCH_MAX_ATTEMPTS", "10", "deliveries of an entry before it is dead-lettered"},
	{"LLM_PROXY_DISPATCH_CLAIM_IDLE", "1m0s", "how long an entry sits unacknowledged on a consumer before another claims it"},
	{"LLM_PROXY_DISPATCH_BATCH", "100", "entries read and delivered at once"},
	{"LLM_PROXY_DISPATCH_TIMEOUT", "10s", "bound on one HTTP request to a backend"},
	{"LLM_PROXY_DISPATCH_CONCURRENCY", "8", "requests in flight at once to the webhook and to Helicone"},
	{"LLM_PROXY_DISPATCH_METRICS_ADDR", "(none)", "host:port serving Prometheus /metrics (entries delivered, dead-lettered, claimed, retried); off when unset"},
}

// DispatchOTLPVars documents the standard OpenTelemetry variables the otlp
// target reads. The exporter also reads the OTEL_EXPORTER_OTLP_* variables
// not listed (certificates, compression, insecure) itself.
var DispatchOTLPVars = []Var{
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "(none)", "OTLP collector base URL (http/protobuf appends /v1/traces); setting it turns the otlp target on"},
	{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "(none)", "OTLP traces URL, used as given; wins over OTEL_EXPORTER_OTLP_ENDPOINT and also turns otlp on"},
	{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "grpc or http/protobuf (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins)"},
	{"OTEL_EXPORTER_OTLP_HEADERS", "(none)", "key=value,… sent with every export, values URL-encoded (OTEL_EXPORTER_OTLP_TRACES_HEADERS wins)"},
	{"OTEL_SERVICE_NAME", "llm-proxy", "the spans' service.name"},
	{"OTEL_RESOURCE_ATTRIBUTES", "(none)", "key=value,… further resource attributes"},
	{"OTEL_SDK_DISABLED", "false", "true keeps otlp off even when an endpoint is set (as does OTEL_TRACES_EXPORTER=none)"},
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
	tracesOff := otlpOff(getenv)
	switch {
	case c.Has("otlp") && tracesOff != "":
		p.fail("LLM_PROXY_DISPATCH_TARGETS", "names otlp, but %s turns OpenTelemetry export off", tracesOff)
	case !c.Has("otlp") && tracesOff == "" && otlpEndpointSet(getenv):
		// The standard variables turn tracing on; an operator who set
		// an endpoint expects spans there.
		c.Targets = append(c.Targets, "otlp")
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
	if c.Has("helicone") || c.Has("otlp") {
		c.UpstreamURL = p.httpURL("LLM_PROXY_UPSTREAM_URL", false)
	}
	if c.Has("otlp") {
		c.OTLP = p.otlpExport()
	}
	return c, p.err()
}

// otlpEndpointSet reports whether an OTLP endpoint variable is set.
func otlpEndpointSet(getenv func(string) string) bool {
	return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != "" ||
		strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != ""
}

// otlpOff names the standard variable that turns trace export off, or "".
func otlpOff(getenv func(string) string) string {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return "OTEL_SDK_DISABLED=true"
	}
	v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if v == "" {
		return ""
	}
	for _, e := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(e), "otlp") {
			return ""
		}
	}
	return "OTEL_TRACES_EXPORTER=" + v
}

// otlpExport reads the otlp target's exporter settings, the signal-specific
// (TRACES) variables winning over the general ones.
func (p *parser) otlpExport() OTLPExport {
	pick := func(general string) string {
		specific := strings.Replace(general, "OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_TRACES_", 1)
		if v := p.str(specific, ""); v != "" {
			return specific
		}
		return general
	}
	o := OTLPExport{ServiceName: p.str("OTEL_SERVICE_NAME", "")}
	protoVar := pick("OTEL_EXPORTER_OTLP_PROTOCOL")
	switch o.Protocol = strings.ToLower(p.str(protoVar, "http/protobuf")); o.Protocol {
	case "grpc", "http/protobuf":
	default:
		p.fail(protoVar, "must be grpc or http/protobuf, got %q", o.Protocol)
	}
	if v := p.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""); v != "" {
		o.Endpoint = p.httpURL("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", false)
	} else if v := p.str("OTEL_EXPORTER_OTLP_ENDPOINT", ""); v != "" {
		o.Endpoint = p.httpURL("OTEL_EXPORTER_OTLP_ENDPOINT", false)
		if o.Protocol == "http/protobuf" && o.Endpoint != "" {
			o.Endpoint = strings.TrimRight(o.Endpoint, "/") + "/v1/traces"
		}
	}
	headersVar := pick("OTEL_EXPORTER_OTLP_HEADERS")
	o.Headers = p.keyValues(headersVar)
	o.ResourceAttributes = p.keyValues("OTEL_RESOURCE_ATTRIBUTES")
	return o
}

// keyValues reads a list of key=value pairs separated by commas, values
// percent-decoded (the W3C Baggage form the OpenTelemetry variables use).
func (p *parser) keyValues(name string) map[string]string {
	v := p.str(name, "")
	if v == "" {
		return nil
	}
	out := map[string]string{}
	for _, pair := range strings.Split(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if !ok || k == "" || err != nil {
			// The value may be a credential: name only the key.
			p.fail(name, "must be key=value pairs separated by commas with URL-encoded values; the entry for key %q is not", k)
			continue
		}
		out[k] = dec
	}
	return out
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
