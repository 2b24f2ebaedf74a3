package eventsink

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/metric"
)

// emitterMetrics are the Prometheus series of an [Emitter]. They always
// exist (Emit updates them unconditionally) and are registered only when a
// registry is given. The sink label takes a fixed set of values: the names
// of the configured sinks.
type emitterMetrics struct {
	emitted     prometheus.Counter
	dropped     prometheus.Counter
	sinkErrors  *prometheus.CounterVec
	sinkWritten *prometheus.CounterVec
	sinkDropped *prometheus.CounterVec
	sinkSpilled *prometheus.CounterVec
}

func newEmitterMetrics(reg prometheus.Registerer, queueLen func() float64, sinks []string) *emitterMetrics {
	m := &emitterMetrics{
		emitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_events_emitted_total",
			Help: "Usage events accepted into the event queue.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_events_dropped_total",
			Help: "Usage events lost, each counted once: refused by the queue (full, or the emitter stopped), not encodable, or neither written to a sink nor spilled to its spill file. The one series to alert on.",
		}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_event_sink_errors_total",
			Help: "Failed writes of a batch of usage events to a sink, retries included, by sink (a diagnostic: the events are retried or spilled).",
		}, []string{"sink"}),
		sinkWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_event_sink_written_total",
			Help: "Usage events written to a sink, by sink.",
		}, []string{"sink"}),
		sinkDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_event_sink_dropped_total",
			Help: "Usage events lost for a sink: neither written to it nor spilled to its spill file, or not encodable. By sink; llm_proxy_events_dropped_total counts each lost event once.",
		}, []string{"sink"}),
		sinkSpilled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_event_sink_spilled_total",
			Help: "Usage events a sink did not take in time (queue 90% full, or shutdown) and that were appended to its spill file instead, by sink.",
		}, []string{"sink"}),
	}
	for _, s := range sinks {
		m.sinkErrors.WithLabelValues(s)
		m.sinkWritten.WithLabelValues(s)
		m.sinkDropped.WithLabelValues(s)
		m.sinkSpilled.WithLabelValues(s)
	}
	if reg == nil {
		return m
	}
	m.emitted = metric.Register(reg, m.emitted)
	m.dropped = metric.Register(reg, m.dropped)
	m.sinkErrors = metric.Register(reg, m.sinkErrors)
	m.sinkWritten = metric.Register(reg, m.sinkWritten)
	m.sinkDropped = metric.Register(reg, m.sinkDropped)
	m.sinkSpilled = metric.Register(reg, m.sinkSpilled)
	metric.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "llm_proxy_events_queue_length",
		Help: "Usage events waiting in the queue for the sinks.",
	}, queueLen))
	return m
}
