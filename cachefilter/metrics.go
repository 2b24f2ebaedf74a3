package cachefilter

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_cache_requests_total",
			Help: "Cache lookups by result: hit, miss, or error (the backend failed; served as a miss).",
		}, []string{"result"})),
		backendErrors: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_cache_backend_errors_total",
			Help: "Cache backend calls (get, set, purge, lock) that failed or timed out.",
		})),
		coalesced: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
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

// register registers c with reg, or returns the collector already registered
// under its name (several caches may share one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a name clash with another kind of series: a programming error
	}
	return c
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
