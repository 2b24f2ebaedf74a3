package extproc

import (
	"context"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/usage"
)

// Outcomes recorded per stream, as metric labels and in the request log line.
const (
	outcomeForwarded = "forwarded"
	outcomeDenied    = "denied"
	outcomeError     = "error"
	outcomeAborted   = "aborted"
)

// stream is the state of one request. It lives exactly as long as the gRPC
// stream and is touched only by the goroutine running Process.
type stream struct {
	srv   *Server
	ctx   context.Context
	send  func(*extprocv3.ProcessingResponse) error // for interim messages only
	log   zerolog.Logger
	start time.Time

	requestID     string
	method        string
	path          string
	clientAddress string        // Envoy's view of the peer, from request attributes
	ttfb          time.Duration // until the response headers arrived
	route         *compiledRoute
	principal     authz.Principal
	outcome       string
	denial        *apiError
	status        int // upstream response status, once seen

	reqHeaders map[string]string

	// Cache (stream_cache.go).
	cacheStatus  string
	cacheKey     string
	cacheRelease func()
	capture      *cachefilter.Capture
	storeTTL     time.Duration
	storeHeaders map[string]string

	// Limits (stream_limits.go).
	limits      []ratelimit.Limit
	admission   *ratelimit.Admission
	reservation *ratelimit.Reservation

	// Usage (stream_usage.go).
	req           usage.Request
	reqBody       []byte // the JSON request, kept for a lazy prompt count
	promptTokens  int64  // valid when promptCounted
	promptCounted bool
	readBody      bool // the response body is read for usage
	sse           bool
	encoding      string // the response's Content-Encoding, when not identity
	images        int64  // images an Images API answer holds
	held          int64  // bytes taken from the server's buffer budget
	sseParser     usage.StreamParser
	injected      bool // include_usage was added on the client's behalf
	usageFilter   usageChunkFilter
	body          []byte // a JSON response, up to maxJSONResponse
	bodyTruncated bool
	complete      bool // the response body reached end_of_stream
	settled       bool
	usage         usage.Usage
	usageSource   usage.Source
	cost          int64 // micro-USD
}

func (s *Server) newStream(ctx context.Context) *stream {
	return &stream{srv: s, ctx: ctx, log: s.log, start: s.now(), outcome: outcomeAborted}
}

// handle answers one message from Envoy.
func (st *stream) handle(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	begin := st.srv.now()
	var phase string
	var resp *extprocv3.ProcessingResponse
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		phase = "request_headers"
		st.clientAddress = clientAddress(req)
		resp = st.onRequestHeaders(r.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		phase = "request_body"
		resp = st.onRequestBody(r.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		phase = "request_trailers"
		resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		phase = "response_headers"
		resp = st.onResponseHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		phase = "response_body"
		resp = st.onResponseBody(r.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		phase = "response_trailers"
		resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	default:
		// A newer Envoy may send a phase we do not know; answering nothing would
		// stall the request until message_timeout, so fail it clearly instead.
		phase = "unknown"
		resp = st.deny(errUnknownPhase)
	}
	st.srv.metrics.observePhase(phase, st.srv.now().Sub(begin))
	return resp
}

// onRequestHeaders is the gate every request passes: route allowlist, the
// proxy token, the request limits, then the key swap.
func (st *stream) onRequestHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	hdrs := headerMap(h.GetHeaders())
	st.reqHeaders = hdrs
	st.identify(hdrs)
	if err := st.checkRoute(hdrs); err != nil {
		return st.deny(err)
	}
	if err := st.authenticate(hdrs); err != nil {
		return st.deny(err)
	}
	if err := st.admit(); err != nil {
		return st.deny(err)
	}
	st.outcome = outcomeForwarded
	if st.route.Body != "json" {
		if hit := st.lookupCache(nil); hit != nil {
			return hit
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: st.upstreamHeaders(hdrs),
		}},
	}, ModeOverride: st.processingMode()}
}

// onRequestBody reads the JSON body (model, stream, max_tokens) and reserves
// its tokens and cost. Envoy buffers it whole on JSON routes.
func (st *stream) onRequestBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if st.outcome == outcomeForwarded && st.route != nil && st.route.Body == "json" {
		if !st.hold("request_body", int64(len(b.GetBody()))) {
			return st.deny(errOverloaded)
		}
		if len(b.GetBody()) > keepBodyMax {
			// Parsing, hashing and counting megabytes may outlast Envoy's
			// message_timeout on a busy sidecar: ask for more first.
			st.extendTimeout(tokenizeTimeout)
		}
		defer st.forgetBody()
		if err := st.readRequest(b.GetBody()); err != nil {
			return st.deny(err)
		}
		if err := st.checkDeferredPolicy(); err != nil {
			return st.deny(err)
		}
		if hit := st.lookupCache(b.GetBody()); hit != nil {
			return hit // before the reservation: a hit uses no tokens
		}
		if err := st.reserve(); err != nil {
			return st.deny(err)
		}
		if body := st.injectIncludeUsage(); body != nil {
			st.injected = true
			return replaceBody(body)
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
}

// onResponseHeaders adds the rate-limit headers and asks for the body when
// its usage must be read.
func (st *stream) onResponseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	st.ttfb = st.srv.now().Sub(st.start)
	hdrs := headerMap(h.GetHeaders())
	st.watchResponse(hdrs)
	st.purgeWritten()
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: slices.Concat(st.requestIDHeaders(hdrs), st.rateLimitHeaders(), st.watchCache(hdrs))},
		}},
	}}
	if st.readBody || st.capture != nil {
		resp.ModeOverride = st.responseBodyMode(hdrs)
	}
	return resp
}

// onResponseBody reads each chunk for usage and passes it on unchanged —
// unless llm-proxy asked for usage on the client's behalf, when the usage-only
// chunk is taken out.
func (st *stream) onResponseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	resp := &extprocv3.BodyResponse{}
	chunk, end := b.GetBody(), b.GetEndOfStream()
	st.renewSlot()
	seen := chunk // what the client receives of this chunk
	if st.readBody && st.injected && st.sse && st.encoding == "" {
		seen = st.usageFilter.filter(chunk, end)
		resp.Response = &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
			Mutation: &extprocv3.BodyMutation_Body{Body: seen},
		}}
	}
	// The cache keeps what this client got, so a hit replays no usage chunk
	// the client did not ask for (its key is the client's body, not ours).
	st.captureChunk(seen, end)
	if st.readBody {
		st.onResponseChunk(chunk, end)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: resp}}
}

// deny ends the request with an OpenAI-shaped error.
func (st *stream) deny(err error) *extprocv3.ProcessingResponse {
	st.auditDenial(err)
	ae := toAPIError(err)
	st.denial = ae
	st.outcome = outcomeDenied
	if ae.Status >= 500 {
		st.outcome = outcomeError
	}
	return ae.immediate(st.requestID)
}

// finish runs once per stream, however it ended: it settles what the
// response body did not (aborted streams, errors), and records the outcome.
// Its context is not the stream's, which is already cancelled when a client
// went away, but a short one of its own.
func (st *stream) finish() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(st.ctx), 2*time.Second)
	defer cancel()
	if st.outcome == outcomeForwarded && !st.complete && st.readBody {
		st.outcome = outcomeAborted
	}
	st.settle(ctx)
	st.releaseCache()
	st.drop(st.held)
	elapsed := st.srv.now().Sub(st.start)
	st.srv.metrics.observeDecision(st.outcome)
	if st.method == "" {
		return // never saw request headers (e.g. a health probe opening a stream)
	}
	if st.srv.events != nil {
		st.srv.events.Emit(st.event(elapsed))
	}
	ev := st.log.Info()
	if st.outcome == outcomeError {
		ev = st.log.Error()
		if st.denial != nil && st.denial.Err != nil {
			ev = ev.AnErr("error", st.denial.Err)
		}
	}
	// token_id and project_id are in st.log's context once authenticated.
	ev = ev.Str("outcome", st.outcome).Str("method", st.method).Str("path", st.path).Dur("duration", elapsed)
	if st.denial != nil {
		ev = ev.Int("status", st.denial.Status).Str("code", st.denial.Code).Str("reason", st.denial.reason())
	} else if st.status != 0 {
		ev = ev.Int("status", st.status)
	}
	if st.req.Model != "" {
		ev = ev.Str("model", st.req.Model).Bool("stream", st.req.Stream)
	}
	if st.settled && st.usage.TotalTokens > 0 {
		ev = ev.Int64("prompt_tokens", st.usage.PromptTokens).Int64("completion_tokens", st.usage.CompletionTokens).
			Str("usage_source", string(st.usageSource)).Int64("cost_micro_usd", st.cost)
	}
	ev.Msg("request")
}

func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

// extendTimeout asks Envoy to wait up to d for the answer to the message being
// processed (Envoy's message_timeout is short; max_message_timeout bounds d).
// It is sent before a step that may wait, such as a cache follower's.
func (st *stream) extendTimeout(d time.Duration) {
	if st.send == nil {
		return
	}
	if err := st.send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(d)}); err != nil {
		st.log.Debug().Err(err).Msg("extend message timeout")
	}
}
