package authz

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/metric"
)

// metrics are the Authorizer's Prometheus series. The counters always exist;
// they are registered only when [Options.Registerer] is set.
type metrics struct {
	loads           prometheus.Counter
	negativeHits    prometheus.Counter
	staleLoads      prometheus.Counter
	gated           prometheus.Counter
	auditSuppressed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		if reg != nil {
			c = metric.Register(reg, c)
		}
		return c
	}
	return &metrics{
		loads: counter("llm_proxy_authz_token_loads_total",
			"Token lookups in the store (validation cache misses)."),
		negativeHits: counter("llm_proxy_authz_negative_cache_hits_total",
			"Tokens refused as unknown from the negative cache, without a store lookup."),
		staleLoads: counter("llm_proxy_authz_stale_loads_total",
			"Token lookups not cached because an invalidation happened while they ran."),
		gated: counter("llm_proxy_authz_failures_gated_total",
			"Requests refused (429) because their client address failed to authenticate too often."),
		auditSuppressed: counter("llm_proxy_authz_denials_audit_suppressed_total",
			"Denials not audited one by one, only counted in a summary."),
	}
}
