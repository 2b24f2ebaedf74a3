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

// usageState is what the usage feature keeps of one stream: the request body
// until its prompt is counted, how the response body is read, and what the
// request was settled at.
type usageState struct {
	reqBody       []byte // the JSON request, kept for a lazy prompt count
	promptTokens  int64  // valid when promptCounted
	promptCounted bool

	read      bool // the response body is read for usage
	sse       bool
	encoding  string // the response's Content-Encoding, when not identity
	parser    usage.StreamParser
	body      []byte // a JSON response, up to maxJSONResponse
	truncated bool   // the body was not kept whole (too large, or undecodable)
	complete  bool   // the response body reached end_of_stream

	settled bool
	used    usage.Usage
	source  usage.Source
	cost    int64 // micro-USD
}

// cutShort reports whether the response body was being read and did not
// reach its end: the client (or the upstream) went away mid-response.
func (u *usageState) cutShort() bool { return u.read && !u.complete }

// maxJSONResponse bounds how much of a non-streamed response is kept to read
// its usage; a larger one is settled with the estimate.
const maxJSONResponse = 8 << 20

// readRequest reads what limits and accounting need from a JSON body, and
// keeps the body for a lazy prompt count.
func (st *stream) readRequest(body []byte) error {
	if len(body) > keepBodyMax {
		// Parsing, hashing and counting megabytes may outlast Envoy's
		// message_timeout on a busy sidecar: ask for more first.
		st.extendTimeout(tokenizeTimeout)
	}
	req, err := usage.ParseRequest(body)
	if err != nil {
		return &badRequestError{err: err}
	}
	st.req, st.usage.reqBody = req, body
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
	if len(st.usage.reqBody) <= keepBodyMax {
		return
	}
	if !st.usage.promptCounted && st.denial == nil && st.cache.status != cacheHit {
		st.prompt() // the message's timeout was extended for it (readRequest)
	}
	st.buffers.give(int64(len(st.usage.reqBody)))
	st.usage.reqBody = nil
}

// prompt is the tiktoken estimate of the prompt, counted on first need:
// tokenizing is the costliest step of a request, and most requests need it
// only when a token limit or budget applies, or the response lacks usage.
func (st *stream) prompt() int64 {
	if !st.usage.promptCounted {
		st.awaitTokenizer()
		st.usage.promptTokens = st.srv.tokenizer.CountPrompt(st.req.Model, st.usage.reqBody)
		st.usage.promptCounted = true
	}
	return st.usage.promptTokens
}

// awaitTokenizer asks Envoy to wait longer for this message when the count
// about to run must first load its encoding (usage.Tokenizer loads each at
// its first use): on a fresh sidecar under load that can outlast Envoy's
// message_timeout.
func (st *stream) awaitTokenizer() {
	if !st.srv.tokenizer.Loaded(st.req.Model) {
		st.extendTimeout(tokenizeTimeout)
	}
}

// watchResponse decides, from the response headers, how the body is read for
// usage: SSE incrementally, JSON whole (bounded). Only complete 200s carry
// usage worth reading.
func (st *stream) watchResponse(h headers) {
	if st.status != 200 {
		return
	}
	switch {
	case st.charge() == config.ChargeBatch || st.charge() == config.ChargeSettles:
		st.usage.read = st.srv.deferred != nil // the object says what to settle, and when
	case st.charge() == config.ChargeImages || st.charge() == config.ChargeAudio:
		st.usage.read = true // usage, seconds, image count; uploads name their model nowhere else
	case st.req.Model != "" && st.charge() == config.ChargeTokens: // free routes are not read
		st.usage.read = true
		st.usage.sse = strings.HasPrefix(h.get("content-type"), "text/event-stream")
	}
	// Envoy strips the client's Accept-Encoding, so OpenAI answers in
	// identity; an upstream (or a proxy before it) that compresses anyway is
	// read whole and decoded at the end.
	if enc := strings.ToLower(strings.TrimSpace(h.get("content-encoding"))); enc != "" && enc != "identity" {
		st.usage.encoding = enc
	}
}

// readUsage feeds one body chunk to the usage reader, when the body is read
// for usage; Envoy forwards the chunk once we answer.
func (st *stream) readUsage(chunk []byte, end bool) {
	if !st.usage.read {
		return
	}
	if st.usage.sse && st.usage.encoding == "" {
		st.usage.parser.Write(chunk)
	} else if len(st.usage.body)+len(chunk) <= maxJSONResponse && st.buffers.take("response_body", int64(len(chunk))) {
		st.usage.body = append(st.usage.body, chunk...)
	} else {
		st.usage.truncated = true
	}
	if end {
		st.usage.complete = true
		st.decodeBody()
		st.settle(st.ctx)
	}
}

// decodeBody decodes a compressed response read whole: a JSON body in place,
// a stream into the SSE parser. Undecodable bytes count as unreadable usage
// (the prompt estimate is charged).
func (st *stream) decodeBody() {
	if st.usage.encoding == "" || st.usage.truncated {
		return
	}
	b, err := decode(st.usage.encoding, st.usage.body, maxJSONResponse)
	if err != nil {
		st.logger().Warn().Err(err).Str("content_encoding", st.usage.encoding).Msg("compressed response not decoded: usage estimated")
		st.usage.truncated = true
		return
	}
	if st.usage.sse {
		st.usage.parser.Write(b)
		st.usage.body = nil
		return
	}
	st.usage.body = b
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
	if st.usage.settled {
		return
	}
	st.usage.settled = true
	defer st.limits.admission.Done(ctx) // frees the concurrency slot; nil-safe
	st.observeJob(ctx)
	if st.deferSettlement(ctx) {
		st.usage.source = usageDeferred
		return
	}
	u, source := st.measure()
	var cost int64
	if (st.req.Model != "" || st.charge() == config.ChargeCall) && source != sourceFree {
		cost = st.price(u)
	}
	if source == sourceFree {
		source = usage.SourceProvider
	}
	st.usage.used, st.usage.source, st.usage.cost = u, source, cost
	st.settleReservation(ctx, u.TotalTokens, cost)
	st.recordUsage()
}

// recordUsage adds an authenticated request to its project's usage roll-up:
// as a request when it went upstream, as an error when its client got an
// error status (store.UsageRecord says which count what). A refusal is
// recorded with nothing but its error.
func (st *stream) recordUsage() {
	if st.principal.TokenID == "" {
		return // refused before authentication: no project to count it against
	}
	var requests, failed int64
	if st.forwarded() {
		requests = 1
	}
	if st.denial != nil || st.status >= 400 { // the status the usage event carries
		failed = 1
	}
	u := st.usage.used
	st.srv.usage.Record(st.srv.now(), store.UsageRecord{
		ProjectID: st.principal.ProjectID, Model: st.req.Model, PriceVersion: st.srv.prices.Version,
		Requests: requests, Errors: failed, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
		CachedTokens: u.CachedTokens, ReasoningTokens: u.ReasoningTokens, CostMicroUSD: st.usage.cost,
	})
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
	case !st.forwarded() || st.status >= 300 || st.cache.status == cacheHit:
		return usage.Usage{}, sourceFree
	case st.charge() == config.ChargeSpeech || st.charge() == config.ChargeCall:
		return usage.Usage{}, usage.SourceProvider // priced by its input or per call, known up front
	case st.charge() == config.ChargeImages || st.charge() == config.ChargeAudio:
		return st.measureUnits()
	case st.charge() != config.ChargeTokens:
		return usage.Usage{}, sourceFree // free, or charged later (batches)
	case st.usage.read && st.usage.sse:
		if u, ok := st.usage.parser.Usage(); ok {
			return u, usage.SourceProvider
		}
		text := st.usage.parser.Text()
		st.awaitTokenizer()
		completion := st.srv.tokenizer.CountText(st.req.Model, text)
		if st.usage.parser.Truncated() && len(text) > 0 {
			// Only the first part of a very long stream is kept: scale.
			completion = completion * st.usage.parser.TextBytes() / int64(len(text))
		}
		return usage.Usage{PromptTokens: st.prompt(), CompletionTokens: completion, TotalTokens: st.prompt() + completion}, usage.SourceTokenizer
	case st.usage.read && !st.usage.truncated:
		if u, ok := usage.ParseUsage(st.usage.body); ok {
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
