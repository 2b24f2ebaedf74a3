// Package extproc is the Envoy external-processing (ext_proc) gRPC server: the
// per-request state machine that wires Envoy's phases to authz and, later, to
// rate limits, the response cache and usage events.
//
// Envoy opens one Process stream per HTTP request and sends each phase as a
// message; [Server.Process] builds one stream value for it, owned by that
// goroutine alone, answers every message in order, and runs stream.finish
// exactly once when the stream ends — normally or because the client went away.
//
// Phases and what each does (steps live in stream_*.go, one file per feature):
//
//	phase              steps                                               on failure
//	request headers    allowlist (method + path) → authenticate + lifetime  ImmediateResponse in
//	                   quota → swap authorization, strip proxy headers,     the OpenAI error shape
//	                   add x-request-id
//	request body       (not requested yet; a later issue reserves tokens)   —
//	response headers   record status                                        —
//	response body      (not requested yet; usage and cache capture later)   —
//	trailers           passed through                                       —
//
// Nothing here fails open: a store error refuses the request with a 500 in the
// OpenAI shape, and a broken sidecar makes Envoy refuse (failure_mode_allow:
// false). A gRPC error is returned only when the stream itself is broken.
package extproc
