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
//
// Beside its own series it keeps the OpenTelemetry GenAI semantic
// conventions' client metrics, named as an OTLP-to-Prometheus bridge names
// them, so GenAI dashboards work on llm-proxy's /metrics: token usage and
// operation duration by operation and model, and time to the first chunk of
// streams. Their labels are bounded: no project or token ids, and a model
// only as the upstream accepted it (see genAIModels).
type MetricsSink struct {
	requests *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	cost     *prometheus.CounterVec

	genAITokens     *prometheus.HistogramVec
	genAIDuration   *prometheus.HistogramVec
	genAIFirstChunk *prometheus.HistogramVec
}

// The conventions' advised bucket boundaries.
var (
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	chunkBuckets    = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
)

// genAILabels are the conventions' attributes, dots as underscores.
var genAILabels = []string{"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model"}

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
		genAITokens: metric.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_client_token_usage",
			Help:    "GenAI semantic conventions: input and output tokens per operation ({token}).",
			Buckets: tokenBuckets,
		}, append(genAILabels[:len(genAILabels):len(genAILabels)], "gen_ai_token_type"))),
		genAIDuration: metric.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_client_operation_duration_seconds",
			Help:    "GenAI semantic conventions: duration of each operation through the gateway, in seconds; error_type is the HTTP status of a failed one.",
			Buckets: durationBuckets,
		}, append(genAILabels[:len(genAILabels):len(genAILabels)], "error_type"))),
		genAIFirstChunk: metric.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gen_ai_client_operation_time_to_first_chunk_seconds",
			Help:    "GenAI semantic conventions: time from a streamed request to its first response chunk, in seconds.",
			Buckets: chunkBuckets,
		}, genAILabels)),
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
			m.genAI(ev)
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

// genAI records an operation in the conventions' metrics: requests the
// gateway forwarded or answered from its cache (not refusals, which never
// reached a model), on the GenAI paths.
func (m *MetricsSink) genAI(ev *llmproxyv1.UsageEvent) {
	op, ok := GenAIOperation(ev.GetPath())
	if !ok || ev.GetOutcome() == "denied" || ev.GetProjectId() == "" {
		return
	}
	reqModel, respModel := genAIModels(ev)
	labels := []string{op, GenAIProvider, reqModel, respModel}
	errorType := ""
	if st := ev.GetStatus(); st >= 400 || st == 0 {
		errorType = strconv.Itoa(int(st))
		if st == 0 {
			errorType = "aborted"
		}
	}
	m.genAIDuration.WithLabelValues(append(labels, errorType)...).Observe(ev.GetLatencyMs() / 1000)
	if ev.GetStream() && ev.GetTtfbMs() > 0 && errorType == "" {
		m.genAIFirstChunk.WithLabelValues(labels...).Observe(ev.GetTtfbMs() / 1000)
	}
	if u := ev.GetUsage(); u != nil && errorType == "" {
		m.genAITokens.WithLabelValues(append(labels, "input")...).Observe(float64(u.GetPromptTokens()))
		m.genAITokens.WithLabelValues(append(labels, "output")...).Observe(float64(u.GetCompletionTokens()))
	}
}

// genAIModels are the model labels of an event. A request model is any
// string a client writes, so it becomes a label only when the upstream
// accepted it (a 2xx answer names a model that exists); otherwise it is
// "_other". The response model is the one the upstream named, if any.
// Series then grow with the models a provider serves, not with what
// clients send.
func genAIModels(ev *llmproxyv1.UsageEvent) (request, response string) {
	if st := ev.GetStatus(); st < 200 || st >= 300 || ev.GetModel() == "" {
		return "_other", ""
	}
	return ev.GetModel(), ev.GetResponseModel()
}

// Close does nothing: the series stay registered.
func (m *MetricsSink) Close() error { return nil }
