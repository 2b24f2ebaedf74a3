package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/metric"
)

// metrics are the limiter's Prometheus series. A nil *metrics records
// nothing. Labels are fixed sets (kind, mode), never scopes.
type metrics struct {
	degraded      prometheus.Gauge
	backendErrors prometheus.Counter
	denials       *prometheus.CounterVec
	fallbacks     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		degraded: metric.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "llm_proxy_ratelimit_degraded",
			Help: "1 while the Redis rate limiter is failing and limits follow their failure modes, else 0.",
		})),
		backendErrors: metric.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_backend_errors_total",
			Help: "Redis rate-limit calls (including recovery probes) that failed or timed out.",
		})),
		denials: metric.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_denials_total",
			Help: "Requests refused by a rate limit, by kind.",
		}, []string{"kind"})),
		fallbacks: metric.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_ratelimit_fallbacks_total",
			Help: "Limit checks answered by a failure mode (closed, open, local) instead of Redis, by kind and mode.",
		}, []string{"kind", "mode"})),
	}
	return m
}

func (m *metrics) setDegraded(on bool) {
	if m == nil {
		return
	}
	if on {
		m.degraded.Set(1)
	} else {
		m.degraded.Set(0)
	}
}

func (m *metrics) backendError() {
	if m != nil {
		m.backendErrors.Inc()
	}
}

func (m *metrics) denied(k Kind) {
	if m != nil {
		m.denials.WithLabelValues(string(k)).Inc()
	}
}

func (m *metrics) fallback(k Kind, mode FailureMode) {
	if m != nil {
		m.fallbacks.WithLabelValues(string(k), string(mode)).Inc()
	}
}
