package usage

import (
	"bytes"
	"unicode/utf8"
)

// DefaultMaxText is how many bytes of streamed text a [StreamParser] keeps
// unless [NewStreamParser] says otherwise: about 250k tokens of English.
const DefaultMaxText = 1 << 20

// maxEventBytes bounds one SSE event, lines and data: a bigger event (far past
// any Responses API response.completed) is dropped rather than buffered.
const maxEventBytes = 8 << 20

// initialTextCap is the text buffer's first capacity: a typical reply, so
// that most streams allocate it once.
const initialTextCap = 4 << 10

// keepBufferCap is the capacity of a line or data buffer kept across events;
// a buffer that grew past it for one big event is released after it.
const keepBufferCap = 64 << 10

// StreamParser reads a server-sent-events response body (text/event-stream)
// incrementally, as its chunks pass through, for what the stream used:
//
//   - the usage object of any event that carries one, the last one winning: a
//     chat completions chunk's "usage" (the usage-only chunk of
//     stream_options.include_usage) or a Responses API event's
//     "response"."usage" (response.completed, response.incomplete,
//     response.failed);
//   - the text the model produced, for a tokenizer count when no usage
//     arrives: each chat chunk's choices[].delta content, refusal, reasoning
//     (reasoning_content) and tool or function call names and arguments, a
//     completions chunk's choices[].text, and the "delta" of the Responses API
//     text events (output, refusal, reasoning, function/custom/MCP call
//     arguments, code). Audio deltas are not text;
//   - whether the stream reached its end marker: "data: [DONE]", or a
//     Responses API response.completed, response.incomplete or
//     response.failed event.
//
// Chunks may split events, lines and even CRLF pairs anywhere. Lines end in LF,
// CRLF or CR; comment lines (":…", keep-alives) and fields other than data are
// ignored; an event's data lines are joined with LF, as the SSE specification
// says. An event that does not end with a blank line is never read. Payloads
// that are not JSON objects, or are malformed, contribute nothing.
//
// Write does no JSON decoding beyond the members above and, once its buffers
// have grown to the stream's event size, does not allocate. The zero value is
// ready to use and keeps up to [DefaultMaxText] bytes of text. A StreamParser
// belongs to one stream and is not safe for concurrent use.
type StreamParser struct {
	maxText int

	line      []byte // the incomplete last line of previous Writes
	lineLong  bool   // line outgrew maxEventBytes and was dropped
	skipLF    bool   // the last Write ended in CR: a leading LF ends the same line
	data      []byte // the data of the event being read, lines joined by LF
	hasData   bool
	eventLong bool   // the event being read outgrew maxEventBytes and is dropped
	typ       []byte // scratch: the "type" of the payload being read

	text      []byte
	textBytes int64
	truncated bool
	done      bool
	usage     Usage
	hasUsage  bool
}

// NewStreamParser returns a [StreamParser] that keeps up to maxText bytes of
// streamed text; maxText <= 0 means [DefaultMaxText].
func NewStreamParser(maxText int) *StreamParser {
	return &StreamParser{maxText: maxText}
}

// Done reports whether the stream reached its end marker: a "[DONE]" payload,
// or a Responses API terminal event (response.completed, response.incomplete,
// response.failed). A stream that stops without one was cut off.
func (s *StreamParser) Done() bool { return s.done }

// Usage returns the usage of the last event that carried a valid one; ok is
// false if none did.
func (s *StreamParser) Usage() (Usage, bool) { return s.usage, s.hasUsage }

// Text returns a copy of the streamed text kept so far: at most the parser's
// limit, cut at a rune boundary. Count it with [Tokenizer.CountText].
func (s *StreamParser) Text() string { return string(s.text) }

// TextBytes returns the length of all streamed text read, kept or not, so a
// caller can scale the count of a truncated [StreamParser.Text].
func (s *StreamParser) TextBytes() int64 { return s.textBytes }

// Truncated reports whether streamed text was dropped because the limit was
// reached.
func (s *StreamParser) Truncated() bool { return s.truncated }

func (s *StreamParser) textLimit() int {
	if s.maxText <= 0 {
		return DefaultMaxText
	}
	return s.maxText
}

// Write reads the next chunk of the response body. It never fails: what it
// cannot read it skips. It does not retain chunk.
func (s *StreamParser) Write(chunk []byte) {
	off := 0
	if s.skipLF && len(chunk) > 0 {
		s.skipLF = false
		if chunk[0] == '\n' {
			off = 1
		}
	}
	// lf is the next LF at or after off, len(chunk) if none: found once per
	// LF, so a chunk of CR-terminated lines is not rescanned per line.
	lf := -1
	for off < len(chunk) {
		if lf < off {
			if lf = bytes.IndexByte(chunk[off:], '\n'); lf < 0 {
				lf = len(chunk)
			} else {
				lf += off
			}
		}
		end := lf
		if cr := bytes.IndexByte(chunk[off:lf], '\r'); cr >= 0 {
			end = off + cr
		}
		if end == len(chunk) {
			s.carry(chunk[off:])
			return
		}
		line := chunk[off:end]
		if len(s.line) > 0 || s.lineLong {
			s.carry(line)
			line = s.line
		}
		if chunk[end] == '\r' {
			switch {
			case end+1 == len(chunk):
				s.skipLF = true
			case chunk[end+1] == '\n':
				end++
			}
		}
		off = end + 1
		if s.lineLong || len(line) > maxEventBytes {
			s.eventLong = true // the same limit whether or not the line was carried
		} else {
			s.processLine(line)
		}
		s.line, s.lineLong = release(s.line), false
	}
}

// carry keeps part of a line that continues in a later Write.
func (s *StreamParser) carry(b []byte) {
	if s.lineLong || len(s.line)+len(b) > maxEventBytes {
		s.lineLong = true
		return
	}
	s.line = append(s.line, b...)
}

// release empties a buffer, dropping it if one big event made it large.
func release(b []byte) []byte {
	if cap(b) > keepBufferCap {
		return nil
	}
	return b[:0]
}

func (s *StreamParser) processLine(line []byte) {
	if len(line) == 0 {
		s.dispatch()
		return
	}
	if line[0] == ':' {
		return // a comment, such as a keep-alive
	}
	name, value := line, line[len(line):]
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	if string(name) != "data" {
		return // event, id, retry and unknown fields
	}
	if s.eventLong || len(s.data)+1+len(value) > maxEventBytes {
		s.eventLong = true
		return
	}
	if s.hasData {
		s.data = append(s.data, '\n')
	}
	s.data = append(s.data, value...)
	s.hasData = true
}

// dispatch handles the event that a blank line ended.
func (s *StreamParser) dispatch() {
	if s.hasData && !s.eventLong {
		s.payload(s.data)
	}
	s.data, s.hasData, s.eventLong = release(s.data), false, false
}

// eventState is what one payload adds, committed only if it reads cleanly.
type eventState struct {
	mark    int   // len(s.text) before the payload
	bytes   int64 // text read, kept or not
	dropped bool  // text did not fit
	usage   usageResult
	nested  usageResult
}

// maxTypeLen bounds the "type" of a Responses API event kept for matching.
const maxTypeLen = 64

func (s *StreamParser) payload(p []byte) {
	p = trimSpace(p)
	if string(p) == "[DONE]" {
		s.done = true
		return
	}
	r := reader{b: p}
	if !r.openObject() {
		return
	}
	ev := eventState{mark: len(s.text)}
	delta := -1 // offset of a top-level string "delta"
	s.typ = s.typ[:0]
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "choices":
			s.choices(&r, &ev)
		case "usage":
			ev.usage = readUsageValue(&r)
		case "response":
			ev.nested = readResponseUsage(&r)
		case "type":
			s.typ = s.typ[:0]
			if r.peek() == '"' {
				s.typ, _ = r.str(s.typ, maxTypeLen)
			} else {
				r.skip()
			}
		case "delta":
			delta = -1
			if r.peek() == '"' {
				delta = r.i
			}
			r.skip()
		default:
			r.skip()
		}
	}
	if delta >= 0 && !r.err && textDelta(s.typ) {
		r.i = delta
		s.appendText(&r, &ev)
	}
	if r.err {
		s.text = s.text[:ev.mark]
		return
	}
	s.textBytes += ev.bytes
	s.truncated = s.truncated || ev.dropped
	switch {
	case ev.usage.ok:
		s.usage, s.hasUsage = ev.usage.u, true
	case ev.nested.ok:
		s.usage, s.hasUsage = ev.nested.u, true
	}
	switch string(s.typ) {
	case "response.completed", "response.incomplete", "response.failed":
		s.done = true
	}
}

// textDelta reports whether a Responses API event of type typ streams model
// output text in its "delta".
func textDelta(typ []byte) bool {
	switch string(typ) {
	case "response.output_text.delta",
		"response.refusal.delta",
		"response.reasoning_text.delta",
		"response.reasoning_summary_text.delta",
		"response.function_call_arguments.delta",
		"response.custom_tool_call_input.delta",
		"response.mcp_call_arguments.delta",
		"response.code_interpreter_call_code.delta",
		"response.shell_call_command.delta":
		return true
	}
	return false
}

func trimSpace(p []byte) []byte {
	for len(p) > 0 && isSpace(p[0]) {
		p = p[1:]
	}
	for len(p) > 0 && isSpace(p[len(p)-1]) {
		p = p[:len(p)-1]
	}
	return p
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// choices reads a chat or completions chunk's "choices".
func (s *StreamParser) choices(r *reader, ev *eventState) {
	if !r.openArray() {
		r.skip()
		return
	}
	for r.nextElem() {
		if !r.openObject() {
			r.skip()
			continue
		}
		for key, more := r.nextKey(); more; key, more = r.nextKey() {
			switch string(key) {
			case "delta":
				s.delta(r, ev)
			case "text":
				s.textValue(r, ev)
			default:
				r.skip()
			}
		}
	}
}

// delta reads a chat chunk's choices[].delta.
func (s *StreamParser) delta(r *reader, ev *eventState) {
	if !r.openObject() {
		r.skip()
		return
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "content", "refusal", "reasoning", "reasoning_content":
			s.textValue(r, ev)
		case "tool_calls":
			if !r.openArray() {
				r.skip()
				continue
			}
			for r.nextElem() {
				s.call(r, ev, true)
			}
		case "function_call":
			s.call(r, ev, false)
		default:
			r.skip()
		}
	}
}

// call reads a streamed tool call ({"function": {…}} or {"custom": {…}}, when
// wrapped) or function call: its name and arguments (input).
func (s *StreamParser) call(r *reader, ev *eventState, wrapped bool) {
	if !r.openObject() {
		r.skip()
		return
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch k := string(key); {
		case wrapped && (k == "function" || k == "custom"):
			s.call(r, ev, false)
		case !wrapped && (k == "name" || k == "arguments" || k == "input"):
			s.textValue(r, ev)
		default:
			r.skip()
		}
	}
}

// textValue appends a string value to the text; other values are skipped.
func (s *StreamParser) textValue(r *reader, ev *eventState) {
	if r.peek() != '"' {
		r.skip()
		return
	}
	s.appendText(r, ev)
}

// appendText decodes the string at r into the text, within the limit.
func (s *StreamParser) appendText(r *reader, ev *eventState) {
	limit := s.textLimit()
	if s.truncated || ev.dropped {
		limit = len(s.text) // full: only count
	}
	if s.text == nil {
		s.text = make([]byte, 0, min(limit, initialTextCap))
	}
	before := len(s.text)
	var n int
	s.text, n = r.str(s.text, limit)
	ev.bytes += int64(n)
	if len(s.text)-before < n {
		ev.dropped = true
		s.text = trimPartialRune(s.text, before)
	}
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of b, not
// cutting below floor.
func trimPartialRune(b []byte, floor int) []byte {
	for j := len(b) - 1; j >= floor && j >= len(b)-utf8.UTFMax; j-- {
		if utf8.RuneStart(b[j]) {
			if !utf8.FullRune(b[j:]) {
				return b[:j]
			}
			break
		}
	}
	return b
}
