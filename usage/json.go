package usage

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// reader is a small forward-only JSON reader over one byte slice. It exists
// because the hot paths of this package (a request body once per request, an
// SSE payload per streamed chunk) need a handful of fields out of documents
// that are mostly irrelevant, and encoding/json allocates for every string it
// decodes and matches keys case-insensitively, unlike OpenAI's API.
//
// reader never allocates except to grow a caller's buffer, never recurses on
// input depth (skip counts brackets) and never panics: on malformed input it
// sets err and moves to the end, so every loop over it terminates. It is
// lenient where leniency costs nothing (a stray comma is accepted); callers
// that must reject invalid JSON run validJSON first.
type reader struct {
	b   []byte
	i   int
	err bool
	key []byte // scratch for object keys that contain escapes
}

func (r *reader) fail() {
	r.err = true
	r.i = len(r.b)
}

// peek skips white space and returns the next byte, or 0 at the end.
func (r *reader) peek() byte {
	for r.i < len(r.b) {
		switch c := r.b[r.i]; c {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return c
		}
	}
	return 0
}

// null consumes a null literal if one is next.
func (r *reader) null() bool {
	if r.peek() == 'n' && bytes.HasPrefix(r.b[r.i:], litNull) {
		r.i += len(litNull)
		return true
	}
	return false
}

var (
	litNull  = []byte("null")
	litTrue  = []byte("true")
	litFalse = []byte("false")
)

// boolean consumes true or false; ok is false (nothing consumed) otherwise.
func (r *reader) boolean() (v, ok bool) {
	switch r.peek() {
	case 't':
		if bytes.HasPrefix(r.b[r.i:], litTrue) {
			r.i += len(litTrue)
			return true, true
		}
	case 'f':
		if bytes.HasPrefix(r.b[r.i:], litFalse) {
			r.i += len(litFalse)
			return false, true
		}
	}
	return false, false
}

// openObject consumes '{' if an object is next.
func (r *reader) openObject() bool {
	if r.peek() == '{' {
		r.i++
		return true
	}
	return false
}

// openArray consumes '[' if an array is next.
func (r *reader) openArray() bool {
	if r.peek() == '[' {
		r.i++
		return true
	}
	return false
}

// nextKey reads the next key of an object opened with openObject and the ':'
// after it. It returns false at the closing '}' (consumed) or on an error.
// The key aliases the input or r.key; it is valid until the next call. The
// caller must consume the value (read it or skip it) before calling again.
func (r *reader) nextKey() ([]byte, bool) {
	c := r.peek()
	if c == ',' {
		r.i++
		c = r.peek()
	}
	if c == '}' {
		r.i++
		return nil, false
	}
	if c != '"' {
		r.fail()
		return nil, false
	}
	start := r.i + 1
	r.skipString()
	if r.err {
		return nil, false
	}
	key := r.b[start : r.i-1]
	if bytes.IndexByte(key, '\\') >= 0 {
		kr := reader{b: r.b, i: start - 1}
		r.key, _ = kr.str(r.key[:0], maxKeyLen)
		key = r.key
	}
	if r.peek() != ':' {
		r.fail()
		return nil, false
	}
	r.i++
	return key, true
}

// maxKeyLen bounds the decoded length of an escaped key; no key we look for
// is anywhere near it.
const maxKeyLen = 64

// nextElem reports whether another element follows in an array opened with
// openArray; it consumes the closing ']' and returns false at the end. The
// caller must consume the element before calling again.
func (r *reader) nextElem() bool {
	c := r.peek()
	if c == ',' {
		r.i++
		c = r.peek()
	}
	switch c {
	case ']':
		r.i++
		return false
	case 0:
		r.fail()
		return false
	}
	return true
}

// skip consumes one value of any kind.
func (r *reader) skip() {
	switch c := r.peek(); {
	case c == '"':
		r.skipString()
	case c == '{' || c == '[':
		depth := 0
		for r.i < len(r.b) {
			switch r.b[r.i] {
			case '"':
				r.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					r.i++
					return
				}
			}
			r.i++
		}
		r.fail()
	case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
		for r.i < len(r.b) && !isDelim(r.b[r.i]) {
			r.i++
		}
	default:
		r.fail()
	}
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r', ':', '"', '{', '[':
		return true
	}
	return false
}

// skipString consumes a string; r.b[r.i] must be '"'.
func (r *reader) skipString() {
	i := r.i + 1
	for {
		j := bytes.IndexByte(r.b[i:], '"')
		if j < 0 {
			r.fail()
			return
		}
		i += j
		// The quote is escaped if an odd number of backslashes precede it.
		k := i
		for r.b[k-1] == '\\' {
			k--
		}
		i++
		if (i-1-k)%2 == 0 {
			r.i = i
			return
		}
	}
}

// span consumes one value and returns its bytes.
func (r *reader) span() []byte {
	r.peek()
	start := r.i
	r.skip()
	if r.err {
		return nil
	}
	return r.b[start:r.i]
}

// escapeLetters are the letters of JSON's one-letter escapes, each decoding
// to the byte at its index in escapedBytes.
const (
	escapeLetters = `"\/bfnrt`
	escapedBytes  = "\"\\/\b\f\n\r\t"
)

// str decodes a string value and appends it to dst, keeping len(dst) <= limit;
// n is the decoded length including what did not fit. A value that is not a
// string, or a malformed string, sets err.
func (r *reader) str(dst []byte, limit int) (out []byte, n int) {
	if r.peek() != '"' {
		r.fail()
		return dst, 0
	}
	i := r.i + 1
	for {
		start := i
		for i < len(r.b) && r.b[i] != '"' && r.b[i] != '\\' {
			i++
		}
		dst = appendLimited(dst, r.b[start:i], limit)
		n += i - start
		if i >= len(r.b) {
			r.fail()
			return dst, n
		}
		if r.b[i] == '"' {
			r.i = i + 1
			return dst, n
		}
		// An escape sequence.
		if i+1 >= len(r.b) {
			r.fail()
			return dst, n
		}
		var one [utf8.UTFMax]byte
		var dec []byte
		e := r.b[i+1]
		switch k := strings.IndexByte(escapeLetters, e); {
		case k >= 0:
			one[0], dec = escapedBytes[k], one[:1]
			i += 2
		case e == 'u':
			c, ok := hex4(r.b[i+2:])
			if !ok {
				r.fail()
				return dst, n
			}
			i += 6
			ru := rune(c)
			if utf16.IsSurrogate(ru) {
				ru = utf8.RuneError
				// A high surrogate followed by an escaped low surrogate is one
				// rune; anything else decodes as U+FFFD, as encoding/json does.
				if c < 0xdc00 && i+1 < len(r.b) && r.b[i] == '\\' && r.b[i+1] == 'u' {
					if c2, ok := hex4(r.b[i+2:]); ok {
						if d := utf16.DecodeRune(rune(c), rune(c2)); d != utf8.RuneError {
							ru = d
							i += 6
						}
					}
				}
			}
			dec = utf8.AppendRune(one[:0], ru)
		default:
			r.fail()
			return dst, n
		}
		dst = appendLimited(dst, dec, limit)
		n += len(dec)
	}
}

func hex4(b []byte) (uint16, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var v uint16
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint16(c)
	}
	return v, true
}

func appendLimited(dst, p []byte, limit int) []byte {
	if room := limit - len(dst); room < len(p) {
		if room <= 0 {
			return dst
		}
		p = p[:room]
	}
	return append(dst, p...)
}

// numberToken consumes the token of a value that starts like a number, up to
// the next delimiter, without checking it further. ok is false for a value
// that does not start like a number (nothing consumed).
func (r *reader) numberToken() (tok []byte, ok bool) {
	c := r.peek()
	if c != '-' && (c < '0' || c > '9') {
		return nil, false
	}
	start := r.i
	for r.i < len(r.b) && !isDelim(r.b[r.i]) {
		r.i++
	}
	return r.b[start:r.i], true
}

// integer reads a JSON number that is an integer in int64 range. ok is false
// for any other number (a fraction, an exponent, out of range) — the number is
// still consumed — and for a value that is not a number (nothing consumed).
func (r *reader) integer() (v int64, ok bool) {
	tok, ok := r.numberToken()
	if !ok {
		return 0, false
	}
	neg := tok[0] == '-'
	if neg {
		tok = tok[1:]
	}
	if len(tok) == 0 {
		return 0, false
	}
	var u uint64
	for _, d := range tok {
		if d < '0' || d > '9' {
			return 0, false
		}
		if u > (1<<63)/10 {
			return 0, false
		}
		u = u*10 + uint64(d-'0')
		if u > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(u), true // -(1<<63) wraps to itself: math.MinInt64
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// float reads a JSON number as a finite float64, rounded as strconv (and so
// encoding/json) rounds it. ok is false for a malformed number or one out of
// float64 range — the number is still consumed — and for a value that is not
// a number (nothing consumed).
func (r *reader) float() (v float64, ok bool) {
	tok, ok := r.numberToken()
	if !ok {
		return 0, false
	}
	if validNumber(tok, 0) != len(tok) {
		return 0, false
	}
	// strconv copies the string only into an error, so short numbers are
	// parsed without allocating.
	v, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// runeCount consumes a string value and returns how many code points it
// decodes to — exactly as many as str would decode, invalid UTF-8 bytes and
// unpaired surrogates counting one each — without decoding it. A value that
// is not a string, or a malformed string, sets err.
func (r *reader) runeCount() (n int64) {
	if r.peek() != '"' {
		r.fail()
		return 0
	}
	b := r.b
	i := r.i + 1
	// The next quote at or after i, found once per quote so that a long
	// string with many escapes is scanned in linear time. The string ends
	// there unless a backslash comes first.
	quote := -1
	for {
		if quote < i {
			if quote = bytes.IndexByte(b[i:], '"'); quote < 0 {
				r.fail()
				return n
			}
			quote += i
		}
		backslash := bytes.IndexByte(b[i:quote], '\\')
		if backslash < 0 {
			n += int64(utf8.RuneCount(b[i:quote]))
			r.i = quote + 1
			return n
		}
		backslash += i
		n += int64(utf8.RuneCount(b[i:backslash]))
		i = backslash
		if i+1 >= len(b) {
			r.fail()
			return n
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			c, ok := hex4(b[i+2:])
			if !ok {
				r.fail()
				return n
			}
			i += 6
			// A high surrogate and an escaped low surrogate are one rune.
			if utf16.IsSurrogate(rune(c)) && c < 0xdc00 && i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
				if c2, ok := hex4(b[i+2:]); ok && utf16.DecodeRune(rune(c), rune(c2)) != utf8.RuneError {
					i += 6
				}
			}
		default:
			r.fail()
			return n
		}
		n++
	}
}

// appendCompact appends JSON value src with the white space outside strings
// removed; it is used to count tool definitions roughly as the model sees them.
func appendCompact(dst, src []byte) []byte {
	inString, escaped := false, false
	for _, c := range src {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			dst = append(dst, c)
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
		}
		dst = append(dst, c)
	}
	return dst
}
