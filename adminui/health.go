package adminui

import (
	"context"

	dto "github.com/prometheus/client_model/go"
)

// health is what the dashboard shows of the process's metrics: counts
// since this process started.
type health struct {
	Forwarded, Denied, Errors, Aborted int64 // llm_proxy_extproc_decisions_total by outcome
	LimiterDegraded                    bool  // llm_proxy_ratelimit_degraded
	LimiterBackendErrors               int64 // llm_proxy_ratelimit_backend_errors_total
	EventsQueued                       int64 // llm_proxy_events_queue_length
	EventsDropped                      int64 // llm_proxy_events_dropped_total
	EventsSpilled                      int64 // llm_proxy_event_sink_spilled_total, every sink
	AuditPending                       int64 // llm_proxy_audit_events_pending
	DeadLettered                       int64 // events dispatch gave up on, when DeadLetterKnown
	DeadLetterKnown                    bool  // there is a dead-letter count
	DeadLetterError                    bool  // there is one, but it could not be read
}

// health reads the metrics and the dead letters; nil when it has neither.
func (u *UI) health(ctx context.Context) *health {
	if u.metrics == nil && u.deadLetters == nil {
		return nil
	}
	h := &health{}
	if u.deadLetters != nil {
		n, err := u.deadLetters(ctx)
		if err != nil {
			u.log.Warn().Err(err).Msg("dashboard: dead letters not counted")
			h.DeadLetterError = true
		} else {
			h.DeadLettered, h.DeadLetterKnown = n, true
		}
	}
	if u.metrics == nil {
		return h
	}
	families, err := u.metrics.Gather()
	if err != nil {
		u.log.Warn().Err(err).Msg("dashboard: metrics not gathered")
		return h
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			v := int64(value(m))
			switch f.GetName() {
			case "llm_proxy_extproc_decisions_total":
				switch label(m, "outcome") {
				case "forwarded":
					h.Forwarded += v
				case "denied":
					h.Denied += v
				case "error":
					h.Errors += v
				case "aborted":
					h.Aborted += v
				}
			case "llm_proxy_ratelimit_degraded":
				h.LimiterDegraded = h.LimiterDegraded || v > 0
			case "llm_proxy_ratelimit_backend_errors_total":
				h.LimiterBackendErrors += v
			case "llm_proxy_events_queue_length":
				h.EventsQueued += v
			case "llm_proxy_events_dropped_total":
				h.EventsDropped += v
			case "llm_proxy_event_sink_spilled_total":
				h.EventsSpilled += v
			case "llm_proxy_audit_events_pending":
				h.AuditPending += v
			}
		}
	}
	return h
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
