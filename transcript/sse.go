package transcript

import "bytes"

// headLen is how much of an event too large to keep is kept anyway: enough
// for the "type" that OpenAI writes first in a Responses API event, so a
// dropped terminal event still tells the response's status.
const headLen = 512

// keepCap is the most capacity the data buffer keeps between events.
const keepCap = 64 << 10

// maxNameLen bounds an event's "event:" field kept.
const maxNameLen = 64

// sseReader splits a text/event-stream body, written in chunks split
// anywhere, into events, as the SSE specification says: lines end in LF,
// CRLF or CR; a blank line ends an event; its data lines are joined with LF;
// comments (":…") and fields other than data and event are ignored. An event
// that does not end with a blank line is never dispatched.
//
// An event whose lines and data grow past limit is not kept: it is
// dispatched as long, with only the first [headLen] bytes of its data.
type sseReader struct {
	limit int

	line     []byte // the incomplete last line of previous writes
	lineLong bool   // line outgrew limit; it holds at most headLen bytes
	skipLF   bool   // the last write ended in CR: a leading LF ends the same line
	data     []byte // the data of the event being read, lines joined by LF
	hasData  bool
	long     bool   // the event outgrew limit; data holds at most headLen bytes
	name     []byte // the event's "event:" field
}

// event is one dispatched event. Its slices are valid until the next write.
type event struct {
	name []byte
	data []byte
	long bool // data is only the head of an event too large to keep
}

// write reads the next chunk, calling dispatch for each event it ends.
func (s *sseReader) write(chunk []byte, dispatch func(event)) {
	off := 0
	if s.skipLF && len(chunk) > 0 {
		s.skipLF = false
		if chunk[0] == '\n' {
			off = 1
		}
	}
	for off < len(chunk) {
		end := off + bytes.IndexAny(chunk[off:], "\r\n")
		if end < off {
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
		s.processLine(line, s.lineLong, dispatch)
		s.line, s.lineLong = s.line[:0], false
		if cap(s.line) > keepCap {
			s.line = nil
		}
	}
}

// carry keeps part of a line that continues in a later write: all of it
// while the event fits the limit, its head after.
func (s *sseReader) carry(b []byte) {
	if !s.lineLong && len(s.data)+len(s.line)+len(b) > s.limit {
		s.lineLong = true
	}
	if s.lineLong {
		b = b[:max(0, min(len(b), headLen-len(s.line)))]
	}
	s.line = append(s.line, b...)
}

func (s *sseReader) processLine(line []byte, long bool, dispatch func(event)) {
	if len(line) == 0 {
		if s.hasData {
			dispatch(event{name: s.name, data: s.data, long: s.long})
		}
		s.data, s.hasData, s.long, s.name = s.data[:0], false, false, s.name[:0]
		if cap(s.data) > keepCap {
			s.data = nil // one big event should not pin its buffer
		}
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
	switch string(name) {
	case "event":
		s.name = append(s.name[:0], value[:min(len(value), maxNameLen)]...)
	case "data":
		if s.hasData {
			s.appendData([]byte{'\n'}, false)
		}
		s.appendData(value, long)
		s.hasData = true
	}
}

// appendData adds to the event's data, which keeps only its head once the
// event is long.
func (s *sseReader) appendData(b []byte, long bool) {
	if !s.long && (long || len(s.data)+len(b) > s.limit) {
		s.long = true
		s.data = s.data[:min(len(s.data), headLen)]
	}
	if s.long {
		b = b[:max(0, min(len(b), headLen-len(s.data)))]
	}
	s.data = append(s.data, b...)
}
