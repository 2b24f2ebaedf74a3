package extproc

import (
	"time"

	"github.com/rs/zerolog"

	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// emitEvent hands the request's usage event to the emitter, if any.
func (st *stream) emitEvent(elapsed time.Duration) {
	if st.srv.events != nil {
		st.srv.events.Emit(st.event(elapsed))
	}
}

// event is the usage event of this request: one per request that reached the
// sidecar, forwarded or not, emitted from finish (so aborted streams have one
// too). The emitter never blocks.
func (st *stream) event(latency time.Duration) *llmproxyv1.UsageEvent {
	ev := &llmproxyv1.UsageEvent{
		Time:          timestamppb.New(st.start),
		RequestId:     st.requestID,
		ProjectId:     st.principal.ProjectID,
		TokenId:       st.principal.TokenID,
		Method:        st.method,
		Path:          st.path,
		Model:         st.req.Model,
		Status:        int32(st.status),
		Stream:        st.req.Stream,
		Outcome:       st.outcome,
		CacheStatus:   st.cache.status,
		LatencyMs:     ms(latency),
		TtfbMs:        ms(st.ttfb),
		ClientAddress: st.clientAddress,
		Aborted:       st.outcome == outcomeAborted,
		EndUser:       st.req.User,
		TraceId:       st.trace.traceID,
		SpanId:        st.trace.spanID,
		ParentSpanId:  st.trace.parentID,
		LimitDecision: st.limitDecision(),
		Capture:       st.captured(),
	}
	if st.capture.on || st.srv.tracing {
		s := st.summary()
		ev.ResponseModel, ev.FinishReasons = s.Model, s.FinishReasons
	}
	if st.denial != nil {
		ev.Status = int32(st.denial.Status)
		ev.ErrorCode = st.denial.Code
	}
	if st.usage.settled {
		ev.Usage = &llmproxyv1.Usage{
			PromptTokens: st.usage.used.PromptTokens, CompletionTokens: st.usage.used.CompletionTokens,
			CachedTokens: st.usage.used.CachedTokens, ReasoningTokens: st.usage.used.ReasoningTokens,
			TotalTokens: st.usage.used.TotalTokens,
		}
		ev.UsageSource = string(st.usage.source)
		ev.CostMicroUsd = st.usage.cost
		ev.CostUsd = float64(st.usage.cost) / 1e6
		if st.req.Model != "" || st.usage.cost > 0 { // a cost names its price table, a call's too
			ev.PriceVersion = st.srv.prices.Version
		}
	}
	return ev
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// logRequest writes the request's log line: its outcome, status, model and
// what it was settled at. token_id and project_id are in the logger's
// context once authenticated. Below level info only errors are logged, and
// nothing is built for the others.
func (st *stream) logRequest(elapsed time.Duration) {
	if st.outcome != outcomeError && st.srv.log.GetLevel() > zerolog.InfoLevel {
		return
	}
	ev := st.logger().Info()
	if st.outcome == outcomeError {
		ev = st.logger().Error()
		if st.denial != nil && st.denial.Err != nil {
			ev = ev.AnErr("error", st.denial.Err)
		}
	}
	ev = ev.Str("outcome", st.outcome).Str("method", st.method).Str("path", st.path).Dur("duration", elapsed)
	if st.denial != nil {
		ev = ev.Int("status", st.denial.Status).Str("code", st.denial.Code).Str("reason", st.denial.reason())
	} else if st.status != 0 {
		ev = ev.Int("status", st.status)
	}
	if st.req.Model != "" {
		ev = ev.Str("model", st.req.Model).Bool("stream", st.req.Stream)
	}
	if st.usage.settled && st.usage.used.TotalTokens > 0 {
		ev = ev.Int64("prompt_tokens", st.usage.used.PromptTokens).Int64("completion_tokens", st.usage.used.CompletionTokens).
			Str("usage_source", string(st.usage.source)).Int64("cost_micro_usd", st.usage.cost)
	}
	ev.Msg("request")
}
