package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/llm-proxy/llm-proxy/adminapi"
	"github.com/llm-proxy/llm-proxy/adminui"
	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/deferred"
	"github.com/llm-proxy/llm-proxy/eventsink"
	"github.com/llm-proxy/llm-proxy/extproc"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/redisclient"
	"github.com/llm-proxy/llm-proxy/upstream"
	"github.com/llm-proxy/llm-proxy/usage"
)

// extprocService is the name grpc.health.v1 reports for the ext_proc server,
// besides the overall "" status Envoy's health check asks for.
const extprocService = "envoy.service.ext_proc.v3.ExternalProcessor"

// serve runs until ctx ends, then drains: gRPC streams in flight get
// ShutdownTimeout to finish, counts are flushed, the store is closed.
func serve(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	logOut, closeLog := bufferLog(stderr)
	defer closeLog()
	log := zerolog.New(logOut).Level(cfg.LogLevel).With().Timestamp().Logger()
	log.Info().Int("gomaxprocs", shareCPUs(getenv, runtime.NumCPU())).Msg("threads running Go code")

	if cfg.Embedded() {
		created, err := config.EnsureSecrets(&cfg)
		if err != nil {
			return err
		}
		for _, s := range created {
			if s.Name == "LLM_PROXY_MANAGEMENT_TOKEN" {
				// Printed once, on the start that creates it, so a first-time user can
				// call the management API; later starts only say where it is kept.
				fmt.Fprintf(stderr, "\nGenerated management token (saved in %s):\n\n    %s\n\n", s.Path, s.Value)
			} else {
				log.Info().Str("setting", s.Name).Str("path", s.Path).Msg("generated secret into data dir")
			}
		}
	}
	routes, err := config.LoadRoutes(cfg.RoutesFile)
	if err != nil {
		return err
	}

	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	keyring, hasher, err := secretKeys(cfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	auth := authz.NewAuthorizer(st, hasher, keyring, authz.Options{CacheTTL: cfg.AuthCacheTTL, Registerer: reg})

	tokenizer := usage.NewTokenizer()
	prices := usage.DefaultPrices()
	if cfg.PricesFile != "" {
		if prices, err = usage.LoadPrices(cfg.PricesFile); err != nil {
			return fmt.Errorf("LLM_PROXY_PRICES_FILE: %w", err)
		}
	}
	for _, r := range routes {
		if _, ok := prices.CallCost(r.Method + " " + r.Path); r.Charge == config.ChargeCall && !ok {
			return fmt.Errorf("route %s %s is charged per call, but the price table's calls section names no price for it", r.Method, r.Path)
		}
	}
	rollup := eventsink.NewRollup(st)
	// How much of its monthly budget each project has used, on /metrics:
	// read from the roll-up's store when scraped.
	eventsink.NewBudgetMetrics(st, reg, log.With().Str("component", "budget").Logger())
	auditLog, err := eventsink.NewAuditLog(st, eventsink.AuditOptions{
		JSONLPath: cfg.AuditFile, Registerer: reg, Logger: log.With().Str("component", "audit").Logger(),
	})
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		auditDenialSummaries(auth, auditLog, true)
		if err := auditLog.Close(ctx); err != nil {
			log.Error().Err(err).Msg("final audit flush failed")
		}
	}()

	var rdb redis.UniversalClient
	var redisMode redisclient.Mode
	if cfg.RedisURL != "" {
		// Per-call deadlines (LLM_PROXY_REDIS_TIMEOUT) bind only when the
		// client honours the context's deadline; redisclient sees to it.
		if rdb, err = redisclient.New(cfg.RedisURL); err != nil {
			return fmt.Errorf("LLM_PROXY_REDIS_URL: %w", err)
		}
		defer rdb.Close()
		redisMode, _ = redisclient.ModeOf(cfg.RedisURL) // New accepted it
	}
	limiterOpts := ratelimit.Options{
		Prefix:       cfg.RedisPrefix + "rl:",
		Timeout:      cfg.RedisTimeout,
		Lease:        cfg.ConcurrencyLease,
		FailureModes: failureModes(cfg.LimitFailureModes),
		Seed:         limitSeed(st, auth, rollup),
		Registerer:   reg,
		Logger:       log.With().Str("component", "ratelimit").Logger(),
	}
	sinks, err := eventSinks(cfg, rdb, stdout)
	if err != nil {
		return err
	}
	// Requests by status, tokens and spend by project and model on /metrics
	// come from the events too, whatever LLM_PROXY_EVENTS_SINKS says.
	sinks = append(sinks, eventsink.NewMetricsSink(reg))
	var emitter *eventsink.Emitter
	if len(sinks) > 0 {
		emitter = eventsink.NewEmitter(eventsink.EmitterOptions{
			Sinks: sinks, QueueSize: cfg.EventsQueue, Registerer: reg,
			// A sink that stays down spills here rather than losing events.
			SpillDir: filepath.Dir(cfg.EventsFile),
			Logger:   log.With().Str("component", "events").Logger(),
		})
	}

	var cache *cachefilter.Cache
	cacheOpts := cachefilter.Options{
		MaxEntryBytes: cfg.CacheMaxEntryBytes, Registerer: reg,
		Logger: log.With().Str("component", "cache").Logger(),
	}
	switch cfg.Cache {
	case "memory":
		cacheOpts.MaxBytes = cfg.CacheMaxBytes
		cache = cachefilter.NewMemory(cacheOpts)
	case "redis":
		cacheOpts.Prefix, cacheOpts.Timeout = cfg.RedisPrefix+"cache:", cfg.RedisTimeout
		// Identical misses on different replicas wait for one fill too, as
		// long as a follower would wait on this one.
		cacheOpts.LockTTL = cfg.CacheWait
		cache = cachefilter.NewRedis(rdb, cacheOpts)
	}

	var limiter *ratelimit.Limiter
	var invalidator interface {
		InvalidateToken(string)
		InvalidateProject(string)
	} = auth
	var broadcast *authz.Broadcast
	if rdb != nil {
		limiter = ratelimit.NewRedis(rdb, limiterOpts)
		broadcast = authz.NewBroadcast(rdb, cfg.RedisPrefix+"authz:invalidate", auth, log.With().Str("component", "authz").Logger())
		invalidator = broadcast
	} else {
		limiter = ratelimit.NewMemory(limiterOpts)
	}
	defer limiter.Close()

	// Background responses and batches are settled from OpenAI's record,
	// read by the sidecar itself with each project's key.
	upstreamClient, err := upstream.New(upstream.Options{BaseURL: cfg.UpstreamURL, CAFile: cfg.UpstreamCAFile})
	if err != nil {
		return fmt.Errorf("LLM_PROXY_UPSTREAM_URL / LLM_PROXY_UPSTREAM_CA_FILE: %w", err)
	}
	reconciler := deferred.New(deferred.Options{
		Store: st, Keys: auth, Limiter: limiter, Upstream: upstreamClient, Prices: prices,
		Events: eventsOrNil(emitter), Interval: cfg.ReconcileInterval, Rate: cfg.ReconcileRate,
		Logger: log.With().Str("component", "deferred").Logger(),
	})

	// Process-wide, as it must be: the proto codec takes its buffers from
	// the default pool, not from the server's.
	experimental.SetDefaultBufferPool(extproc.BufferPool)
	grpcSrv := grpc.NewServer(grpc.MaxRecvMsgSize(cfg.GRPCMaxRecvSize),
		// Buffered bodies arrive as one message of up to 8 MiB (16 over
		// HTTP/2): windows that size let Envoy send one without waiting for
		// window updates, so a burst of large prompts is not held back by
		// flow control into Envoy's message_timeout.
		grpc.InitialWindowSize(16<<20), grpc.InitialConnWindowSize(64<<20),
		// Envoy pings its sidecar connections (connection_keepalive, 30s):
		// grpc-go's default policy (5 min) answers such pings on a quiet
		// connection with GOAWAY too_many_pings, failing every stream on it
		// — a slow model's request among them.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.GRPCKeepaliveMinTime, PermitWithoutStream: true}))
	extprocv3.RegisterExternalProcessorServer(grpcSrv, extproc.NewServer(extproc.Options{
		Auth:             auth,
		Counter:          auth,
		Limiter:          limiter,
		Tokenizer:        tokenizer,
		Prices:           prices,
		Usage:            rollup,
		Events:           eventsOrNil(emitter),
		Audit:            auditLog,
		Denials:          auth,
		Cache:            cacheOrNil(cache),
		CacheTTL:         cfg.CacheTTL,
		CacheMaxEntry:    cfg.CacheMaxEntryBytes,
		CacheWait:        cfg.CacheWait,
		DefaultMaxTokens: cfg.DefaultMaxTokens,
		Deferred:         reconciler,
		Files:            upstreamClient,
		MaxBatchInput:    cfg.MaxBatchInputBytes,
		MaxBufferedBytes: cfg.MaxBufferedBytes,
		Registerer:       reg,
		Routes:           routes,
		Origins:          authz.NewOrigins(st, auth, authz.OriginsOptions{TTL: cfg.AuthCacheTTL}),
		Tracing:          cfg.Tracing,
		Logger:           log.With().Str("component", "extproc").Logger(),
		Metrics:          extproc.NewMetrics(reg),
	}))
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(grpcSrv, healthSrv)
	reflection.Register(grpcSrv)

	admin, err := adminapi.New(adminapi.Options{
		Store:           st,
		Keyring:         keyring,
		Hasher:          hasher,
		Invalidator:     invalidator,
		ManagementToken: cfg.ManagementToken,
		Audit:           auditLog,
		TrustedHops:     cfg.TrustedHops,
		Cache:           purgerOrNil(cache),
		Registerer:      reg,
		Logger:          log.With().Str("component", "adminapi").Logger(),
	})
	if err != nil {
		return err
	}
	// The admin console calls the API above in process: one set of rules.
	console, err := adminui.New(adminui.Options{
		API:             admin,
		ManagementToken: cfg.ManagementToken,
		TrustedHops:     cfg.TrustedHops,
		Audit:           auditLog,
		Metrics:         reg,
		DeadLetters:     deadLetters(cfg, rdb, getenv),
		// With Redis, every replica knows every console session.
		Redis:       rdb,
		RedisPrefix: cfg.RedisPrefix + "admin:session:",
		Logger:      log.With().Str("component", "adminui").Logger(),
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/manage/", admin)
	mux.Handle("/admin/", console)
	mux.Handle("/admin", console)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", readiness(st, rdb, redisMode, log))
	httpSrv := &http.Server{Addr: cfg.HTTPAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var pprofSrv *http.Server
	if cfg.PprofAddr != "" {
		pmux := http.NewServeMux()
		pmux.HandleFunc("/debug/pprof/", pprof.Index)
		pmux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		pmux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pmux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pmux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		pprofSrv = &http.Server{Addr: cfg.PprofAddr, Handler: pmux, ReadHeaderTimeout: 10 * time.Second}
	}

	var lc net.ListenConfig
	grpcLis, err := listenGRPC(ctx, &lc, cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("LLM_PROXY_GRPC_ADDR: %w", err)
	}
	httpLis, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("LLM_PROXY_HTTP_ADDR: %w", err)
	}

	var pprofLis net.Listener
	if pprofSrv != nil {
		if pprofLis, err = lc.Listen(ctx, "tcp", cfg.PprofAddr); err != nil {
			grpcLis.Close()
			httpLis.Close()
			return fmt.Errorf("LLM_PROXY_PPROF_ADDR: %w", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	if pprofSrv != nil {
		g.Go(func() error {
			if err := pprofSrv.Serve(pprofLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("pprof server: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return pprofSrv.Close() // profiles in progress are cut: nothing to drain
		})
	}
	g.Go(func() error {
		if err := grpcSrv.Serve(grpcLis); err != nil {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := httpSrv.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		return flushEvery(gctx, cfg.UsageFlushInterval, auth.Flush, func(err error) {
			log.Warn().Err(err).Msg("token usage flush failed; will retry")
		})
	})
	g.Go(func() error {
		return flushEvery(gctx, cfg.UsageFlushInterval, rollup.Flush, func(err error) {
			log.Warn().Err(err).Msg("usage roll-up flush failed; will retry")
		})
	})
	g.Go(func() error {
		return flushEvery(gctx, cfg.UsageFlushInterval, func(ctx context.Context) error {
			auditDenialSummaries(auth, auditLog, false)
			return auditLog.Flush(ctx)
		}, func(err error) {
			log.Warn().Err(err).Msg("audit flush failed; will retry")
		})
	})
	if broadcast != nil {
		g.Go(func() error { return broadcast.Run(gctx) })
	}
	g.Go(func() error { return reconciler.Run(gctx) })
	// Events emitted while streams drain must still be written: the emitter
	// stops only after the servers have.
	ectx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEvents()
	if emitter != nil {
		g.Go(func() error { return emitter.Run(ectx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		shutdown(cfg.ShutdownTimeout, grpcSrv, healthSrv, httpSrv, log)
		stopEvents()
		return nil
	})
	healthSrv.SetServingStatus(extprocService, healthpb.HealthCheckResponse_SERVING)
	log.Info().Str("grpc_addr", cfg.GRPCAddr).Str("http_addr", cfg.HTTPAddr).
		Str("store", st.Dialect()).Str("redis", string(redisMode)).Int("routes", len(routes)).Msg("llm-proxy serving")
	err = g.Wait()
	log.Info().Msg("llm-proxy stopped")
	return err
}

// shutdown stops taking new work and lets streams in flight finish, up to
// timeout, after which they are cut.
func shutdown(timeout time.Duration, g *grpc.Server, h *health.Server, hs *http.Server, log zerolog.Logger) {
	log.Info().Dur("timeout", timeout).Msg("shutting down")
	h.Shutdown() // Envoy's health check sees NOT_SERVING and stops sending
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn().Msg("streams still open at shutdown timeout; closing them")
		g.Stop()
		<-done
	}
	if err := hs.Shutdown(ctx); err != nil {
		hs.Close()
	}
}

// listenGRPC listens on host:port or on a Unix socket (unix:/path). A
// socket file left by a sidecar that did not stop cleanly (nobody answers on
// it) is removed first; a socket in use, or any other file at the path, is
// an error, never taken over. The listener removes its socket when it closes.
func listenGRPC(ctx context.Context, lc *net.ListenConfig, addr string) (net.Listener, error) {
	network, address := config.ListenNetwork(addr)
	if network == "unix" {
		if fi, err := os.Lstat(address); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("%s exists and is not a socket", address)
			}
			var d net.Dialer
			if conn, err := d.DialContext(ctx, "unix", address); err == nil {
				conn.Close()
				return nil, fmt.Errorf("%s is in use by another process", address)
			}
			if err := os.Remove(address); err != nil {
				return nil, fmt.Errorf("remove stale socket: %w", err)
			}
		}
	}
	return lc.Listen(ctx, network, address)
}
