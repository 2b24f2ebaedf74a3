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
//
// Its first fields are the request as the gate establishes it and what
// became of it: every feature reads them. Each feature keeps the rest of its
// state in a small type of its own, declared in its file and written only by
// its own steps (others may read it). The phase machine (this file) creates
// them with the stream, calls their steps in each phase, and finishes them
// in finish:
//
//	file                     state              steps
//	stream_auth.go           route, principal   checkRoute, authenticate
//	stream_limits.go         limitState         admit, reserve, renewSlot, rateLimitHeaders, settleReservation
//	stream_cache.go          cacheState         lookupCache, purgeWritten, watchCache, captureChunk; release
//	stream_usage.go          usageState         readRequest, forgetBody, watchResponse, readUsage; settle
//	stream_units.go          unitState          estimate (from reserve); measureUnits, price (from settle)
//	stream_include_usage.go  includeUsageState  injectIncludeUsage, removeInjectedUsage
//	stream_deferred.go       —                  checkDeferredPolicy, estimateBatch; deferSettlement, observeJob
//	stream_rules.go          rulesState         checkRules, applyRules, checkBatchModels, filterModelList; checkBatchLine (from estimateBatch)
//	stream_capture.go        captureState       startCapture, keepRequest, watchCapture, captureResponse; captured (from event)
//	stream_trace.go          traceState         startTrace, traceHeader (from upstreamHeaders)
//	stream_cors.go           corsState          preflight, corsHeaders, withCORS (from handle)
//	stream_audit.go          —                  auditDenial (from deny)
//	stream_events.go         —                  emitEvent, logRequest (from finish)
//	stream_mode.go           —                  processingMode, responseBodyMode
//	budget.go                bufferHold         take, give; release
//
// A new feature is one new file — its state type and its steps — and one
// field here, plus one step line in each phase it takes part in. The state
// types are held by value, so they cost no allocation of their own, and no
// step goes through an interface or a map per chunk.
type stream struct {
	srv   *Server
	ctx   context.Context
	send  func(*extprocv3.ProcessingResponse) error // for interim messages only
	start time.Time

	// log is made by logger at the first line the request logs; logReady
	// says whether it is current.
	log      zerolog.Logger
	logReady bool

	// The request (headers.go, stream_auth.go, stream_usage.go's readRequest).
	requestID     string
	method        string
	path          string
	clientAddress string // Envoy's view of the peer, from request attributes
	reqHeaders    headers
	route         *compiledRoute
	principal     authz.Principal
	req           usage.Request // what a JSON body says (model, stream, max_tokens…)

	// What became of it.
	outcome string
	denial  *apiError
	status  int           // upstream response status (or a cache hit's), once seen
	ttfb    time.Duration // until the response headers arrived

	// Each feature's own state.
	limits       limitState        // stream_limits.go
	cache        cacheState        // stream_cache.go
	usage        usageState        // stream_usage.go
	units        unitState         // stream_units.go
	includeUsage includeUsageState // stream_include_usage.go
	rules        rulesState        // stream_rules.go
	capture      captureState      // stream_capture.go
	trace        traceState        // stream_trace.go
	cors         corsState         // stream_cors.go
	buffers      bufferHold        // budget.go

	bodyAnswer bodyAnswer // this file
}

func (s *Server) newStream(ctx context.Context) *stream {
	return &stream{srv: s, ctx: ctx, start: s.now(), outcome: outcomeAborted,
		buffers: bufferHold{budget: s.buffers}}
}

// logger is the request's logger: the server's, with the request id and,
// once authenticated, the token and project. It is made when the request
// first logs, so one that logs nothing — at level warn, nearly every one —
// costs no logger of its own.
func (st *stream) logger() *zerolog.Logger {
	if !st.logReady {
		c := st.srv.log.With().Str("request_id", st.requestID)
		if st.principal.TokenID != "" {
			c = c.Str("token_id", st.principal.TokenID).Str("project_id", st.principal.ProjectID)
		}
		st.log, st.logReady = c.Logger(), true
	}
	return &st.log
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
	resp = st.withCORS(resp) // a denial or a cache hit: a page may read it as any answer
	st.srv.metrics.observePhase(phase, st.srv.now().Sub(begin))
	return resp
}

// onRequestHeaders is the gate every request passes: route allowlist, the
// proxy token, the request limits, a cache lookup for bodiless requests,
// then the key swap.
func (st *stream) onRequestHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	hdrs := headersOf(h.GetHeaders())
	st.identify(hdrs)
	st.startTrace(hdrs)
	if answer := st.preflight(hdrs); answer != nil {
		return answer // a browser's CORS question: no token, no limit, no upstream
	}
	if err := st.checkRoute(hdrs); err != nil {
		return st.deny(err)
	}
	if err := st.authenticate(hdrs); err != nil {
		return st.deny(err)
	}
	if err := st.checkRules(hdrs); err != nil {
		return st.deny(err)
	}
	st.startCapture(hdrs)
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

// onRequestBody reads the JSON body (model, stream, max_tokens), holds it to
// the rules, answers it from the cache or reserves its tokens and cost, and
// asks for usage on the client's behalf. Envoy buffers it whole on JSON
// routes.
func (st *stream) onRequestBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if st.outcome != outcomeForwarded || st.route == nil || st.route.Body != "json" {
		return passRequestBody()
	}
	body := b.GetBody()
	if !st.buffers.take("request_body", int64(len(body))) {
		return st.deny(errOverloaded)
	}
	defer st.forgetBody()
	st.keepRequest(body)
	if err := st.readRequest(body); err != nil {
		return st.deny(err)
	}
	body, err := st.applyRules(body) // what goes upstream, and the cache key
	if err != nil {
		return st.deny(err)
	}
	if err := st.checkDeferredPolicy(); err != nil {
		return st.deny(err)
	}
	if hit := st.lookupCache(body); hit != nil {
		return hit // before the reservation: a hit uses no tokens
	}
	if err := st.reserve(); err != nil {
		return st.deny(err)
	}
	if err := st.checkBatchModels(); err != nil {
		return st.deny(err)
	}
	if changed := st.injectIncludeUsage(body); changed != nil {
		return replaceBody(changed)
	}
	if st.rules.rewrote {
		return replaceBody(body)
	}
	return passRequestBody()
}

// passRequestBody is the request-body answer that lets the body through.
func passRequestBody() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
}

// onResponseHeaders records the status, adds the request id, rate-limit and
// cache headers, and asks for the body when a feature must read it.
func (st *stream) onResponseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	st.ttfb = st.srv.now().Sub(st.start)
	hdrs := headersOf(h.GetHeaders())
	st.status = statusOf(hdrs)
	st.watchResponse(hdrs)
	st.watchCapture(hdrs)
	st.purgeWritten()
	cors := st.corsHeaders(hdrs.get("vary"))
	set := slices.Concat(st.requestIDHeaders(hdrs), st.rateLimitHeaders(), st.watchCache(hdrs), cors)
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: set, RemoveHeaders: upstreamCORS(hdrs, cors)},
		}},
	}, ModeOverride: st.responseBodyMode(hdrs)}
}

// onResponseBody reads each chunk for usage and passes it on unchanged —
// unless llm-proxy asked for usage on the client's behalf, when the usage-only
// chunk is taken out.
func (st *stream) onResponseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	chunk, end := b.GetBody(), b.GetEndOfStream()
	st.renewSlot()
	seen, mutation := st.removeInjectedUsage(chunk, end) // what the client receives
	seen, mutation = st.filterModelList(seen, end, mutation)
	// The cache keeps what this client got, so a hit replays no usage chunk
	// the client did not ask for (its key is the client's body, not ours).
	st.captureChunk(seen, end)
	st.captureResponse(seen)
	st.readUsage(chunk, end)
	return st.bodyAnswer.with(mutation)
}

// bodyAnswer is the answer to a response body message, kept with the stream
// and reused: a stream answers one per chunk, hundreds of them, and each is
// encoded by gRPC before the next message is read.
type bodyAnswer struct {
	resp extprocv3.ProcessingResponse
	body extprocv3.ProcessingResponse_ResponseBody
	br   extprocv3.BodyResponse
}

func (a *bodyAnswer) with(mutation *extprocv3.CommonResponse) *extprocv3.ProcessingResponse {
	a.br.Response = mutation
	a.body.ResponseBody = &a.br
	a.resp.Response = &a.body
	return &a.resp
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
// response body did not (aborted streams, errors), lets go of what the
// stream held, and records the outcome. Its context is not the stream's,
// which is already cancelled when a client went away, but a short one of its
// own.
func (st *stream) finish() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(st.ctx), 2*time.Second)
	defer cancel()
	if st.outcome == outcomeForwarded && st.usage.cutShort() {
		st.outcome = outcomeAborted
	}
	st.settle(ctx)
	st.cache.release()
	st.buffers.release()
	elapsed := st.srv.now().Sub(st.start)
	st.srv.metrics.observeDecision(st.outcome)
	if st.method == "" {
		return // never saw request headers (e.g. a health probe opening a stream)
	}
	if !st.cors.preflight { // a browser's question, not an API request
		st.emitEvent(elapsed)
	}
	st.logRequest(elapsed)
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
		st.logger().Debug().Err(err).Msg("extend message timeout")
	}
}
