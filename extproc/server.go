package extproc

import (
	"context"
	"errors"
	"io"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/deferred"
	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/upstream"
	"github.com/llm-proxy/llm-proxy/usage"
)

// authenticator turns a bearer token into the project's identity and key;
// addr (Envoy's view of the client) lets it refuse an address that keeps
// failing before the store is asked.
type authenticator interface {
	AuthenticateFrom(ctx context.Context, addr, token string) (authz.Principal, error)
}

// denialAuditor says which security denials are worth an audit row each, so
// a flood of bad tokens costs a few rows and a summary, not one row per
// attempt (package authz). A nil one records every denial.
type denialAuditor interface {
	ShouldAudit(addr, reason string) (record bool, suppressed int)
}

// requestCounter counts admitted requests and cache hits per token.
type requestCounter interface {
	CountRequest(tokenID string)
	CountCacheHit(tokenID string)
}

// limiter enforces rates, concurrency, budgets and lifetime caps.
type limiter interface {
	Admit(ctx context.Context, limits []ratelimit.Limit) (*ratelimit.Admission, error)
	Reserve(ctx context.Context, limits []ratelimit.Limit, tokens, cost int64) (*ratelimit.Reservation, error)
}

// tokenCounter estimates prompts and counts streamed text (tiktoken).
type tokenCounter interface {
	CountPrompt(model string, body []byte) int64
	CountText(model, text string) int64
	Loaded(model string) bool // false: the next count of model loads its encoding first
}

// eventEmitter takes one usage event per request; it must never block.
type eventEmitter interface {
	Emit(ev *llmproxyv1.UsageEvent)
}

// auditRecorder takes security denials into the audit log; it must never
// block.
type auditRecorder interface {
	Record(ev store.AuditEvent)
}

// usageRecorder takes each settled request into the usage roll-up.
type usageRecorder interface {
	Record(at time.Time, rec store.UsageRecord)
}

var (
	_ authenticator  = (*authz.Authorizer)(nil)
	_ denialAuditor  = (*authz.Authorizer)(nil)
	_ requestCounter = (*authz.Authorizer)(nil)
	_ limiter        = (*ratelimit.Limiter)(nil)
	_ tokenCounter   = (*usage.Tokenizer)(nil)
	_ usageRecorder  = (*eventsink.Rollup)(nil)
	_ eventEmitter   = (*eventsink.Emitter)(nil)
	_ auditRecorder  = (*eventsink.AuditLog)(nil)
	_ responseCache  = (*cachefilter.Cache)(nil)
	_ deferredWork   = (*deferred.Reconciler)(nil)
	_ fileReader     = (*upstream.Client)(nil)
)

// Options configures a [Server]. Auth, Counter, Limiter, Tokenizer, Prices
// and Usage are required.
type Options struct {
	Auth      authenticator
	Counter   requestCounter
	Limiter   limiter
	Tokenizer tokenCounter
	Prices    *usage.Prices
	Usage     usageRecorder
	// Events receives one usage event per request; nil: no events.
	Events eventEmitter
	// Audit receives security denials; nil: not recorded. Denials decides
	// which of them get a row each (nil: all).
	Audit   auditRecorder
	Denials denialAuditor
	// Cache answers repeated requests; nil: no cache. CacheTTL is the
	// lifetime of a response that names none, CacheMaxEntry the largest
	// response stored (bytes), CacheWait how long identical concurrent
	// misses wait for the first one's answer.
	Cache         responseCache
	CacheTTL      time.Duration
	CacheMaxEntry int
	CacheWait     time.Duration
	// DefaultMaxTokens is reserved for a request that names no max_tokens.
	DefaultMaxTokens int64
	// Deferred keeps and settles background responses and batches, whose
	// cost is known only after their response; nil: they are settled at
	// their response like any request (prompt estimate, no completion).
	Deferred deferredWork
	// Files reads batch input files from OpenAI, to reserve a batch's cost
	// when it is created, at most MaxBatchInput bytes of each.
	Files         fileReader
	MaxBatchInput int64
	// MaxBufferedBytes bounds the bytes all requests together hold in memory
	// (request bodies, responses read whole, cache captures); 0: unbounded.
	// Registerer receives its metrics.
	MaxBufferedBytes int64
	Registerer       prometheus.Registerer
	Routes           []config.Route
	// Tracing gives each request a W3C span id, sends it upstream as the
	// traceparent's parent and puts the ids in the usage event, from which
	// the events pipeline exports the span (OTEL_EXPORTER_OTLP_ENDPOINT).
	Tracing bool
	Logger  zerolog.Logger
	Metrics *Metrics // nil: metrics are not recorded
	Now     func() time.Time
	// Origins is every project's CORS policy, which preflights are judged
	// against (authz.Origins); nil: preflights are answered without CORS
	// headers, and browsers refuse the request.
	Origins corsPolicies
}

// Server implements envoy.service.ext_proc.v3.ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	auth             authenticator
	counter          requestCounter
	limiter          limiter
	tokenizer        tokenCounter
	prices           *usage.Prices
	usage            usageRecorder
	events           eventEmitter
	audit            auditRecorder
	denials          denialAuditor
	cache            responseCache
	cacheTTL         time.Duration
	cacheMaxEntry    int
	cacheWait        time.Duration
	defaultMaxTokens int64
	deferred         deferredWork
	files            fileReader
	maxBatchInput    int64
	buffers          *bufferBudget
	routes           allowlist
	origins          corsPolicies
	tracing          bool
	redactors        redactorCache
	log              zerolog.Logger
	metrics          *Metrics
	now              func() time.Time
}

// NewServer returns a Server. Routes must be valid (see config.ParseRoutes).
func NewServer(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DefaultMaxTokens <= 0 {
		o.DefaultMaxTokens = 1024
	}
	if o.MaxBatchInput <= 0 {
		o.MaxBatchInput = 200 << 20
	}
	return &Server{
		auth:             o.Auth,
		counter:          o.Counter,
		limiter:          o.Limiter,
		tokenizer:        o.Tokenizer,
		prices:           o.Prices,
		usage:            o.Usage,
		events:           o.Events,
		audit:            o.Audit,
		denials:          o.Denials,
		cache:            o.Cache,
		cacheTTL:         o.CacheTTL,
		cacheMaxEntry:    o.CacheMaxEntry,
		cacheWait:        o.CacheWait,
		defaultMaxTokens: o.DefaultMaxTokens,
		deferred:         o.Deferred,
		files:            o.Files,
		maxBatchInput:    o.MaxBatchInput,
		buffers:          newBufferBudget(o.MaxBufferedBytes, o.Registerer),
		routes:           newAllowlist(o.Routes),
		origins:          o.Origins,
		tracing:          o.Tracing,
		log:              o.Logger,
		metrics:          o.Metrics,
		now:              o.Now,
	}
}

// Process serves one HTTP request's worth of phases.
func (s *Server) Process(ps extprocv3.ExternalProcessor_ProcessServer) error {
	st := s.newStream(ps.Context())
	st.send = ps.Send
	defer st.finish()
	for {
		req, err := ps.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil // Envoy is done with this request, or the client left
			}
			return status.Errorf(codes.Unknown, "receive: %v", err)
		}
		resp := st.handle(req)
		if err := ps.Send(resp); err != nil {
			return err
		}
	}
}
