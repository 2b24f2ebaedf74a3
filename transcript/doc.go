// Package transcript turns what OpenAI answered into one readable response
// for a captured usage event: a stream of server-sent events is merged back
// into the response the same request would have got without stream=true,
// and any response, streamed or not, is summarised (model, finish reasons)
// for traces.
//
// A reader of a capture wants the answer, not two thousand chunks of three
// characters each; and the non-stream shape is what observability tools
// ingest. Merging also puts back together what a stream splits, so a secret
// that arrived in pieces is whole when package redact looks at the result
// ("redact after merge").
//
// [Merger] takes the raw bytes of the response body as they pass through
// the proxy, split anywhere, and keeps only what the result needs, within a
// byte cap: the cap bounds the memory a capture costs per stream, whatever
// the upstream sends, and the result's size (the cap plus [Overhead]); what
// does not fit is cut, and the result says so, but stays valid JSON. Three
// kinds of response are understood ([KindOf]):
//
//	/v1/chat/completions   chat.completion.chunk → chat.completion
//	/v1/completions        text_completion chunks → text_completion
//	/v1/responses          Responses API events → the final response object
//
// Nothing here reads the request, does I/O or keeps state outside a
// [Merger]; the package depends on the standard library only.
package transcript
