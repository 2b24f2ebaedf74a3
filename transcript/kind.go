package transcript

import (
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// Kind is the kind of response a request path returns, which decides how a
// stream of it is merged.
type Kind int

// The kinds of response [KindOf] knows.
const (
	// ChatCompletions: chat.completion, streamed as chat.completion.chunk.
	ChatCompletions Kind = iota + 1
	// Completions: the legacy text_completion, streamed as text_completion
	// chunks.
	Completions
	// Responses: the Responses API's response object, streamed as typed
	// events (response.created, response.output_text.delta, …).
	Responses
)

// KindOf returns the kind of response path returns when it creates one: the
// POST paths of the three APIs, with or without a query string or a trailing
// slash. ok is false for any other path.
func KindOf(path string) (k Kind, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	switch strings.TrimSuffix(path, "/") {
	case "/v1/chat/completions":
		return ChatCompletions, true
	case "/v1/completions":
		return Completions, true
	case "/v1/responses":
		return Responses, true
	}
	return 0, false
}

// Summary is what a response says about itself beyond usage: what traces
// record as gen_ai.response.model and gen_ai.response.finish_reasons.
type Summary struct {
	// Model is the model that answered, as the response names it.
	Model string
	// FinishReasons are, for chat and completions, the finish_reason of each
	// choice that has one, in index order; for the Responses API, the
	// response's status ("completed", "incomplete", "failed") once it has
	// one. Empty when the response says nothing of it (a stream cut off).
	FinishReasons []string
}

// Summarize returns the [Summary] of a non-stream response body of kind k;
// the zero Summary if body is not such a response.
func Summarize(k Kind, body []byte) Summary {
	type choice struct {
		Index        int    `json:"index"`
		FinishReason string `json:"finish_reason"`
	}
	var v struct {
		Model   string   `json:"model"`
		Status  string   `json:"status"`
		Choices []choice `json:"choices"`
	}
	if !unmarshal(body, &v) {
		return Summary{}
	}
	s := Summary{Model: v.Model}
	switch k {
	case Responses:
		if v.Status != "" {
			s.FinishReasons = []string{v.Status}
		}
	case ChatCompletions, Completions:
		slices.SortStableFunc(v.Choices, func(a, b choice) int { return cmp.Compare(a.Index, b.Index) })
		for _, c := range v.Choices {
			if c.FinishReason != "" {
				s.FinishReasons = append(s.FinishReasons, c.FinishReason)
			}
		}
	default:
		return Summary{}
	}
	return s
}

// unmarshal decodes the JSON object data into v as far as its types allow:
// a member of an unexpected type is left at its zero value rather than
// failing the rest, since an upstream that bends one field should not lose
// the whole response. It reports false if data is not a JSON object.
func unmarshal(data []byte, v any) bool {
	if len(data) == 0 {
		return false
	}
	err := json.Unmarshal(data, v)
	var typeErr *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typeErr) {
		return false
	}
	return firstByte(data) == '{'
}

// firstByte is the first byte of data after JSON whitespace, 0 if none.
func firstByte(data []byte) byte {
	for _, c := range data {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
	}
	return 0
}
