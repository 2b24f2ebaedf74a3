package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/redisclient"
)

// Prefix starts every environment variable llm-proxy reads.
const Prefix = "LLM_PROXY_"

// Config is the whole configuration of `llm-proxy serve`.
type Config struct {
	// DataDir holds the embedded database and generated secrets.
	DataDir string
	// DatabaseURL is a postgres:// URL, or else a SQLite file path.
	DatabaseURL string
	// AutoMigrate applies pending migrations at start-up.
	AutoMigrate bool

	// ManagementToken guards the management API. Empty means "generate one into
	// DataDir", which is allowed only with the embedded database.
	ManagementToken string
	// EncryptionKey seals projects' OpenAI keys (32 bytes). Nil: generate, as above.
	EncryptionKey []byte
	// OldEncryptionKeys still open values sealed before a rotation.
	OldEncryptionKeys [][]byte
	// TokenHashKey keys the HMAC under which proxy tokens are stored. Nil: generate.
	TokenHashKey []byte

	GRPCAddr string
	HTTPAddr string
	// PprofAddr serves net/http/pprof when set; loopback only.
	PprofAddr       string
	GRPCMaxRecvSize int
	// GRPCKeepaliveMinTime is the shortest interval between HTTP/2 pings
	// the gRPC server accepts from Envoy (connection_keepalive); pings more
	// often make it close the connection with GOAWAY too_many_pings.
	GRPCKeepaliveMinTime time.Duration
	RoutesFile           string

	// RedisURL enables shared limits and cross-replica invalidation.
	RedisURL     string
	RedisPrefix  string
	RedisTimeout time.Duration
	// LimitFailureModes maps a limit kind (requests, tokens, concurrency,
	// budget, lifetime) to what happens when Redis fails: closed, open or
	// local. Kinds not listed keep the limiter's documented default.
	LimitFailureModes map[string]string
	// ConcurrencyLease is how long a concurrency slot lives without being
	// renewed (a replica that dies frees its slots then); streams renew it.
	ConcurrencyLease time.Duration
	// DefaultMaxTokens is the completion size reserved for a request that
	// names no max_tokens.
	DefaultMaxTokens int64
	// PricesFile overrides the embedded price table.
	PricesFile string
	// UpstreamURL is where the sidecar itself calls OpenAI (settling
	// background responses and batches); UpstreamCAFile adds trusted CAs.
	UpstreamURL    string
	UpstreamCAFile string
	// ReconcileInterval is how long an outstanding background response or
	// batch waits between two polls by the reconciler; ReconcileRate bounds
	// its polls per second.
	ReconcileInterval time.Duration
	ReconcileRate     int
	// MaxBufferedBytes bounds the bytes all requests together hold in memory
	// (request bodies, responses read whole, cache captures).
	MaxBufferedBytes int64
	// MaxBatchInputBytes bounds the batch input file read to reserve a
	// batch's cost when it is created.
	MaxBatchInputBytes int64
	// Tracing gives requests W3C span ids, sent upstream in traceparent and
	// kept in usage events for the dispatcher's OTLP export. LLM_PROXY_TRACING
	// is on, off or auto (the default: on when an OTLP endpoint is set by
	// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
	// OTEL_SDK_DISABLED is not true).
	Tracing bool

	// EventSinks are where usage events go: file, redis, stdout (or none).
	EventSinks         []string
	EventsFile         string
	EventsFileMaxBytes int64
	EventsStream       string
	EventsStreamMaxLen int64
	EventsQueue        int
	AuditFile          string // optional JSONL copy of the audit log
	// Cache selects the response cache backend: memory, redis or off.
	Cache              string
	CacheMaxBytes      int64
	CacheMaxEntryBytes int
	CacheTTL           time.Duration
	CacheWait          time.Duration

	// TrustedHops is how many proxies in front of the management API append
	// to X-Forwarded-For (Envoy: 1); the client address is the entry the
	// outermost trusted one appended, never one a client wrote.
	TrustedHops int

	AuthCacheTTL       time.Duration
	UsageFlushInterval time.Duration
	ShutdownTimeout    time.Duration
	LogLevel           zerolog.Level
}

// Embedded reports whether the configuration uses the single-machine SQLite
// store, where missing secrets may be generated into the data dir.
func (c Config) Embedded() bool { return !IsPostgresURL(c.DatabaseURL) }

// IsPostgresURL reports whether a database URL selects PostgreSQL.
func IsPostgresURL(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// Var documents one environment variable; [Vars] lists them all, and the README
// table is kept in step with it by a test.
type Var struct {
	Name, Default, Help string
}

// Vars is every setting with its default.
var Vars = []Var{
	{"LLM_PROXY_DATA_DIR", "./data", "directory for the embedded SQLite database and generated secrets"},
	{"LLM_PROXY_DATABASE_URL", "<data dir>/llm-proxy.db", "postgres://… selects PostgreSQL; anything else is a SQLite file path"},
	{"LLM_PROXY_AUTO_MIGRATE", "true", "apply pending schema migrations when serve starts"},
	{"LLM_PROXY_MANAGEMENT_TOKEN", "generated into the data dir (SQLite only)", "bearer token for /manage/; required with PostgreSQL"},
	{"LLM_PROXY_ENCRYPTION_KEY", "generated into the data dir (SQLite only)", "base64 of 32 bytes; seals projects' OpenAI keys (AES-256-GCM); required with PostgreSQL"},
	{"LLM_PROXY_OLD_ENCRYPTION_KEYS", "", "comma-separated base64 keys that still decrypt values sealed before a rotation"},
	{"LLM_PROXY_TOKEN_HASH_KEY", "generated into the data dir (SQLite only)", "base64 of ≥32 bytes; HMAC key under which proxy tokens are stored; required with PostgreSQL"},
	{"LLM_PROXY_GRPC_ADDR", "127.0.0.1:9002", "ext_proc gRPC listen address (health and reflection served too): host:port, or unix:/absolute/path for a Unix socket shared with Envoy (faster on one host)"},
	{"LLM_PROXY_HTTP_ADDR", "127.0.0.1:8081", "management API, /metrics and /healthz listen address"},
	{"LLM_PROXY_PPROF_ADDR", "", "loopback host:port serving Go's net/http/pprof profiles (off when unset; never on a public address)"},
	{"LLM_PROXY_GRPC_KEEPALIVE_MIN_TIME", "10s", "shortest interval between Envoy's HTTP/2 pings the gRPC server accepts (with or without open streams); keep it below the sidecar cluster's connection_keepalive interval (30s in envoy/envoy.yaml) minus its jitter"},
	{"LLM_PROXY_GRPC_MAX_RECV_BYTES", "67108864", "largest gRPC message accepted (buffered bodies arrive in one message)"},
	{"LLM_PROXY_REDIS_URL", "", "redis:// or rediss:// URL of one server, a Redis Cluster (`redis://host1:port?addr=host2:port&addr=host3:port`, or `?cluster=true` with one seed node) or Sentinel (`redis://sentinel1:port/0?master_name=NAME&addr=sentinel2:port`; the master's credentials as `username=`/`password=`): limits exact across replicas, revocations reach every replica within a second; unset: in-memory limits for one instance"},
	{"LLM_PROXY_REDIS_PREFIX", "llmproxy:", "prefix of every Redis key and channel llm-proxy uses (no `{` or `}`: keys carry their own Redis Cluster hash tags)"},
	{"LLM_PROXY_REDIS_TIMEOUT", "100ms", "longest a limiter call waits for Redis before its failure mode applies"},
	{"LLM_PROXY_CONCURRENCY_LEASE", "16m0s", "how long a concurrency slot lives unless renewed: longer than the /v1/ routes' 600s wait for response headers and 600s idle timeout, and a streamed response renews it while chunks flow; a replica that dies frees its slots after it"},
	{"LLM_PROXY_LIMIT_FAILURE_MODES", "see ratelimit docs", "what each limit does when Redis fails, e.g. requests=local,tokens=local,concurrency=open,budget=closed,lifetime=closed; modes: closed (deny), open (allow), local (in-process limiter)"},
	{"LLM_PROXY_DEFAULT_MAX_TOKENS", "1024", "completion tokens reserved for a request without max_tokens / max_completion_tokens (settled to the real usage afterwards)"},
	{"LLM_PROXY_PRICES_FILE", "built-in table", "JSON price table (USD per million tokens, versioned) replacing the embedded one"},
	{"LLM_PROXY_UPSTREAM_URL", "https://api.openai.com", "where the sidecar itself reads OpenAI's record of background responses and batches (and batch files), with the project's key, to settle what they cost"},
	{"LLM_PROXY_UPSTREAM_CA_FILE", "", "PEM bundle of extra CAs trusted for LLM_PROXY_UPSTREAM_URL"},
	{"LLM_PROXY_RECONCILE_INTERVAL", "30s", "how often an outstanding background response or batch is polled until it ends and is settled"},
	{"LLM_PROXY_RECONCILE_RATE", "5", "most reconciler polls of OpenAI per second"},
	{"LLM_PROXY_MAX_BUFFERED_BYTES", "268435456", "most bytes of request bodies, responses read whole and cache captures held in memory at once by all requests; beyond it a JSON request is refused with a retryable 503 and responses pass through unread and uncached"},
	{"LLM_PROXY_MAX_BATCH_INPUT_BYTES", "209715200", "largest batch input file read to reserve a batch's cost when it is created (a larger one is refused for projects with a budget)"},
	{"LLM_PROXY_EVENTS_SINKS", "file", "where usage events go, comma-separated: file, redis (a Redis Stream, for `llm-proxy dispatch`), stdout, or none"},
	{"LLM_PROXY_EVENTS_FILE", "<data dir>/events.jsonl", "JSONL file of the file sink (rotated by size)"},
	{"LLM_PROXY_EVENTS_FILE_MAX_BYTES", "104857600", "size at which the events file is rotated (5 old files kept)"},
	{"LLM_PROXY_EVENTS_STREAM", "llmproxy:events", "Redis Stream of the redis sink"},
	{"LLM_PROXY_EVENTS_STREAM_MAXLEN", "1000000", "approximate length the Redis Stream is trimmed to"},
	{"LLM_PROXY_EVENTS_QUEUE", "10000", "events buffered in memory; beyond it events are dropped (counted), never waited for"},
	{"LLM_PROXY_AUDIT_FILE", "", "optional JSONL copy of the audit log (always stored in the database)"},
	{"LLM_PROXY_CACHE", "memory", "response cache: memory (per replica, bounded), redis (shared; needs LLM_PROXY_REDIS_URL) or off"},
	{"LLM_PROXY_CACHE_MAX_BYTES", "268435456", "memory cache size; least valuable entries are evicted beyond it"},
	{"LLM_PROXY_CACHE_MAX_ENTRY_BYTES", "8388608", "largest response stored (a longer stream is passed through, not stored)"},
	{"LLM_PROXY_CACHE_TTL", "5m", "lifetime of a cached response whose Cache-Control names none"},
	{"LLM_PROXY_CACHE_WAIT", "8s", "how long identical concurrent misses wait for the first one's response before going upstream themselves; the sidecar extends Envoy's message timeout for the wait, so keep it (plus 1s) within Envoy's max_message_timeout (10s in envoy/envoy.yaml)"},
	{"LLM_PROXY_TRUSTED_HOPS", "1", "proxies in front of the management API that append to X-Forwarded-For (Envoy: 1; 0: use the TCP peer)"},
	{"LLM_PROXY_ROUTES_FILE", "built-in OpenAI list", "JSON file of allowed method + path patterns"},
	{"LLM_PROXY_AUTH_CACHE_TTL", "10s", "how long a validated token is trusted before the store is read again; changes through this instance apply at once"},
	{"LLM_PROXY_USAGE_FLUSH_INTERVAL", "1s", "how often token request counts are written to the store"},
	{"LLM_PROXY_SHUTDOWN_TIMEOUT", "15s", "how long a graceful shutdown waits for open streams"},
	{"LLM_PROXY_LOG_LEVEL", "info", "debug, info, warn or error"},
}

// Load reads the configuration through getenv (os.Getenv in production).
func Load(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	c := Config{
		DataDir:              p.str("LLM_PROXY_DATA_DIR", "./data"),
		AutoMigrate:          p.boolean("LLM_PROXY_AUTO_MIGRATE", true),
		ManagementToken:      p.str("LLM_PROXY_MANAGEMENT_TOKEN", ""),
		EncryptionKey:        p.key("LLM_PROXY_ENCRYPTION_KEY", 32, 32),
		OldEncryptionKeys:    p.keys("LLM_PROXY_OLD_ENCRYPTION_KEYS"),
		TokenHashKey:         p.key("LLM_PROXY_TOKEN_HASH_KEY", 32, 1024),
		GRPCAddr:             p.listenAddr("LLM_PROXY_GRPC_ADDR", "127.0.0.1:9002"),
		HTTPAddr:             p.addr("LLM_PROXY_HTTP_ADDR", "127.0.0.1:8081"),
		PprofAddr:            p.loopback("LLM_PROXY_PPROF_ADDR"),
		GRPCMaxRecvSize:      p.integer("LLM_PROXY_GRPC_MAX_RECV_BYTES", 64<<20, 4<<20, 1<<30),
		GRPCKeepaliveMinTime: p.duration("LLM_PROXY_GRPC_KEEPALIVE_MIN_TIME", 10*time.Second),
		RedisURL:             p.redisURL("LLM_PROXY_REDIS_URL"),
		RedisPrefix:          p.redisPrefix("LLM_PROXY_REDIS_PREFIX", "llmproxy:"),
		RedisTimeout:         p.duration("LLM_PROXY_REDIS_TIMEOUT", 100*time.Millisecond),
		ConcurrencyLease:     p.duration("LLM_PROXY_CONCURRENCY_LEASE", 16*time.Minute),
		LimitFailureModes:    p.failureModes("LLM_PROXY_LIMIT_FAILURE_MODES"),
		DefaultMaxTokens:     int64(p.integer("LLM_PROXY_DEFAULT_MAX_TOKENS", 1024, 1, 10_000_000)),
		PricesFile:           p.str("LLM_PROXY_PRICES_FILE", ""),
		UpstreamURL:          p.str("LLM_PROXY_UPSTREAM_URL", "https://api.openai.com"),
		UpstreamCAFile:       p.str("LLM_PROXY_UPSTREAM_CA_FILE", ""),
		ReconcileInterval:    p.duration("LLM_PROXY_RECONCILE_INTERVAL", 30*time.Second),
		ReconcileRate:        p.integer("LLM_PROXY_RECONCILE_RATE", 5, 1, 1000),
		MaxBatchInputBytes:   int64(p.integer("LLM_PROXY_MAX_BATCH_INPUT_BYTES", 200<<20, 1<<10, 1<<40)),
		MaxBufferedBytes:     int64(p.integer("LLM_PROXY_MAX_BUFFERED_BYTES", 256<<20, 1<<20, 1<<40)),
		Tracing:              p.tracing("LLM_PROXY_TRACING"),
		EventSinks:           p.sinks("LLM_PROXY_EVENTS_SINKS"),
		EventsFileMaxBytes:   int64(p.integer("LLM_PROXY_EVENTS_FILE_MAX_BYTES", 100<<20, 1<<10, 1<<40)),
		EventsStream:         p.str("LLM_PROXY_EVENTS_STREAM", "llmproxy:events"),
		EventsStreamMaxLen:   int64(p.integer("LLM_PROXY_EVENTS_STREAM_MAXLEN", 1_000_000, 1000, 1<<40)),
		EventsQueue:          p.integer("LLM_PROXY_EVENTS_QUEUE", 10_000, 1, 10_000_000),
		AuditFile:            p.str("LLM_PROXY_AUDIT_FILE", ""),
		TrustedHops:          p.integer("LLM_PROXY_TRUSTED_HOPS", 1, 0, 10),
		Cache:                p.str("LLM_PROXY_CACHE", "memory"),
		CacheMaxBytes:        int64(p.integer("LLM_PROXY_CACHE_MAX_BYTES", 256<<20, 1<<20, 1<<40)),
		CacheMaxEntryBytes:   p.integer("LLM_PROXY_CACHE_MAX_ENTRY_BYTES", 8<<20, 1<<10, 1<<30),
		CacheTTL:             p.duration("LLM_PROXY_CACHE_TTL", 5*time.Minute),
		CacheWait:            p.duration("LLM_PROXY_CACHE_WAIT", 8*time.Second),
		RoutesFile:           p.str("LLM_PROXY_ROUTES_FILE", ""),
		AuthCacheTTL:         p.duration("LLM_PROXY_AUTH_CACHE_TTL", 10*time.Second),
		UsageFlushInterval:   p.duration("LLM_PROXY_USAGE_FLUSH_INTERVAL", time.Second),
		ShutdownTimeout:      p.duration("LLM_PROXY_SHUTDOWN_TIMEOUT", 15*time.Second),
		LogLevel:             p.level("LLM_PROXY_LOG_LEVEL", zerolog.InfoLevel),
	}
	c.DatabaseURL = p.str("LLM_PROXY_DATABASE_URL", filepath.Join(c.DataDir, "llm-proxy.db"))
	c.EventsFile = p.str("LLM_PROXY_EVENTS_FILE", filepath.Join(c.DataDir, "events.jsonl"))
	switch c.Cache {
	case "memory", "off":
	case "redis":
		if c.RedisURL == "" {
			p.fail("LLM_PROXY_CACHE", "redis needs LLM_PROXY_REDIS_URL")
		}
	default:
		p.fail("LLM_PROXY_CACHE", "must be memory, redis or off, got %q", c.Cache)
	}
	if slices.Contains(c.EventSinks, "redis") && c.RedisURL == "" {
		p.fail("LLM_PROXY_EVENTS_SINKS", "names redis, which needs LLM_PROXY_REDIS_URL")
	}
	if !c.Embedded() {
		// Several replicas share a PostgreSQL database, so each generating its
		// own secrets would split the fleet: they must come from the deployment.
		for _, name := range []string{"LLM_PROXY_MANAGEMENT_TOKEN", "LLM_PROXY_ENCRYPTION_KEY", "LLM_PROXY_TOKEN_HASH_KEY"} {
			if strings.TrimSpace(getenv(name)) == "" {
				p.fail(name, "is required when LLM_PROXY_DATABASE_URL is PostgreSQL")
			}
		}
	}
	if c.ManagementToken != "" && len(c.ManagementToken) < 16 {
		p.fail("LLM_PROXY_MANAGEMENT_TOKEN", "must be at least 16 characters")
	}
	if c.UsageFlushInterval <= 0 {
		p.fail("LLM_PROXY_USAGE_FLUSH_INTERVAL", "must be positive")
	}
	if c.ConcurrencyLease < time.Second {
		p.fail("LLM_PROXY_CONCURRENCY_LEASE", "must be at least 1s")
	}
	if c.ReconcileInterval <= 0 {
		p.fail("LLM_PROXY_RECONCILE_INTERVAL", "must be positive")
	}
	return c, p.err()
}

// parser collects every problem instead of stopping at the first.
type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) err() error { return errors.Join(p.errs...) }

func (p *parser) fail(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s %s", name, fmt.Sprintf(format, args...)))
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

// tracing reads on, off or auto (see Config.Tracing).
func (p *parser) tracing(name string) bool {
	switch v := strings.ToLower(p.str(name, "auto")); v {
	case "on":
		return true
	case "off":
		return false
	case "auto":
		if strings.EqualFold(strings.TrimSpace(p.getenv("OTEL_SDK_DISABLED")), "true") {
			return false
		}
		return p.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") != "" || p.str("OTEL_EXPORTER_OTLP_ENDPOINT", "") != ""
	default:
		p.fail(name, "must be on, off or auto, got %q", v)
		return false
	}
}

func (p *parser) boolean(name string, def bool) bool {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "must be true or false, got %q", v)
	}
	return b
}

func (p *parser) integer(name string, def, lo, hi int) int {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, "must be an integer from %d to %d, got %q", lo, hi, v)
	}
	return n
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(name, "must be a non-negative duration such as 10s, got %q", v)
	}
	return d
}

func (p *parser) addr(name, def string) string {
	v := p.str(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		p.fail(name, "must be host:port, got %q", v)
	}
	return v
}

// listenAddr reads host:port or unix:/absolute/path (see [ListenNetwork]).
func (p *parser) listenAddr(name, def string) string {
	v := p.str(name, def)
	if network, path := ListenNetwork(v); network == "unix" {
		if !filepath.IsAbs(path) {
			p.fail(name, "a Unix socket must be unix:/absolute/path, got %q", v)
		}
		return v
	}
	return p.addr(name, def)
}

// ListenNetwork splits a listen address into what net.Listen takes:
// "unix:/run/llm-proxy.sock" (or "unix:///run/llm-proxy.sock", gRPC's
// spelling) is a Unix socket, anything else TCP host:port. The same string
// is a gRPC dial target.
func ListenNetwork(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			path = rest
		}
		return "unix", path
	}
	return "tcp", addr
}

// loopback reads an optional host:port that must be on a loopback address:
// what it serves (profiles) is for the operator on the machine only.
func (p *parser) loopback(name string) string {
	v := p.str(name, "")
	if v == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(v)
	ip := net.ParseIP(host)
	if err != nil || port == "" || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		p.fail(name, "must be a loopback host:port such as 127.0.0.1:6060, got %q", v)
	}
	return v
}

func (p *parser) level(name string, def zerolog.Level) zerolog.Level {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	l, err := zerolog.ParseLevel(strings.ToLower(v))
	if err != nil || v == "" {
		p.fail(name, "must be debug, info, warn or error, got %q", v)
	}
	return l
}

// key decodes a base64 secret. The value itself never appears in an error.
func (p *parser) key(name string, minLen, maxLen int) []byte {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return nil
	}
	b, err := DecodeKey(v)
	if err != nil || len(b) < minLen || len(b) > maxLen {
		want := fmt.Sprintf("%d", minLen)
		if maxLen != minLen {
			want = fmt.Sprintf("at least %d", minLen)
		}
		p.fail(name, "must be base64 of %s bytes (e.g. `openssl rand -base64 32`)", want)
		return nil
	}
	return b
}

func (p *parser) keys(name string) [][]byte {
	var out [][]byte
	for i, v := range strings.Split(p.getenv(name), ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		b, err := DecodeKey(v)
		if err != nil || len(b) != 32 {
			p.fail(name, "entry %d must be base64 of 32 bytes", i+1)
			continue
		}
		out = append(out, b)
	}
	return out
}

func (p *parser) redisURL(name string) string {
	v := p.str(name, "")
	if v == "" {
		return ""
	}
	if err := redisclient.Validate(v); err != nil {
		p.fail(name, "must be a redis:// or rediss:// URL of a server, a Redis Cluster (?addr=host:port per more seed node, or ?cluster=true) or Sentinel (?master_name=): %v", err)
	}
	return v
}

// redisPrefix refuses braces: llm-proxy's keys carry one hash tag per
// project group ("{…}") so that a Lua script's keys share a Redis Cluster
// slot, and a brace in the prefix would become the tag instead.
func (p *parser) redisPrefix(name, def string) string {
	v := p.str(name, def)
	if strings.ContainsAny(v, "{}") {
		p.fail(name, "must not contain { or }: they would become the Redis Cluster hash tag of every key")
	}
	return v
}

// failureModes parses "kind=mode,kind=mode".
func (p *parser) failureModes(name string) map[string]string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return nil
	}
	out := map[string]string{}
	for _, item := range strings.Split(v, ",") {
		kind, mode, ok := strings.Cut(strings.TrimSpace(item), "=")
		kind, mode = strings.TrimSpace(kind), strings.TrimSpace(mode)
		switch {
		case !ok:
			p.fail(name, "entry %q must be kind=mode", item)
		case !strings.Contains(" requests tokens concurrency budget lifetime ", " "+kind+" "):
			p.fail(name, "unknown limit kind %q (requests, tokens, concurrency, budget, lifetime)", kind)
		case mode != "closed" && mode != "open" && mode != "local":
			p.fail(name, "mode for %s must be closed, open or local, got %q", kind, mode)
		default:
			out[kind] = mode
		}
	}
	return out
}

// sinks parses the event sink list; "none" alone means no events.
func (p *parser) sinks(name string) []string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return []string{"file"}
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		switch s = strings.TrimSpace(s); s {
		case "file", "redis", "stdout":
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		case "none":
		default:
			p.fail(name, "unknown sink %q (file, redis, stdout, none)", s)
		}
	}
	return out
}
