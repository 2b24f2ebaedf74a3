package extproc

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ext_proc server's Prometheus series. A nil *Metrics records
// nothing, so tests need not build one.
type Metrics struct {
	messages  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	decisions *prometheus.CounterVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_extproc_messages_total",
			Help: "ext_proc messages received from Envoy, by phase.",
		}, []string{"phase"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "llm_proxy_extproc_phase_duration_seconds",
			Help: "Time spent answering one ext_proc message, by phase.",
			// Most answers take microseconds; a cold store lookup takes milliseconds.
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"phase"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_extproc_decisions_total",
			Help: "Requests by final outcome: forwarded, denied, error, aborted.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.messages, m.latency, m.decisions)
	return m
}

func (m *Metrics) observePhase(phase string, d time.Duration) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(phase).Inc()
	m.latency.WithLabelValues(phase).Observe(d.Seconds())
}

func (m *Metrics) observeDecision(outcome string) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(outcome).Inc()
}
