package extproc

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// bufferBudget bounds the bytes all streams together hold in memory: request
// bodies kept past their phase, non-streamed responses read for usage, cache
// captures. Envoy hands the sidecar bodies of up to 8 MiB each, so without a
// bound a burst of large prompts on a slow upstream grows the heap without
// limit. Beyond the budget a request body is refused (a retryable 503) and a
// response is passed through without being read whole or cached — never an
// OOM. It is safe for concurrent use; a nil *bufferBudget is unlimited.
type bufferBudget struct {
	limit int64
	used  atomic.Int64
	peak  atomic.Int64

	refusals *prometheus.CounterVec
}

func newBufferBudget(limit int64, reg prometheus.Registerer) *bufferBudget {
	if limit <= 0 {
		return nil
	}
	b := &bufferBudget{limit: limit}
	if reg != nil {
		used := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "llm_proxy_buffered_bytes",
			Help: "Bytes of request bodies, read responses and cache captures held in memory now (bounded by LLM_PROXY_MAX_BUFFERED_BYTES).",
		}, func() float64 { return float64(b.used.Load()) })
		peak := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "llm_proxy_buffered_bytes_peak",
			Help: "The highest llm_proxy_buffered_bytes since the process started.",
		}, func() float64 { return float64(b.peak.Load()) })
		b.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llm_proxy_buffer_budget_exceeded_total",
			Help: "Times the buffered-bytes budget was full: request bodies refused (503), responses not read whole, captures dropped.",
		}, []string{"what"})
		reg.MustRegister(used, peak, b.refusals)
	}
	return b
}

// take reserves n bytes for what ("request_body", "response_body",
// "cache_capture"); false, with nothing taken, when they do not fit.
func (b *bufferBudget) take(what string, n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	for {
		used := b.used.Load()
		if used+n > b.limit {
			if b.refusals != nil {
				b.refusals.WithLabelValues(what).Inc()
			}
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			for peak := b.peak.Load(); used+n > peak && !b.peak.CompareAndSwap(peak, used+n); peak = b.peak.Load() {
			}
			return true
		}
	}
}

// give returns n bytes taken before.
func (b *bufferBudget) give(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// errOverloaded: the buffered-bytes budget is full.
var errOverloaded = errors.New("the proxy holds too many request bodies in memory right now")

// bufferHold is what one stream holds of the server's buffer budget. The
// stream takes from it as it keeps bodies and gives everything back in
// finish; a nil budget holds nothing and never refuses.
type bufferHold struct {
	budget *bufferBudget
	held   int64
}

// take takes n bytes for what (see bufferBudget.take); false, with nothing
// taken, when they do not fit.
func (h *bufferHold) take(what string, n int64) bool {
	if !h.budget.take(what, n) {
		return false
	}
	h.held += n
	return true
}

// give gives back n of the bytes held, at most all of them.
func (h *bufferHold) give(n int64) {
	n = min(n, h.held)
	h.budget.give(n)
	h.held -= n
}

// release gives back everything held.
func (h *bufferHold) release() { h.give(h.held) }
