package usage

// Usage is what one request used: tokens, or seconds of audio for a model
// billed by duration. For the Responses API, the Images API and
// transcriptions, input and output tokens are reported as PromptTokens and
// CompletionTokens.
type Usage struct {
	// PromptTokens counts the whole input, cached tokens included.
	PromptTokens int64
	// CompletionTokens counts the whole output, reasoning tokens included.
	CompletionTokens int64
	// CachedTokens is the part of PromptTokens served from the prompt cache.
	CachedTokens int64
	// ReasoningTokens is the part of CompletionTokens spent on reasoning.
	ReasoningTokens int64
	// TotalTokens is as reported, or PromptTokens+CompletionTokens when the
	// provider sends no total.
	TotalTokens int64
	// ImageTokens is the part of PromptTokens that are image tokens, as the
	// Images API reports them for GPT image models
	// (input_tokens_details.image_tokens: the input images of an edit).
	// [Prices.Cost] prices them at the model's image input rate.
	ImageTokens int64
	// Seconds is the duration of input audio billed by time, as a
	// transcription or translation by whisper-1 reports it ("usage":
	// {"type": "duration", "seconds": N}); [Prices.AudioCost] prices it.
	Seconds float64
}

// Source says where a [Usage] came from; it is the usage_source of a usage
// event.
type Source string

const (
	// SourceProvider is usage reported by the upstream: the response body's
	// "usage" or the usage of the last SSE event that carried one.
	SourceProvider Source = "provider"
	// SourceTokenizer is usage counted by a [Tokenizer]: the prompt from the
	// request body and the completion from the streamed text (an aborted
	// stream, or a provider that sent no usage).
	SourceTokenizer Source = "tokenizer"
	// SourceEstimated is usage that was neither reported nor counted, such as
	// the reservation of a request that never produced a response.
	SourceEstimated Source = "estimated"
)

// ParseUsage reads the usage of a complete JSON response body: the top-level
// "usage" of a chat completion, completion, embeddings, Responses API, Images
// API (GPT image models) or transcription response, or else the
// "response"."usage" of a Responses API event such as response.completed.
// These members are understood:
//
//	prompt_tokens, completion_tokens, total_tokens,
//	prompt_tokens_details.cached_tokens, completion_tokens_details.reasoning_tokens
//	input_tokens, output_tokens, total_tokens,
//	input_tokens_details.cached_tokens, input_tokens_details.image_tokens,
//	output_tokens_details.reasoning_tokens
//	seconds (a transcription's {"type": "duration", "seconds": N})
//
// A transcription's {"type": "tokens", "input_tokens": …, "output_tokens": …}
// reads as prompt and completion tokens. A verbose_json transcription or
// translation without a usage object reads as Seconds from its top-level
// "duration".
//
// ok is false when the body is not valid JSON, has no usage object (or null)
// nor such a duration, the object has none of the token counts nor seconds,
// or a count is not a non-negative integer (seconds: a non-negative number).
// Keys match case-sensitively; a repeated key takes its last value.
func ParseUsage(body []byte) (u Usage, ok bool) {
	if !validJSON(body) {
		return Usage{}, false
	}
	r := reader{b: body}
	if !r.openObject() {
		return Usage{}, false
	}
	var top, nested usageResult
	var duration seconds
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "usage":
			top = readUsageValue(&r)
		case "response":
			nested = readResponseUsage(&r)
		case "duration":
			duration = readSeconds(&r)
		default:
			r.skip()
		}
	}
	switch {
	case top.ok:
		return top.u, true
	case nested.ok:
		return nested.u, true
	case duration.set && !duration.bad:
		return Usage{Seconds: duration.v}, true
	}
	return Usage{}, false
}

// ImageCount returns how many images an Images API response holds: the
// length of its top-level "data" array. It is what a dall-e request is billed
// for ([Prices.ImageCost]); those models report no usage. ok is false when
// the body is not valid JSON, not an object, or its last "data" is not an
// array.
func ImageCount(body []byte) (n int64, ok bool) {
	if !validJSON(body) {
		return 0, false
	}
	r := reader{b: body}
	if !r.openObject() {
		return 0, false
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		if string(key) != "data" {
			r.skip()
			continue
		}
		n, ok = 0, false
		if !r.openArray() {
			r.skip()
			continue
		}
		for ok = true; r.nextElem(); n++ {
			r.skip()
		}
	}
	if r.err {
		return 0, false
	}
	return n, ok
}

type usageResult struct {
	u  Usage
	ok bool
}

// readResponseUsage reads the "usage" of a Responses API response object.
func readResponseUsage(r *reader) (res usageResult) {
	if !r.openObject() {
		r.skip()
		return res
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		if string(key) == "usage" {
			res = readUsageValue(r)
		} else {
			r.skip()
		}
	}
	return res
}

// count is one token count of a usage object as its last occurrence left it:
// absent (or null), a value, or bad (not a non-negative integer).
type count struct {
	v   int64
	set bool
	bad bool
}

func (c count) or(d count) count {
	if c.set {
		return c
	}
	return d
}

// readCount reads a count.
func readCount(r *reader) count {
	if r.null() {
		return count{}
	}
	if c := r.peek(); c != '-' && (c < '0' || c > '9') {
		r.skip()
		return count{bad: true}
	}
	v, ok := r.integer() // consumes the number even when !ok
	if !ok || v < 0 {
		return count{bad: true}
	}
	return count{v: v, set: true}
}

// seconds is a duration in seconds as its last occurrence left it: absent
// (or null), a value, or bad (not a non-negative number).
type seconds struct {
	v   float64
	set bool
	bad bool
}

// readSeconds reads a non-negative JSON number.
func readSeconds(r *reader) seconds {
	if r.null() {
		return seconds{}
	}
	if c := r.peek(); c != '-' && (c < '0' || c > '9') {
		r.skip()
		return seconds{bad: true}
	}
	v, ok := r.float() // consumes the number even when !ok
	if !ok || v < 0 {
		return seconds{bad: true}
	}
	return seconds{v: v, set: true}
}

// readDetail reads a *_tokens_details object for the one count we use.
func readDetail(r *reader, name string) count {
	c, _ := readDetails(r, name, "")
	return c
}

// readDetails reads a *_tokens_details object for two counts; an empty name
// matches no key.
func readDetails(r *reader, name1, name2 string) (c1, c2 count) {
	if r.null() {
		return count{}, count{}
	}
	if !r.openObject() {
		r.skip()
		return count{bad: true}, count{}
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case name1:
			c1 = readCount(r)
		case name2:
			c2 = readCount(r)
		default:
			r.skip()
		}
	}
	return c1, c2
}

// readUsageValue reads the value of a "usage" key: null, or a usage object of
// either API.
func readUsageValue(r *reader) (res usageResult) {
	if r.null() {
		return res
	}
	if !r.openObject() {
		r.skip()
		return res
	}
	var prompt, completion, total, input, output count
	var cachedP, cachedI, imageI, reasoningC, reasoningO count
	var secs seconds
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "prompt_tokens":
			prompt = readCount(r)
		case "completion_tokens":
			completion = readCount(r)
		case "total_tokens":
			total = readCount(r)
		case "input_tokens":
			input = readCount(r)
		case "output_tokens":
			output = readCount(r)
		case "prompt_tokens_details":
			cachedP = readDetail(r, "cached_tokens")
		case "input_tokens_details":
			cachedI, imageI = readDetails(r, "cached_tokens", "image_tokens")
		case "completion_tokens_details":
			reasoningC = readDetail(r, "reasoning_tokens")
		case "output_tokens_details":
			reasoningO = readDetail(r, "reasoning_tokens")
		case "seconds":
			secs = readSeconds(r)
		default:
			r.skip()
		}
	}
	if r.err {
		return res
	}
	for _, c := range [...]count{prompt, completion, total, input, output, cachedP, cachedI, imageI, reasoningC, reasoningO} {
		if c.bad {
			return res
		}
	}
	if secs.bad {
		return res
	}
	p, c := prompt.or(input), completion.or(output)
	if !p.set && !c.set && !total.set && !secs.set {
		return res
	}
	res.u = Usage{
		PromptTokens:     p.v,
		CompletionTokens: c.v,
		CachedTokens:     cachedP.or(cachedI).v,
		ReasoningTokens:  reasoningC.or(reasoningO).v,
		TotalTokens:      total.v,
		ImageTokens:      imageI.v,
		Seconds:          secs.v,
	}
	if !total.set {
		res.u.TotalTokens = saturatingAdd(p.v, c.v)
	}
	res.ok = true
	return res
}

func saturatingAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}
