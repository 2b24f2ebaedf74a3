package usage

import (
	"bytes"
	"fmt"
)

// Request is what the request body says about the usage to expect: the fields
// the limiter needs for a reservation and the stream handling needs to know
// whether usage will arrive on its own.
type Request struct {
	// Model is the "model" field, "" if absent (at most its first 256 bytes).
	Model string
	// Stream is the "stream" field.
	Stream bool
	// IncludeUsage is "stream_options.include_usage": the client asked for the
	// usage-only final chunk of a chat completions stream.
	IncludeUsage bool
	// MaxOutputTokens is the largest of "max_tokens", "max_completion_tokens"
	// and "max_output_tokens" (chat, chat for reasoning models, responses), 0 if
	// none is set. Negative values count as 0 (the upstream rejects them).
	MaxOutputTokens int64
	// N is the number of choices asked for ("n"), 1 if absent; values below 1
	// count as 1 (the upstream rejects them). The Images API reads it as the
	// number of images.
	N int64
	// Size is the "size" of an image request ("1024x1792"), "" if absent (at
	// most its first 256 bytes).
	Size string
	// Quality is the "quality" of an image request ("hd"), "" if absent (at
	// most its first 256 bytes).
	Quality string
	// InputChars is the number of Unicode code points of a top-level "input"
	// that is a JSON string, after unescaping: the text of a speech request,
	// which is priced per character ([Prices.SpeechCost]). It is 0 when
	// "input" is absent or not a string (a Responses API item list, an
	// embeddings token array). Invalid UTF-8 bytes count one each.
	InputChars int64
	// Background is "background": true, a Responses API request that runs
	// after its response returns, whose usage is known only from the finished
	// response object ([ParseJob]). A string "background" (the Images API's
	// "transparent", "opaque" or "auto") reads as false.
	Background bool
	// InputFileID is the "input_file_id" of a batch create request: the JSONL
	// file of its requests (at most its first 256 bytes).
	InputFileID string
	// Endpoint is the "endpoint" of a batch create request, the route of all
	// its requests ("/v1/chat/completions"; at most its first 256 bytes).
	Endpoint string
	// User is the end user the request names: "safety_identifier", else the
	// older "user" (at most its first 256 bytes); "" if neither is a string.
	// It is reported, never checked: OpenAI judges its type.
	User string
}

// RequestError is the error [ParseRequest] returns for a body it cannot read:
// not valid JSON, not a JSON object, or one of the fields [Request] holds
// having the wrong JSON type. Callers may map it to an OpenAI
// invalid_request_error with Field as its "param".
type RequestError struct {
	// Field is the offending field ("stream_options.include_usage"), "" when the
	// body as a whole is at fault.
	Field string
	// Reason says what is wrong, e.g. "must be an integer".
	Reason string
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return "invalid request body: " + e.Reason
	}
	return fmt.Sprintf("invalid request body: %s %s", e.Field, e.Reason)
}

// ParseRequest reads a JSON request body of any OpenAI endpoint. Unknown fields
// are ignored and null counts as absent. Keys match case-sensitively and a
// repeated key takes its last value, as OpenAI reads them. The only errors are
// a *[RequestError] for a body that is not a valid JSON object or a field of
// [Request] with the wrong type ("input" has none: any type is accepted). It
// allocates only for the model name, the input file ID, and a size, quality
// or endpoint that is not one of OpenAI's.
func ParseRequest(body []byte) (Request, error) {
	req := Request{N: 1}
	if !validJSON(body) {
		return req, &RequestError{Reason: "is not valid JSON"}
	}
	r := reader{b: body}
	if !r.openObject() {
		return req, &RequestError{Reason: "is not a JSON object"}
	}
	// The fields in the order their errors are reported; each holds the
	// outcome of its last occurrence.
	const (
		fModel = iota
		fStream
		fStreamOptions
		fMaxTokens
		fMaxCompletionTokens
		fMaxOutputTokens
		fN
		fSize
		fQuality
		fBackground
		fInputFileID
		fEndpoint
		nFields
	)
	var errs [nFields]*RequestError
	var maxTokens [3]int64 // max_tokens, max_completion_tokens, max_output_tokens
	n := int64(1)
	var safetyID string
	var hasSafetyID bool
	for key, ok := r.nextKey(); ok; key, ok = r.nextKey() {
		switch string(key) {
		case "model":
			req.Model, errs[fModel] = stringField(&r, "model")
		case "stream":
			req.Stream, errs[fStream] = boolField(&r, "stream")
		case "stream_options":
			req.IncludeUsage, errs[fStreamOptions] = streamOptions(&r)
		case "max_tokens":
			maxTokens[0], errs[fMaxTokens] = intField(&r, "max_tokens")
		case "max_completion_tokens":
			maxTokens[1], errs[fMaxCompletionTokens] = intField(&r, "max_completion_tokens")
		case "max_output_tokens":
			maxTokens[2], errs[fMaxOutputTokens] = intField(&r, "max_output_tokens")
		case "n":
			n, errs[fN] = intField(&r, "n")
		case "size":
			req.Size, errs[fSize] = stringField(&r, "size", imageSizes...)
		case "quality":
			req.Quality, errs[fQuality] = stringField(&r, "quality", imageQualities...)
		case "input":
			req.InputChars = 0
			if r.peek() == '"' {
				req.InputChars = r.runeCount()
			} else {
				r.skip()
			}
		case "background":
			req.Background, errs[fBackground] = backgroundField(&r)
		case "input_file_id":
			req.InputFileID, errs[fInputFileID] = stringField(&r, "input_file_id")
		case "endpoint":
			req.Endpoint, errs[fEndpoint] = stringField(&r, "endpoint", batchEndpoints...)
		case "user", "safety_identifier":
			if r.peek() != '"' {
				r.skip()
				break
			}
			v, _ := stringField(&r, "")
			if string(key) == "safety_identifier" {
				safetyID, hasSafetyID = v, true
			} else {
				req.User = v
			}
		default:
			r.skip()
		}
	}
	if r.err { // unreachable after validJSON; kept so a reader bug cannot pass
		return Request{N: 1}, &RequestError{Reason: "is not valid JSON"}
	}
	for _, err := range errs {
		if err != nil {
			return Request{N: 1}, err
		}
	}
	for _, m := range maxTokens {
		req.MaxOutputTokens = max(req.MaxOutputTokens, m)
	}
	if n > 1 {
		req.N = n
	}
	if hasSafetyID {
		req.User = safetyID
	}
	return req, nil
}

// The field readers below consume the value whatever it is, so that reading
// goes on after a wrong type: a later occurrence of the key may correct it.

// stringField reads a string, keeping at most its first maxModelLen bytes. A
// value equal to one of known is returned as that constant, without
// allocating.
func stringField(r *reader, field string, known ...string) (string, *RequestError) {
	switch r.peek() {
	case 'n':
		if r.null() {
			return "", nil
		}
	case '"':
		start := r.i
		r.skipString()
		if r.err {
			break
		}
		raw := r.b[start+1 : r.i-1]
		if bytes.IndexByte(raw, '\\') >= 0 {
			var buf [maxModelLen]byte
			raw, _ = (&reader{b: r.b, i: start}).str(buf[:0], maxModelLen)
		} else {
			raw = raw[:min(len(raw), maxModelLen)]
		}
		for _, k := range known {
			if string(raw) == k {
				return k, nil
			}
		}
		return string(raw), nil
	}
	r.skip()
	return "", &RequestError{Field: field, Reason: "must be a string"}
}

// maxModelLen bounds the model name, and every other string, kept from a
// request body.
const maxModelLen = 256

// The values of OpenAI's image size and quality and batch endpoint
// parameters, kept without allocating.
var (
	imageSizes = []string{
		"auto", "256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536",
	}
	imageQualities = []string{"auto", "standard", "hd", "low", "medium", "high", "xhigh", "max"}
	batchEndpoints = []string{
		"/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions",
		"/v1/moderations", "/v1/images/generations", "/v1/images/edits", "/v1/videos",
	}
)

// backgroundField reads "background": a boolean (the Responses API) or a
// string (the Images API's background transparency), which reads as false.
func backgroundField(r *reader) (bool, *RequestError) {
	if r.peek() == '"' {
		r.skip()
		return false, nil
	}
	return boolField(r, "background")
}

func boolField(r *reader, field string) (bool, *RequestError) {
	if r.null() {
		return false, nil
	}
	if v, ok := r.boolean(); ok {
		return v, nil
	}
	r.skip()
	return false, &RequestError{Field: field, Reason: "must be a boolean"}
}

// intField reads an integer; null reads as 0.
func intField(r *reader, field string) (int64, *RequestError) {
	if r.null() {
		return 0, nil
	}
	if c := r.peek(); c != '-' && (c < '0' || c > '9') {
		r.skip()
	} else if v, ok := r.integer(); ok { // consumes the number even when !ok
		return v, nil
	}
	return 0, &RequestError{Field: field, Reason: "must be an integer"}
}

func streamOptions(r *reader) (includeUsage bool, err *RequestError) {
	if r.null() {
		return false, nil
	}
	if !r.openObject() {
		r.skip()
		return false, &RequestError{Field: "stream_options", Reason: "must be an object"}
	}
	for key, ok := r.nextKey(); ok; key, ok = r.nextKey() {
		if string(key) == "include_usage" {
			includeUsage, err = boolField(r, "stream_options.include_usage")
		} else {
			r.skip()
		}
	}
	return includeUsage, err
}
