package eventsink

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
}

func newEmitterMetrics(reg prometheus.Registerer, queueLen func() float64, sinks []string) *emitterMetrics {
	m := &emitterMetrics{
		emitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_events_emitted_total",
			Help: "Usage events accepted into the event queue.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "llm_proxy_events_dropped_total",
			Help: "Usage events dropped before the queue: queue full, or the emitter stopped.",
		}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_event_sink_errors_total",
			Help: "Failed writes of a batch of usage events to a sink, retries included, by sink.",
		}, []string{"sink"}),
		sinkWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_event_sink_written_total",
			Help: "Usage events written to a sink, by sink.",
		}, []string{"sink"}),
		sinkDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_event_sink_dropped_total",
			Help: "Usage events a sink never received: its retries ran out, or the drain at shutdown timed out. By sink.",
		}, []string{"sink"}),
	}
	for _, s := range sinks {
		m.sinkErrors.WithLabelValues(s)
		m.sinkWritten.WithLabelValues(s)
		m.sinkDropped.WithLabelValues(s)
	}
	if reg == nil {
		return m
	}
	m.emitted = registerCollector(reg, m.emitted)
	m.dropped = registerCollector(reg, m.dropped)
	m.sinkErrors = registerCollector(reg, m.sinkErrors)
	m.sinkWritten = registerCollector(reg, m.sinkWritten)
	m.sinkDropped = registerCollector(reg, m.sinkDropped)
	registerCollector(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "llm_proxy_events_queue_length",
		Help: "Usage events waiting in the queue for the sinks.",
	}, queueLen))
	return m
}

// registerCollector registers c with reg, or returns the collector already
// registered under its name.
func registerCollector[C prometheus.Collector](reg prometheus.Registerer, c C) C {
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
