package extproc

import (
	"strconv"

	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/llm-proxy/llm-proxy/config"
)

// processingMode is the mode_override sent with the request-headers answer:
// after the headers, Envoy sends only the phases some feature of this request
// needs, because each phase is one more round trip on the request's path.
//
// Envoy's configuration may ask for more (the JSON route buffers request bodies
// up front, since switching NONE → BUFFERED by override is unreliable in Envoy
// 1.40); switching a phase off here is always safe. Features that need a phase
// (token reservation: the request body; rate-limit headers: the response
// headers; usage and cache: the streamed response body) turn it on here.
//
// JSON endpoints need their request body (model, max_tokens: token
// reservation) and their response (usage, for settling and costs); other
// endpoints need the response headers only when a rate-limit header is to be
// added.
func (st *stream) processingMode() *procv3.ProcessingMode {
	m := &procv3.ProcessingMode{
		RequestHeaderMode:   procv3.ProcessingMode_SEND,
		RequestBodyMode:     procv3.ProcessingMode_NONE,
		RequestTrailerMode:  procv3.ProcessingMode_SKIP,
		ResponseHeaderMode:  procv3.ProcessingMode_SKIP,
		ResponseBodyMode:    procv3.ProcessingMode_NONE,
		ResponseTrailerMode: procv3.ProcessingMode_SKIP,
	}
	if st.route != nil && st.route.Body == "json" {
		m.RequestBodyMode = procv3.ProcessingMode_BUFFERED
		m.ResponseHeaderMode = procv3.ProcessingMode_SEND
	}
	if st.charge() != "" && st.charge() != config.ChargeFree {
		m.ResponseHeaderMode = procv3.ProcessingMode_SEND // its answer says what it cost
	}
	if st.limits.admission != nil && st.limits.admission.Requests().Limit > 0 {
		m.ResponseHeaderMode = procv3.ProcessingMode_SEND
	}
	if st.cache.status == cacheMiss {
		m.ResponseHeaderMode = procv3.ProcessingMode_SEND // to decide whether to store
	}
	if st.rules.filterList {
		m.ResponseHeaderMode = procv3.ProcessingMode_SEND // to read the model list
	}
	if st.srv.events != nil {
		m.ResponseHeaderMode = procv3.ProcessingMode_SEND // the event needs the status
	}
	if st.cors.origin != "" {
		m.ResponseHeaderMode = procv3.ProcessingMode_SEND // CORS headers added, or upstream's removed
	}
	return m
}

// responseBodyMode is the override sent with the response headers: nil when
// no feature reads the body, else a body mode for the ones that do (usage,
// cache capture). Streams are STREAMED, so chunks reach the client as they
// come and each costs only a parse of that chunk. A small non-streamed body
// whose length is known is BUFFERED: one message instead of a data message
// plus an empty end-of-stream one, and nothing is delayed that the client
// could have used earlier. A model list filtered by the rules is BUFFERED
// whatever its size (tens of KiB): it is rewritten whole, with its length.
func (st *stream) responseBodyMode(resp headers) *procv3.ProcessingMode {
	if st.filtersList() {
		return bodyModes(procv3.ProcessingMode_BUFFERED)
	}
	if !st.usage.read && st.cache.capture == nil && !st.capture.readResp {
		return nil
	}
	mode := procv3.ProcessingMode_STREAMED
	if n, err := strconv.Atoi(resp.get("content-length")); err == nil && n <= maxBufferedResponse && !st.usage.sse && st.capture.merger == nil {
		mode = procv3.ProcessingMode_BUFFERED
	}
	return bodyModes(mode)
}

// bodyModes is the override, at the response headers, that asks for the
// response body in mode.
func bodyModes(mode procv3.ProcessingMode_BodySendMode) *procv3.ProcessingMode {
	return &procv3.ProcessingMode{
		RequestHeaderMode:   procv3.ProcessingMode_SEND,
		RequestBodyMode:     procv3.ProcessingMode_NONE,
		RequestTrailerMode:  procv3.ProcessingMode_SKIP,
		ResponseHeaderMode:  procv3.ProcessingMode_SEND,
		ResponseBodyMode:    mode,
		ResponseTrailerMode: procv3.ProcessingMode_SKIP,
	}
}

// maxBufferedResponse stays well inside Envoy's per-connection buffer of the
// upstream cluster (1 MiB in envoy.yaml): a larger body is STREAMED.
const maxBufferedResponse = 256 << 10
