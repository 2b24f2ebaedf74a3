package extproc

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/llm-proxy/llm-proxy/config"
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

// keepBodyMax is the largest request body kept past its phase (for a lazy
// prompt count); a larger one is counted at once and let go, so a slow
// upstream does not keep megabytes of prompt alive per request.
const keepBodyMax = 64 << 10

// tokenizeTimeout is what Envoy is asked to wait for the answer to a large
// body's message while its prompt is counted (within max_message_timeout,
// 10s in envoy/envoy.yaml).
const tokenizeTimeout = 9 * time.Second

// forgetBody lets a large request body go once its phase is done, counting
// its prompt first if it was not yet: later phases need only the count.
func (st *stream) forgetBody() {
	if len(st.reqBody) <= keepBodyMax {
		return
	}
	if !st.promptCounted && st.denial == nil && st.cacheStatus != cacheHit {
		st.prompt() // the message's timeout was extended for it (onRequestBody)
	}
	st.drop(int64(len(st.reqBody)))
	st.reqBody = nil
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
	if st.status != 200 {
		return
	}
	switch {
	case st.charge() == config.ChargeBatch || st.charge() == config.ChargeSettles:
		st.readBody = st.srv.deferred != nil // the object says what to settle, and when
	case st.charge() == config.ChargeImages || st.charge() == config.ChargeAudio:
		st.readBody = true // usage, seconds, image count; uploads name their model nowhere else
	case st.req.Model != "" && st.charge() != config.ChargeSpeech:
		st.readBody = true
		st.sse = strings.HasPrefix(h["content-type"], "text/event-stream")
	}
	// Envoy strips the client's Accept-Encoding, so OpenAI answers in
	// identity; an upstream (or a proxy before it) that compresses anyway is
	// read whole and decoded at the end.
	if enc := strings.ToLower(strings.TrimSpace(h["content-encoding"])); enc != "" && enc != "identity" {
		st.encoding = enc
	}
}

// onResponseChunk feeds one body chunk to the usage reader; Envoy forwards
// the chunk unchanged once we answer.
func (st *stream) onResponseChunk(chunk []byte, end bool) {
	if st.sse && st.encoding == "" {
		st.sseParser.Write(chunk)
	} else if len(st.body)+len(chunk) <= maxJSONResponse && st.hold("response_body", int64(len(chunk))) {
		st.body = append(st.body, chunk...)
	} else {
		st.bodyTruncated = true
	}
	if end {
		st.complete = true
		st.decodeBody()
		st.settle(st.ctx)
	}
}

// decodeBody decodes a compressed response read whole: a JSON body in place,
// a stream into the SSE parser. Undecodable bytes count as unreadable usage
// (the prompt estimate is charged).
func (st *stream) decodeBody() {
	if st.encoding == "" || st.bodyTruncated {
		return
	}
	b, err := decode(st.encoding, st.body, maxJSONResponse)
	if err != nil {
		st.log.Warn().Err(err).Str("content_encoding", st.encoding).Msg("compressed response not decoded: usage estimated")
		st.bodyTruncated = true
		return
	}
	if st.sse {
		st.sseParser.Write(b)
		st.body = nil
		return
	}
	st.body = b
}

// decode undoes a Content-Encoding (gzip, br, deflate), reading at most
// limit decoded bytes.
func decode(encoding string, b []byte, limit int64) ([]byte, error) {
	var r io.Reader
	switch encoding {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "deflate":
		r = flate.NewReader(bytes.NewReader(b))
	default:
		return nil, fmt.Errorf("unknown content-encoding %q", encoding)
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("decoded body over %d bytes", limit)
	}
	return out, nil
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
	st.observeJob(ctx)
	if st.deferSettlement(ctx) {
		st.usageSource = usageDeferred
		return
	}
	u, source := st.measure()
	var cost int64
	if st.req.Model != "" && source != sourceFree {
		cost = st.price(u)
	}
	if source == sourceFree {
		source = usage.SourceProvider
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
		return usage.Usage{}, sourceFree
	case st.charge() == config.ChargeSpeech:
		return usage.Usage{}, usage.SourceProvider // priced by its input, known up front
	case st.charge() == config.ChargeImages || st.charge() == config.ChargeAudio:
		if st.readBody && !st.bodyTruncated {
			return st.unitUsage(), usage.SourceProvider
		}
		if st.charge() == config.ChargeImages && st.complete {
			// An answer too large to read (base64 images): OpenAI returns n
			// images on success; an image model priced in tokens is charged
			// its worst case.
			st.images = max(st.req.N, 1)
			if _, perImage := st.srv.prices.ImageCost(st.req.Model, st.req.Size, st.req.Quality, 1); !perImage {
				out := maxImageOutputTokens * st.images
				return usage.Usage{PromptTokens: st.prompt(), CompletionTokens: out, TotalTokens: st.prompt() + out}, usage.SourceEstimated
			}
			return usage.Usage{}, usage.SourceEstimated
		}
		return usage.Usage{}, sourceFree // an upload whose answer was not read: nothing to price
	case st.charge() != config.ChargeTokens:
		return usage.Usage{}, sourceFree // free, or charged later (batches)
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

// sourceFree marks, inside settle, usage that costs nothing whatever the
// model's prices (a denial, an error, a cache hit, a free route); events show
// it as provider usage.
const sourceFree usage.Source = "free"

// badRequestError: the request body is not what the endpoint accepts.
type badRequestError struct{ err error }

func (e *badRequestError) Error() string { return fmt.Sprintf("bad request body: %v", e.err) }
func (e *badRequestError) Unwrap() error { return e.err }
