package eventsink

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/metric"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// MetricsSink turns usage events into Prometheus series for dashboards and
// alerts: requests by status and outcome, tokens and spend by project and
// model. It reads what every other sink gets, so the numbers are the ones
// the events (and the bill) carry. Series appear when the events are
// written, a moment after their requests end. Its Write never fails.
type MetricsSink struct {
	requests *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	cost     *prometheus.CounterVec
}

// NewMetricsSink registers the sink's series with reg.
func NewMetricsSink(reg prometheus.Registerer) *MetricsSink {
	return &MetricsSink{
		requests: metric.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_requests_total",
			Help: "Requests that reached the sidecar, by the HTTP status their client got and their outcome.",
		}, []string{"code", "outcome"})),
		tokens: metric.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_tokens_total",
			Help: "Tokens used, by project, model and kind (prompt, completion, cached: the prompt tokens read from OpenAI's cache).",
		}, []string{"project_id", "model", "kind"})),
		cost: metric.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_cost_usd_total",
			Help: "What requests cost in USD at the price table's rates, by project and model.",
		}, []string{"project_id", "model"})),
	}
}

// Name is the sink's name in the emitter's metrics.
func (m *MetricsSink) Name() string { return "metrics" }

// Write counts events.
func (m *MetricsSink) Write(_ context.Context, events []*llmproxyv1.UsageEvent) error {
	for _, ev := range events {
		// A settlement (SETTLE) is no request of its own; its usage and cost are.
		if ev.GetMethod() != "SETTLE" {
			m.requests.WithLabelValues(strconv.Itoa(int(ev.GetStatus())), ev.GetOutcome()).Inc()
		}
		u := ev.GetUsage()
		if ev.GetProjectId() == "" || (u == nil && ev.GetCostMicroUsd() == 0) {
			continue
		}
		for kind, n := range map[string]int64{"prompt": u.GetPromptTokens(), "completion": u.GetCompletionTokens(), "cached": u.GetCachedTokens()} {
			if n > 0 {
				m.tokens.WithLabelValues(ev.GetProjectId(), ev.GetModel(), kind).Add(float64(n))
			}
		}
		if c := ev.GetCostMicroUsd(); c > 0 {
			m.cost.WithLabelValues(ev.GetProjectId(), ev.GetModel()).Add(float64(c) / 1e6)
		}
	}
	return nil
}

// Close does nothing: the series stay registered.
func (m *MetricsSink) Close() error { return nil }
