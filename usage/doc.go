// Package usage says what a request used and what it cost. The limiter's
// reserve-and-settle and the usage events share it.
//
// On the ext_proc hot path a stream calls:
//
//   - [ParseRequest] once on the buffered request body: model, stream,
//     stream_options.include_usage, the output cap and n; an image request's
//     size and quality, a speech request's input characters, a Responses
//     API request's background flag, a batch's input file and endpoint;
//   - [Tokenizer.CountPrompt] once on the same body, for the reservation and
//     for the usage of a request whose response never reports any;
//   - [StreamParser.Write] on every chunk of a streamed (SSE) response, which
//     keeps the provider's usage and a bounded copy of the streamed text,
//     without allocating per chunk; or [ParseUsage] (and, for dall-e,
//     [ImageCount]) once on a buffered JSON response;
//   - [Prices.Estimate] to reserve budget and one of the cost functions below
//     to settle it.
//
// How each kind of work is billed, as OpenAI bills it, and what prices it:
//
//	tokens       chat, completions, embeddings, Responses API,   Prices.Cost of the usage
//	             GPT image models (gpt-image-1: image input       (ParseUsage, StreamParser)
//	             tokens at their own rate), gpt-4o(-mini)-transcribe
//	             and a streamed (stream_format "sse") gpt-4o-mini-tts
//	images       dall-e-2, dall-e-3: per image by size and       Prices.ImageCost(Request.Size,
//	             quality                                          Request.Quality, ImageCount)
//	characters   tts-1, tts-1-hd; gpt-4o-mini-tts when the       Prices.SpeechCost(Request.InputChars)
//	             response is audio, which carries no usage
//	             (priced at a per-character equivalent)
//	seconds      whisper-1 transcriptions and translations, in   Prices.AudioCost(Usage.Seconds)
//	             whole seconds (rounded up)
//	batch        any token-priced line of a batch, at             Prices.BatchCost per model of
//	             BatchMultiplier (50%) of the token price         ReadBatchOutput
//	calls        a route billed per successful call (vector      Prices.CallCost("METHOD /path")
//	             store search, at the file search call price)
//
// A model is known to a cost function only if its section of the price table
// lists it (known false otherwise, never a silent zero), and each section
// finds a model the same way, by its name or longest family prefix
// ([Prices.Lookup]). A speech model in both models and characters_per_m,
// such as gpt-4o-mini-tts, is priced per character when the response is
// audio and by tokens when it is a stream that reports usage. A transcription
// model's input tokens, audio and the capped text prompt alike, are priced at
// its audio input rate, because the token split of a transcription's usage is
// optional in OpenAI's schema.
//
// Work that finishes after its response is settled later from OpenAI's own
// record: [ParseJob] reads a background Responses API response or a Batch
// object as created and as polled, [Job.Terminal] says when it is over, and
// then the response's usage, or [ReadBatchOutput] of the batch's output file,
// says what it used.
//
// Which [Source] a settled [Usage] has:
//
//	provider   ParseUsage or StreamParser.Usage found the upstream's usage
//	tokenizer  no usage arrived (aborted stream, provider sent none): the
//	           prompt from CountPrompt, the completion from
//	           CountText(StreamParser.Text())
//	estimated  nothing was counted, e.g. a request refused before it ran
//
// Tokens are counted offline: [NewTokenizer] installs tiktoken-go-loader's
// embedded BPE ranks as tiktoken-go's loader, once per process (tiktoken-go
// keeps its loader in a package variable, the only mutable package state here),
// so nothing is ever downloaded or cached on disk. Encodings are chosen per
// model family: cl100k_base for gpt-4, gpt-3.5 and the embedding models,
// o200k_base for everything else (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o-series
// and unknown models).
//
// The JSON readers here pick a few members out of large documents without
// decoding the rest. Keys match case-sensitively and a repeated key takes its
// last value, as OpenAI's API reads them, not as encoding/json does.
package usage
