// Package extproc is the Envoy external-processing (ext_proc) gRPC server: the
// per-request state machine that wires Envoy's phases to authz, the rate
// limits, the response cache and usage accounting and events.
//
// Envoy opens one Process stream per HTTP request and sends each phase as a
// message; [Server.Process] builds one stream value for it, owned by that
// goroutine alone, answers every message in order, and runs stream.finish
// exactly once when the stream ends — normally or because the client went away.
//
// Phases and what each does (steps live in stream_*.go, one file per feature,
// each feature's per-stream state in a small type of that file):
//
//	phase              steps                                                on failure
//	request headers    allowlist (method + path) → proxy token (authz) →    ImmediateResponse in
//	                   rules: Content-Length under the body cap, the model  the OpenAI error shape
//	                   of GET /v1/models/{model} →
//	                   admit: lifetime cap, budget, concurrency, req/min →
//	                   cache lookup (GET/HEAD) → swap authorization, strip
//	                   proxy headers, add x-request-id; mode_override turns
//	                   off every later phase no feature of this request needs
//	request body       (JSON routes, BUFFERED by the route) hold it in the  400 / 403 / 413 / 429 /
//	                   buffer budget → parse model, stream, max_tokens →    502 / 503 as above
//	                   rules: body cap, model allowlist, tools, parameter
//	                   values, output ceiling (refused, or written into
//	                   the body) → background/batch policy → cache lookup
//	                   (opted-in POST) → reserve tokens + cost (a batch:
//	                   from its input file, each line's model checked) →
//	                   add stream_options.include_usage
//	response headers   status; purge what a write changed; x-request-id,    —
//	                   x-ratelimit-*, Cache-Status; ask for the body
//	                   (STREAMED for SSE, BUFFERED when small) when usage,
//	                   a cache capture or a model list to filter needs it
//	response body      renew the concurrency slot; the usage-only chunk     —
//	                   llm-proxy caused is removed; a model list keeps only
//	                   the models the rules allow; cache capture and usage
//	                   parser see each chunk; at end of stream: settle (or
//	                   hand background work to package deferred), store the
//	                   cache entry
//	stream end         finish: settle what was not (aborts: tiktoken count), —
//	                   free the concurrency slot, release cache waiters and
//	                   buffered bytes, emit the usage event, log the request
//	CORS               a preflight (OPTIONS with Origin and                 204 at once; the
//	                   Access-Control-Request-Method) is answered at the    CORS headers only
//	                   request headers (stream_cors.go): nothing else       when a project
//	                   runs. Any answer to a request from an origin its     allows it
//	                   project lists (a denial, a cache hit, the response
//	                   headers) gets the CORS headers; the upstream's are
//	                   removed
//
// Each message is a round trip on the request's path, and Envoy's side of it
// costs about as much CPU as the sidecar's, so a phase is asked for only when
// some feature of the request changes or learns something in it (mode_override
// in the request-headers answer, stream_mode.go). Messages per request, as
// TestMessagesPerRequestKind plays them:
//
//   - refused at the gate (token, route, limit): 1;
//   - CORS preflight: 1 (a request with an Origin has its response headers
//     sent, for the CORS headers to be added or the upstream's removed);
//   - GET or other bodiless request answered from the cache: 1;
//   - bodiless request forwarded: 2 (request and response headers: the event
//     needs the status, a charged route its answer's headers, a limited one
//     its x-ratelimit-* headers; with none of these, 1);
//   - opted-in POST answered from the cache: 2 (its key is its body);
//   - JSON request with a JSON answer: 4; the answer BUFFERED when its
//     Content-Length is at most 256 KiB, else one message per chunk;
//   - JSON request with an SSE answer of n chunks: 3 + n;
//   - multipart upload (audio, files, images): 3, its body never read.
//
// Model allowlists and request rules (stream_rules.go) add no message: the
// body they read is read already. Only GET /v1/models under an allowlist
// takes 3 (its answer is read, BUFFERED, to be filtered), and a body is
// parsed a second time only when the rules restrict more than its model.
//
// A project that captures bodies (policy.Capture, stream_capture.go) adds
// messages only where a body was not read already: a JSON or SSE answer of
// a free route. Binary answers are recorded by type and size, unread. What
// is captured is copied as it passes and redacted, merged (streams) and
// encoded only in finish, after the client has its answer. With tracing on
// (stream_trace.go) the request-headers answer also replaces traceparent,
// naming the span the usage event carries; nothing else changes.
//
// Why a non-streamed chat completion still takes 4: the request body must be
// read before the upstream is called (model and max_tokens for the
// reservation); the answer's body carries its usage; and the response-headers
// message is where the sidecar learns whether the answer is a stream (its
// request may say stream, but only the answer decides what Envoy must not
// buffer) and sets x-ratelimit-*, x-request-id and Cache-Status. Envoy takes
// mode_override only in a headers answer, so the request body cannot turn the
// response-headers phase off; and with that phase skipped Envoy would have to
// buffer every answer of the route, streams included. observability_mode
// (Envoy sends and does not wait; nothing can be changed) applies to the
// whole filter, and every request needs at least one answer that changes
// something: the key swap, the removal of the usage chunk llm-proxy asked for.
//
// Cache lookups fail open (an unreachable cache is a miss); the rate limiter
// follows each limit's declared failure mode (package ratelimit).
// Nothing here fails open: a store error refuses the request with a 500 in the
// OpenAI shape, and a broken sidecar makes Envoy refuse (failure_mode_allow:
// false). A gRPC error is returned only when the stream itself is broken.
package extproc
