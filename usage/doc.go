// Package usage says what a request used and what it cost. The limiter's
// reserve-and-settle and the usage events share it.
//
// On the ext_proc hot path a stream calls:
//
//   - [ParseRequest] once on the buffered request body: model, stream,
//     stream_options.include_usage, the output cap and n;
//   - [Tokenizer.CountPrompt] once on the same body, for the reservation and
//     for the usage of a request whose response never reports any;
//   - [StreamParser.Write] on every chunk of a streamed (SSE) response, which
//     keeps the provider's usage and a bounded copy of the streamed text,
//     without allocating per chunk; or [ParseUsage] once on a buffered JSON
//     response;
//   - [Prices.Estimate] to reserve budget and [Prices.Cost] to settle it.
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
