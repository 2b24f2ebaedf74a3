package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/llm-proxy/llm-proxy/eventsink/dispatch"
)

// runDispatchWithMetrics runs d until ctx ends while serving its counts on
// addr's /metrics (LLM_PROXY_DISPATCH_METRICS_ADDR): what an alert on
// dead letters growing reads.
func runDispatchWithMetrics(ctx context.Context, addr string, d *dispatch.Dispatcher) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range []struct {
		name, help string
		value      func(dispatch.Stats) int64
	}{
		{"llm_proxy_dispatch_delivered_total", "Stream entries every backend accepted, acknowledged.", func(s dispatch.Stats) int64 { return s.Delivered }},
		{"llm_proxy_dispatch_dead_lettered_total", "Stream entries copied to the dead-letter stream.", func(s dispatch.Stats) int64 { return s.DeadLettered }},
		{"llm_proxy_dispatch_claimed_total", "Stream entries taken over from idle consumers.", func(s dispatch.Stats) int64 { return s.Claimed }},
		{"llm_proxy_dispatch_retries_total", "Delivery rounds after the first one of a batch.", func(s dispatch.Stats) int64 { return s.Retries }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.value(d.Stats())) }))
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("LLM_PROXY_DISPATCH_METRICS_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// The counts stay readable until the dispatcher has stopped.
		err := d.Run(gctx)
		srv.Close()
		return err
	})
	return g.Wait()
}
