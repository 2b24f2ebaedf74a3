package usage

import (
	"bufio"
	"fmt"
	"io"
)

// DefaultMaxBatchLine is the longest line [ReadBatchOutput] accepts when its
// caller passes no limit: far past any response body OpenAI puts on a line.
const DefaultMaxBatchLine = 16 << 20

// BatchOutputError is the error [ReadBatchOutput] returns for a line of a
// batch output file that it cannot read.
type BatchOutputError struct {
	// Line is the line's number, from 1.
	Line int
	// Reason says what is wrong, e.g. "is not valid JSON".
	Reason string
}

func (e *BatchOutputError) Error() string {
	return fmt.Sprintf("batch output line %d %s", e.Line, e.Reason)
}

// ReadBatchOutput sums the usage of a batch output file per model. The file
// is JSONL, one request a line:
//
//	{"id": "batch_req_…", "custom_id": "…",
//	 "response": {"status_code": 200, "request_id": "…", "body": {… "model": "…", "usage": {…}}},
//	 "error": null}
//
// A line counts the usage of its response body (read as [ParseUsage] reads a
// body: chat completions and completions, embeddings with prompt tokens only,
// Responses API input and output tokens, GPT image tokens) under the body's
// "model", or "" if it has none (an Images API body names no model: price
// those with the batch's [Job.Model]). A line counts nothing when its "error" is not
// null, its status_code is not an integer from 200 to 299, or its body has no
// valid usage (moderations). Sums saturate at math.MaxInt64; TotalTokens sums
// the lines' totals.
//
// Lines end in LF or CRLF; blank lines are skipped. A line longer than
// maxLine bytes (maxLine <= 0 means [DefaultMaxBatchLine]), not valid JSON or
// not a JSON object is an error, a *[BatchOutputError] with its number, and so
// is a read error (wrapped); either way no sums are returned. The map is
// never nil on success.
func ReadBatchOutput(r io.Reader, maxLine int) (map[string]Usage, error) {
	return readBatchOutput(r, maxLine, 64<<10)
}

// readBatchOutput is ReadBatchOutput with the read buffer's size, which tests
// make small.
func readBatchOutput(r io.Reader, maxLine, bufSize int) (map[string]Usage, error) {
	if maxLine <= 0 {
		maxLine = DefaultMaxBatchLine
	}
	sums := make(map[string]Usage)
	br := bufio.NewReaderSize(r, bufSize)
	var line, model []byte
	for n := 1; ; n++ {
		line = line[:0]
		var err error
		for {
			var frag []byte
			frag, err = br.ReadSlice('\n')
			// A line's length leaves out its LF or CRLF, so a line may hold
			// maxLine+2 bytes before it is certainly too long.
			if len(line)+len(frag) > maxLine+2 {
				return nil, &BatchOutputError{Line: n, Reason: fmt.Sprintf("is longer than %d bytes", maxLine)}
			}
			line = append(line, frag...)
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read batch output: %w", err)
		}
		content := trimLineEnd(line)
		if len(content) > maxLine {
			return nil, &BatchOutputError{Line: n, Reason: fmt.Sprintf("is longer than %d bytes", maxLine)}
		}
		if len(trimSpace(content)) > 0 {
			if e := addBatchLine(sums, content, &model); e != "" {
				return nil, &BatchOutputError{Line: n, Reason: e}
			}
		}
		if err == io.EOF {
			return sums, nil
		}
	}
}

// trimLineEnd drops a line's LF or CRLF.
func trimLineEnd(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
		if len(b) > 0 && b[len(b)-1] == '\r' {
			b = b[:len(b)-1]
		}
	}
	return b
}

// addBatchLine adds the usage of one output line to sums; model is scratch
// for the model name. It returns why the line cannot be read, or "".
func addBatchLine(sums map[string]Usage, line []byte, model *[]byte) string {
	if !validJSON(line) {
		return "is not valid JSON"
	}
	r := reader{b: line}
	if !r.openObject() {
		return "is not a JSON object"
	}
	var res batchResult
	failed := false
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "response":
			res = readBatchResponse(&r, (*model)[:0])
			*model = res.model
		case "error":
			failed = !r.null()
			if failed {
				r.skip()
			}
		default:
			r.skip()
		}
	}
	if r.err || failed || !res.usage.ok || res.status < 200 || res.status > 299 {
		return ""
	}
	sums[string(res.model)] = addUsage(sums[string(res.model)], res.usage.u)
	return ""
}

// batchResult is what a batch output line's "response" holds.
type batchResult struct {
	status int64 // 0 unless an integer
	model  []byte
	usage  usageResult
}

// readBatchResponse reads a line's "response": {"status_code", "body":
// {"model", "usage"}}; the model is decoded into model's storage.
func readBatchResponse(r *reader, model []byte) (res batchResult) {
	res.model = model
	if !r.openObject() {
		r.skip()
		return res
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "status_code":
			res.status = 0
			if c := r.peek(); c != '-' && (c < '0' || c > '9') {
				r.skip()
			} else if v, ok := r.integer(); ok { // consumes the number even when !ok
				res.status = v
			}
		case "body":
			res.model, res.usage = readBatchBody(r, res.model[:0])
		default:
			r.skip()
		}
	}
	return res
}

// readBatchBody reads the model and usage of a response body.
func readBatchBody(r *reader, model []byte) ([]byte, usageResult) {
	var usage usageResult
	if !r.openObject() {
		r.skip()
		return model, usage
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "model":
			model = model[:0]
			if r.peek() == '"' {
				model, _ = r.str(model, len(r.b))
			} else {
				r.skip()
			}
		case "usage":
			usage = readUsageValue(r)
		default:
			r.skip()
		}
	}
	return model, usage
}

// addUsage sums two usages, saturating each count.
func addUsage(a, b Usage) Usage {
	return Usage{
		PromptTokens:     saturatingAdd(a.PromptTokens, b.PromptTokens),
		CompletionTokens: saturatingAdd(a.CompletionTokens, b.CompletionTokens),
		CachedTokens:     saturatingAdd(a.CachedTokens, b.CachedTokens),
		ReasoningTokens:  saturatingAdd(a.ReasoningTokens, b.ReasoningTokens),
		TotalTokens:      saturatingAdd(a.TotalTokens, b.TotalTokens),
		ImageTokens:      saturatingAdd(a.ImageTokens, b.ImageTokens),
		Seconds:          a.Seconds + b.Seconds,
	}
}
