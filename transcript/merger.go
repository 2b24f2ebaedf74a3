package transcript

import (
	"bytes"
	"maps"
	"slices"
)

// Overhead bounds what a rebuilt result adds to the cap: the members every
// result has, written even when empty. See [Merger.Result].
const Overhead = 256

// eventSlack is how far past the cap one event may grow before it is
// dropped: a chunk or a final response event a little larger than the text
// kept is still read.
const eventSlack = 64 << 10

// maxSummaryText bounds a model name kept for [Merger.Summary], and
// maxReasons the number of finish reasons: OpenAI allows n up to 128.
const (
	maxSummaryText = 256
	maxReasons     = 128
)

// Merger rebuilds the response of one request from the server-sent events
// of its streamed body. Make one with [NewMerger]. A Merger belongs to one
// stream and is not safe for concurrent use.
type Merger struct {
	kind      Kind
	max       int  // the cap, in bytes of the result
	used      int  // bytes of the result charged so far
	truncated bool // something did not fit, or an event was too large
	done      bool // the stream's end was read; later bytes are ignored
	seen      bool // an event of the stream's kind was read
	sse       sseReader

	// For Summary, kept whether or not the result has room.
	model   string
	reasons map[int]string // chat and completions: finish reasons by choice index

	chat chatState
	resp respState
}

// NewMerger returns a [Merger] for a stream of responses of kind k whose
// result is capped at limit bytes (plus [Overhead]); limit < 0 counts as 0.
//
// The cap also bounds memory: a Merger keeps the text the result will hold
// (at most limit bytes, escaped as in the result), the event being read (at
// most limit plus 64 KiB; a larger event is dropped and marks the result
// truncated), and a bounded summary.
func NewMerger(k Kind, limit int) *Merger {
	limit = max(limit, 0)
	return &Merger{kind: k, max: limit, sse: sseReader{limit: limit + eventSlack}}
}

// Write reads the next bytes of the response body, which may split events,
// lines, CRLF pairs and UTF-8 sequences anywhere. It never fails: an event
// it cannot read (not JSON, not of the stream's kind) is skipped, and a
// "data: [DONE]" event, or a Responses API terminal event, ends the stream:
// later bytes are ignored. Write does not retain p.
func (m *Merger) Write(p []byte) {
	if m.done {
		return
	}
	m.sse.write(p, m.event)
}

func (m *Merger) event(e event) {
	if m.done {
		return
	}
	if e.long {
		m.truncated = true
		if m.kind == Responses {
			m.respDropped(e)
		}
		return
	}
	data := bytes.TrimSpace(e.data)
	if string(data) == "[DONE]" {
		m.done = true
		return
	}
	switch m.kind {
	case ChatCompletions, Completions:
		m.chatChunk(data)
	case Responses:
		m.respEvent(e.name, data)
	}
}

// Result returns the merged response and whether it is truncated: some text
// did not fit the cap, or an event was too large to read. doc is nil if no
// event of the stream's kind was read.
//
// doc is always valid JSON, a whole object of the non-stream shape:
//
//   - chat: a chat.completion with id, object, created, model, the choices
//     in index order, each with its message (role, content, refusal when
//     any, tool_calls in index order with their arguments joined, a
//     function_call when the deprecated form was used) and finish_reason,
//     then usage (from a stream_options.include_usage chunk), service_tier
//     and system_fingerprint when seen, and a mid-stream error when one came;
//   - completions: a text_completion, the same with each choice's text;
//   - Responses API: the response of the terminal event (response.completed,
//     .incomplete or .failed) as it came, when it fits the cap; otherwise
//     one rebuilt from the events: id, object, created_at, status,
//     model, output (messages with their output_text and refusal parts,
//     function calls with their arguments, other items as their last event
//     showed them), usage, incomplete_details and error when seen. A
//     terminal event too large to read still gives the status.
//
// len(doc) is at most the cap plus [Overhead]: every text, name, index,
// item and usage object is charged to the cap as it will be written,
// escapes included, and what does not fit is left out (a text is cut
// between runes, after what fitted). A stream whose whole result is at most
// the cap is never truncated by it. Result may be called at any time, more
// than once; the stream need not have ended.
func (m *Merger) Result() (doc []byte, truncated bool) {
	if !m.seen {
		return nil, m.truncated
	}
	switch m.kind {
	case ChatCompletions, Completions:
		return m.chatResult(), m.truncated
	case Responses:
		if m.resp.asIs != nil {
			return m.resp.asIs, false
		}
		return m.respResult(), m.truncated
	}
	return nil, m.truncated
}

// Summary returns the model and finish reasons the stream reported so far;
// see [Summary]. It does not depend on the cap.
func (m *Merger) Summary() Summary {
	s := Summary{Model: m.model}
	switch m.kind {
	case ChatCompletions, Completions:
		for _, i := range slices.Sorted(maps.Keys(m.reasons)) {
			s.FinishReasons = append(s.FinishReasons, m.reasons[i])
		}
	case Responses:
		if m.resp.terminal != "" {
			s.FinishReasons = []string{m.resp.terminal}
		}
	}
	return s
}

// setModel keeps the model for Summary.
func (m *Merger) setModel(model string) {
	if model != "" {
		m.model = model[:min(len(model), maxSummaryText)]
	}
}

// charge takes n bytes of the cap; false, and the result marked truncated,
// if they do not fit.
func (m *Merger) charge(n int) bool {
	if m.used+n > m.max {
		m.truncated = true
		return false
	}
	m.used += n
	return true
}

// appendText appends to *dst as much of s as the cap has room for, charged
// as it will be escaped.
func (m *Merger) appendText(dst *[]byte, s string) {
	part, n := fit(s, m.max-m.used)
	m.used += n
	*dst = append(*dst, part...)
	if len(part) < len(s) {
		m.truncated = true
	}
}

// setString sets *dst to s if it fits, charged as it will be escaped (its
// quotes are part of what holds it).
func (m *Merger) setString(dst *string, s string) {
	if *dst == s {
		return
	}
	old, n := escapedLen(*dst), escapedLen(s)
	if m.used-old+n > m.max {
		m.truncated = true
		return
	}
	m.used += n - old
	*dst = s
}

// setRaw sets *dst to raw, a compact JSON value, if it fits; nil raw leaves
// *dst as it is.
func (m *Merger) setRaw(dst *[]byte, raw []byte) {
	if raw == nil {
		return
	}
	if m.used-len(*dst)+len(raw) > m.max {
		m.truncated = true
		return
	}
	m.used += len(raw) - len(*dst)
	*dst = raw
}

// sortedKeys returns the keys of a map of items by index, in order.
func sortedKeys[V any](m map[int]V) []int {
	return slices.Sorted(maps.Keys(m))
}
