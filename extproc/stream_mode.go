package extproc

import (
	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
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
func (st *stream) processingMode() *procv3.ProcessingMode {
	return &procv3.ProcessingMode{
		RequestHeaderMode:   procv3.ProcessingMode_SEND,
		RequestBodyMode:     procv3.ProcessingMode_NONE,
		RequestTrailerMode:  procv3.ProcessingMode_SKIP,
		ResponseHeaderMode:  procv3.ProcessingMode_SKIP,
		ResponseBodyMode:    procv3.ProcessingMode_NONE,
		ResponseTrailerMode: procv3.ProcessingMode_SKIP,
	}
}
