package extproc

import (
	"context"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/authz"
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
	log   zerolog.Logger
	start time.Time

	requestID string
	method    string
	path      string
	route     *compiledRoute
	principal authz.Principal
	outcome   string
	denial    *apiError
	status    int // upstream response status, once seen
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
		resp = st.onRequestHeaders(r.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		phase = "request_body"
		resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	case *extprocv3.ProcessingRequest_RequestTrailers:
		phase = "request_trailers"
		resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		phase = "response_headers"
		resp = st.onResponseHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		phase = "response_body"
		resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
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

// onRequestHeaders is the gate every request passes: route allowlist, then the
// proxy token, then the key swap.
func (st *stream) onRequestHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	hdrs := headerMap(h.GetHeaders())
	st.identify(hdrs)
	if err := st.checkRoute(hdrs); err != nil {
		return st.deny(err)
	}
	if err := st.authenticate(hdrs); err != nil {
		return st.deny(err)
	}
	st.outcome = outcomeForwarded
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: st.upstreamHeaders(hdrs),
		}},
	}, ModeOverride: st.processingMode()}
}

// onResponseHeaders records the upstream status; cache and rate-limit headers
// come here in later features.
func (st *stream) onResponseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	st.status = statusOf(headerMap(h.GetHeaders()))
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{},
	}}
}

// deny ends the request with an OpenAI-shaped error.
func (st *stream) deny(err error) *extprocv3.ProcessingResponse {
	ae := toAPIError(err)
	st.denial = ae
	st.outcome = outcomeDenied
	if ae.Status >= 500 {
		st.outcome = outcomeError
	}
	return ae.immediate(st.requestID)
}

// finish runs once per stream, however it ended: it records the outcome. Later
// features settle reservations and emit the usage event here.
func (st *stream) finish() {
	elapsed := st.srv.now().Sub(st.start)
	st.srv.metrics.observeDecision(st.outcome)
	if st.method == "" {
		return // never saw request headers (e.g. a health probe opening a stream)
	}
	ev := st.log.Info()
	if st.outcome == outcomeError {
		ev = st.log.Error()
		if st.denial != nil && st.denial.Err != nil {
			ev = ev.AnErr("error", st.denial.Err)
		}
	}
	ev = ev.Str("outcome", st.outcome).Str("method", st.method).Str("path", st.path).Dur("duration", elapsed)
	if st.principal.TokenID != "" {
		ev = ev.Str("token_id", st.principal.TokenID).Str("project_id", st.principal.ProjectID)
	}
	if st.denial != nil {
		ev = ev.Int("status", st.denial.Status).Str("code", st.denial.Code).Str("reason", st.denial.reason())
	} else if st.status != 0 {
		ev = ev.Int("status", st.status)
	}
	ev.Msg("request")
}

func headerValue(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}
