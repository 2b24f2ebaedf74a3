package extproc

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

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
		CacheStatus:   st.cacheStatus,
		LatencyMs:     ms(latency),
		TtfbMs:        ms(st.ttfb),
		ClientAddress: st.clientAddress,
		Aborted:       st.outcome == outcomeAborted,
	}
	if st.denial != nil {
		ev.Status = int32(st.denial.Status)
		ev.ErrorCode = st.denial.Code
	}
	if st.settled {
		ev.Usage = &llmproxyv1.Usage{
			PromptTokens: st.usage.PromptTokens, CompletionTokens: st.usage.CompletionTokens,
			CachedTokens: st.usage.CachedTokens, ReasoningTokens: st.usage.ReasoningTokens,
			TotalTokens: st.usage.TotalTokens,
		}
		ev.UsageSource = string(st.usageSource)
		ev.CostMicroUsd = st.cost
		ev.CostUsd = float64(st.cost) / 1e6
		if st.req.Model != "" {
			ev.PriceVersion = st.srv.prices.Version
		}
	}
	return ev
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
