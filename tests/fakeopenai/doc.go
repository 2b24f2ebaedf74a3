// Package fakeopenai is a fake OpenAI API upstream for end-to-end tests and
// benchmarks. It answers with OpenAI-shaped, deterministic responses,
// records every request it receives, lets a test steer each request through
// x-fake-* request headers, and keeps a ledger of what OpenAI would bill
// (see [Server.Ledger]), so that a test can compare what the gateway charged
// with what the upstream billed.
//
// It is deliberately as unkind as the real API where that matters for
// charging: it compresses, reports cached and reasoning tokens when told
// to, bills streams that break, finishes background responses and batches
// only when polled, and hides a batch's cost in its output file.
//
// # Endpoints
//
//	POST   /v1/chat/completions                 stream or not, n choices
//	GET    /v1/models, /v1/models/{id}
//	POST   /v1/responses                        stream, background, store
//	GET    /v1/responses/{id}                   advances a background response
//	DELETE /v1/responses/{id}
//	POST   /v1/responses/{id}/cancel
//	GET    /v1/responses/{id}/input_items
//	POST   /v1/files                            multipart: purpose, file
//	GET    /v1/files, /v1/files/{id}, /v1/files/{id}/content
//	DELETE /v1/files/{id}
//	POST   /v1/batches                          chat, embeddings, responses
//	GET    /v1/batches, /v1/batches/{id}        a GET advances a batch
//	POST   /v1/batches/{id}/cancel
//	POST   /v1/embeddings                       float or base64
//	POST   /v1/images/generations               dall-e-2, dall-e-3, gpt-image*
//	POST   /v1/audio/speech                     binary audio
//	POST   /v1/audio/transcriptions             multipart: file, model
//	POST   /v1/audio/translations               multipart: file, model (whisper)
//	POST   /v1/moderations                      free, never flags
//
// Any other path is a 404 and a known path with the wrong method a 405,
// both with OpenAI's error body {"error":{"message","type","param","code"}}.
//
// # Token counts
//
// Tokens are counted in words (see [CountWords]). The reply to a chat
// completion or a response is "echo: " followed by the text of the last
// user message with its whitespace collapsed to single spaces (see
// [EchoReply]), or [WordsReply] for x-fake-words:
//
//	chat:      prompt_tokens     = Σ over all messages (CountWords(text) + 3)
//	           completion_tokens = n × CountWords(reply) + reasoning
//	responses: input_tokens      = Σ over input messages and the
//	                               instructions (CountWords(text) + 3)
//	           output_tokens     = CountWords(reply) + reasoning
//	total = prompt (input) + completion (output)
//
// where reasoning is x-fake-reasoning-tokens (0 without it; the visible
// reply does not change). max_tokens / max_completion_tokens /
// max_output_tokens bound reasoning and visible tokens together, as
// OpenAI's do: reasoning is capped at the limit and the reply cut to the
// words that are left (finish_reason "length"; a response becomes
// "incomplete" with incomplete_details.reason "max_output_tokens").
// Message content may be a string or content parts, of which the
// text/input_text parts count.
//
// A streamed reply is split into one chunk (chat) or one
// response.output_text.delta event (responses) per word; concatenating the
// deltas gives exactly the non-streamed text.
//
// Other endpoints:
//
//	embeddings:     prompt_tokens = Σ CountWords(input_i) (a token array: its
//	                length); vectors are [EmbeddingVector], 8 dimensions
//	                unless "dimensions" says otherwise; base64 is
//	                little-endian float32
//	images:         dall-e-2/3 report no usage (billed per image by size and
//	                quality); gpt-image* report input_tokens = text_tokens =
//	                CountWords(prompt), output_tokens = n ×
//	                [ImageOutputTokens](size, quality) (size auto = 1024x1024,
//	                quality auto = medium)
//	speech:         billed per Unicode code point of input
//	transcriptions: seconds = [AudioSeconds](file size); text = one word per
//	and translations second (or x-fake-words); whisper*: usage {"type":
//	                "duration","seconds"}; gpt-4o*-transcribe: usage
//	                {"type":"tokens"} with audio_tokens = seconds ×
//	                AudioTokensPerSecond, text_tokens = CountWords(prompt),
//	                output_tokens = CountWords(text)
//
// # Knobs
//
// Request headers understood on every endpoint (a malformed value is
// answered with 400 so that test mistakes are loud):
//
//	x-fake-status: 429        answer with that status (400-599) and an
//	                          OpenAI error body; 429 also sets retry-after: 1
//	x-fake-fail: id:429:2     the first 2 requests carrying id are answered
//	                          with 429 (any 400-599), later ones normally; a
//	                          429 sets retry-after: 1 and retry-after-ms: 1000
//	                          as OpenAI does (to prove SDK retries)
//	x-fake-delay: 200ms       sleep before answering (a bare number is ms)
//	x-fake-chunk-delay: 50ms  sleep between streamed events
//	x-fake-words: 500         reply with that many words instead of the echo
//	x-fake-cached-tokens: N   report min(N, prompt) cached prompt tokens
//	                          (prompt_tokens_details / input_tokens_details),
//	                          as a prompt cache hit does
//	x-fake-reasoning-tokens: N  report N reasoning tokens, counted inside
//	                          completion (output) tokens as OpenAI does
//	x-fake-hold: <id>         streams: after the first event (chat: the role
//	                          chunks), block until Release(id) (or the
//	                          request ends); non-streams: block before
//	                          answering
//	x-fake-encoding: gzip     compress with gzip or br, or not (identity),
//	                          whatever Accept-Encoding says (see Compression)
//	x-fake-break: after-N     streams: abort the connection after N events
//	                          (the first role chunk is event 1); non-streams:
//	                          after-0 aborts before anything is written,
//	                          after-N sends the headers and the first N bytes
//	                          of the (uncompressed) body and aborts
//
// Injected statuses (x-fake-status, x-fake-fail) are never billed. Knobs
// sent with POST /v1/batches (words, cached and reasoning tokens) apply to
// every line of that batch.
//
// Server settings: [Server.SetCompression], [Server.SetBackgroundPolls],
// [Server.SetBatchPolls], [Server.SetModels], [Server.SetRecording].
//
// # Compression
//
// Like OpenAI's CDN edge, the fake compresses JSON bodies (errors included)
// and SSE streams when the request's Accept-Encoding accepts br or gzip
// (br preferred when both are acceptable; q=0 refuses a coding), with
// Content-Encoding and Vary: Accept-Encoding; a non-streamed body carries
// its compressed Content-Length. A stream stays incremental: the compressor
// is flushed after every event. File downloads and audio are never
// compressed. Go's http.Transport asks for gzip by itself and decodes it
// transparently.
//
// x-fake-encoding: gzip | br | identity forces that encoding whatever the
// request's Accept-Encoding and [Server.SetCompression] say. OpenAI never
// compresses unasked; the knob stands for a proxy in between that does, and
// reaches a gateway whose Envoy strips Accept-Encoding before the upstream.
//
// # Background responses and batches
//
// POST /v1/responses with "background": true answers at once with status
// "queued", no output and usage null. Each GET /v1/responses/{id} advances
// it one step, queued → in_progress → completed, completing on the
// [Server.SetBackgroundPolls]-th GET (default 2), which bills it. A cancel
// before that makes it "cancelled", never billed. Stored non-background
// responses (store defaults to true) are retrievable too.
//
// POST /v1/batches answers "validating"; each GET advances it, validating
// → in_progress → completed on the [Server.SetBatchPolls]-th GET (default
// 2). The completing GET runs every input line through the synchronous
// endpoint's code (never streamed), writes an output file (purpose
// "batch_output") of lines {"id","custom_id","response":{"status_code",
// "request_id","body"},"error":null} and, for lines that failed, an error
// file, and bills every successful line with Batch set. The batch object
// has no usage: the cost is in the output file. A cancel makes it
// "cancelling", then "cancelled" on the next GET, nothing billed.
package fakeopenai
