package cachefilter

import "bytes"

// Capture is a bounded copy of a response body taken while the body passes
// to the client unchanged, and the judge of whether it is complete enough to
// store. Feed it every chunk with [Capture.Write], then call [Capture.End]
// at the end of the stream; an aborted response never reaches End, so it is
// never complete. A Capture is used by one goroutine.
type Capture struct {
	limit int
	buf   []byte
	over  bool // more than limit bytes came: nothing is kept
	ended bool
	sse   bool

	// SSE parsing (sse only): buf[scanned:] is unparsed, buf[line:] is the
	// current line.
	scanned, line int
	lastCR        bool // the last line ending was a CR, so a LF right after it is part of it
	dataLines     int  // data lines in the current event
	dataDone      bool // the current event's first data line is "[DONE]"
	done          bool // a [DONE] event was dispatched
}

// NewCapture returns a Capture of a JSON (or other non-streamed) body of up
// to limit bytes: complete once [Capture.End] is called within the limit.
func NewCapture(limit int) *Capture {
	return &Capture{limit: limit}
}

// NewStreamCapture returns a Capture of a server-sent-events body of up to
// limit bytes: complete only once a "data: [DONE]" event was dispatched (its
// blank line seen) and [Capture.End] was called, within the limit. Events
// and line endings (LF, CRLF, CR) may be split across chunks anywhere.
func NewStreamCapture(limit int) *Capture {
	return &Capture{limit: limit, sse: true}
}

// Write appends chunk to the capture. It returns false once the body went
// over the limit: the capture then drops what it held, keeps nothing more,
// and is never complete.
func (c *Capture) Write(chunk []byte) bool {
	if c.over {
		return false
	}
	if len(c.buf)+len(chunk) > c.limit {
		c.over, c.buf = true, nil
		return false
	}
	c.buf = append(c.buf, chunk...)
	if c.sse {
		c.scan()
	}
	return true
}

// End records that the body reached its end of stream.
func (c *Capture) End() { c.ended = true }

// Complete reports whether the body may be stored: the end of stream was
// reached within the limit and, for a stream, the [DONE] event was seen.
func (c *Capture) Complete() bool {
	return c.ended && !c.over && (!c.sse || c.done)
}

// Stream reports whether c captures a server-sent-events body.
func (c *Capture) Stream() bool { return c.sse }

// Bytes returns the captured body; nil once over the limit. The slice is
// c's own: it must not be modified, and is valid until the next Write.
func (c *Capture) Bytes() []byte { return c.buf }

// scan parses the lines completed since the last call.
func (c *Capture) scan() {
	for i := c.scanned; i < len(c.buf); i++ {
		switch b := c.buf[i]; b {
		case '\n':
			if c.lastCR && c.line == i {
				// The LF of a CRLF whose CR ended the line already.
				c.line, c.lastCR = i+1, false
				continue
			}
			fallthrough
		case '\r':
			c.onLine(c.buf[c.line:i])
			c.line, c.lastCR = i+1, b == '\r'
		default:
			c.lastCR = false
		}
	}
	c.scanned = len(c.buf)
}

var doneData = []byte("[DONE]")

// onLine interprets one SSE line (WHATWG HTML, server-sent events).
func (c *Capture) onLine(l []byte) {
	if len(l) == 0 { // blank line: dispatch the event
		if c.dataLines == 1 && c.dataDone {
			c.done = true
		}
		c.dataLines, c.dataDone = 0, false
		return
	}
	if l[0] == ':' {
		return // comment
	}
	name, val, found := bytes.Cut(l, []byte{':'})
	if found && len(val) > 0 && val[0] == ' ' {
		val = val[1:]
	}
	if string(name) != "data" {
		return
	}
	if c.dataLines == 0 {
		c.dataDone = bytes.Equal(val, doneData)
	}
	c.dataLines++
}
