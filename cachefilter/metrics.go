package cachefilter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/metric"
)

// Results of a lookup, the values of the result label.
const (
	resultHit   = "hit"
	resultMiss  = "miss"
	resultError = "error"
)

// metrics are the cache's Prometheus series. A nil *metrics records nothing.
type metrics struct {
	requests      *prometheus.CounterVec
	backendErrors prometheus.Counter
	coalesced     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		requests: metric.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_cache_requests_total",
			Help: "Cache lookups by result: hit, miss, or error (the backend failed; served as a miss).",
		}, []string{"result"})),
		backendErrors: metric.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_cache_backend_errors_total",
			Help: "Cache backend calls (get, set, purge, lock) that failed or timed out.",
		})),
		coalesced: metric.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_cache_coalesced_total",
			Help: "Misses answered by waiting for an identical request's fill instead of going upstream.",
		})),
	}
	// Expose every result from the start, so rates are defined at once.
	for _, r := range []string{resultHit, resultMiss, resultError} {
		m.requests.WithLabelValues(r)
	}
	return m
}

func (m *metrics) lookup(result string) {
	if m != nil {
		m.requests.WithLabelValues(result).Inc()
	}
}

func (m *metrics) backendError() {
	if m != nil {
		m.backendErrors.Inc()
	}
}

func (m *metrics) coalesce() {
	if m != nil {
		m.coalesced.Inc()
	}
}
