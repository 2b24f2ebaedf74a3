package extproc

import (
	"context"
	"fmt"
	"strings"

	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/usage"
)

// maxJSONResponse bounds how much of a non-streamed response is kept to read
// its usage; a larger one is settled with the estimate.
const maxJSONResponse = 8 << 20

// readRequest reads what limits and accounting need from a JSON body.
func (st *stream) readRequest(body []byte) error {
	req, err := usage.ParseRequest(body)
	if err != nil {
		return &badRequestError{err: err}
	}
	st.req, st.reqBody = req, body
	return nil
}

// prompt is the tiktoken estimate of the prompt, counted on first need:
// tokenizing is the costliest step of a request, and most requests need it
// only when a token limit or budget applies, or the response lacks usage.
func (st *stream) prompt() int64 {
	if !st.promptCounted {
		st.promptTokens = st.srv.tokenizer.CountPrompt(st.req.Model, st.reqBody)
		st.promptCounted = true
	}
	return st.promptTokens
}

// watchResponse decides, from the response headers, how the body is read for
// usage: SSE incrementally, JSON whole (bounded). Only complete 200s carry
// usage worth reading.
func (st *stream) watchResponse(h map[string]string) {
	st.status = statusOf(h)
	if st.status != 200 || st.req.Model == "" {
		return
	}
	st.readBody = true
	st.sse = strings.HasPrefix(h["content-type"], "text/event-stream")
}

// onResponseChunk feeds one body chunk to the usage reader; Envoy forwards
// the chunk unchanged once we answer.
func (st *stream) onResponseChunk(chunk []byte, end bool) {
	if st.sse {
		st.sseParser.Write(chunk)
	} else if len(st.body)+len(chunk) <= maxJSONResponse {
		st.body = append(st.body, chunk...)
	} else {
		st.bodyTruncated = true
	}
	if end {
		st.complete = true
		st.settle(st.ctx)
	}
}

// settle replaces the reservation with what the request really used, records
// it in the usage roll-up, and releases the concurrency slot. It runs once:
// at the end of the response body, or from finish when the stream ended
// without one (client abort, upstream error, denial after admission).
func (st *stream) settle(ctx context.Context) {
	if st.settled {
		return
	}
	st.settled = true
	if st.admission != nil {
		defer st.admission.Done(ctx)
	}
	u, source := st.measure()
	var cost int64
	if st.req.Model != "" {
		cost, _ = st.srv.prices.Cost(st.req.Model, u)
	}
	st.usage, st.usageSource, st.cost = u, source, cost
	if st.reservation != nil {
		if err := st.reservation.Settle(ctx, u.TotalTokens, cost); err != nil {
			st.log.Warn().Err(err).Msg("settle reservation")
		}
	}
	if st.forwarded() {
		st.srv.usage.Record(st.srv.now(), store.UsageRecord{
			ProjectID: st.principal.ProjectID, Model: st.req.Model, PriceVersion: st.srv.prices.Version,
			Requests: 1, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
			CachedTokens: u.CachedTokens, ReasoningTokens: u.ReasoningTokens, CostMicroUSD: cost,
		})
	}
}

// forwarded reports whether the request went upstream.
func (st *stream) forwarded() bool { return st.principal.TokenID != "" && st.denial == nil }

// measure is the request's usage and where the figures come from: the
// provider's own usage when the response carried it; else a tokenizer count
// of what was streamed (aborted streams, streams without include_usage); else
// the prompt estimate. A request denied here, or answered with an error, used
// nothing.
func (st *stream) measure() (usage.Usage, usage.Source) {
	switch {
	case !st.forwarded() || st.status >= 300 || st.cacheStatus == cacheHit:
		return usage.Usage{}, usage.SourceProvider
	case st.readBody && st.sse:
		if u, ok := st.sseParser.Usage(); ok {
			return u, usage.SourceProvider
		}
		text := st.sseParser.Text()
		completion := st.srv.tokenizer.CountText(st.req.Model, text)
		if st.sseParser.Truncated() && len(text) > 0 {
			// Only the first part of a very long stream is kept: scale.
			completion = completion * st.sseParser.TextBytes() / int64(len(text))
		}
		return usage.Usage{PromptTokens: st.prompt(), CompletionTokens: completion, TotalTokens: st.prompt() + completion}, usage.SourceTokenizer
	case st.readBody && !st.bodyTruncated:
		if u, ok := usage.ParseUsage(st.body); ok {
			return u, usage.SourceProvider
		}
	}
	// A success without readable usage, or no answer at all (the client left
	// first): the upstream may have done the work, so count the prompt.
	return usage.Usage{PromptTokens: st.prompt(), TotalTokens: st.prompt()}, usage.SourceEstimated
}

// badRequestError: the request body is not what the endpoint accepts.
type badRequestError struct{ err error }

func (e *badRequestError) Error() string { return fmt.Sprintf("bad request body: %v", e.err) }
func (e *badRequestError) Unwrap() error { return e.err }
