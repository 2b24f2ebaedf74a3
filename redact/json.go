package redact

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/jsonstr"
)

// credentialKeys are the JSON member names, compared case-insensitively,
// whose whole value [Redactor.JSON] replaces: headers dumped into a body, and
// the key parameters of tool calls.
var credentialKeys = []string{"authorization", "proxy-authorization", "api-key", "api_key", "apikey", "x-api-key"}

// quotedPlaceholder is what replaces a JSON value.
const quotedPlaceholder = `"` + Placeholder + `"`

// JSON returns doc, a JSON document such as a request or response body,
// with the secrets and r's patterns replaced by [Placeholder]; doc itself
// when nothing matched.
//
// When doc is valid JSON (as encoding/json judges it, nesting limit
// included), the result is valid JSON with the same structure, member order,
// numbers and whitespace: every string, member names included, is redacted
// on its decoded text, so escapes ("sk-\u0070roj-…") hide nothing, and is
// written back re-encoded only if it changed; the value of a member named
// like a credential (see credentialKeys: "authorization", "x-api-key", …)
// becomes the placeholder string whatever it was; a number that a pattern
// matches (a card number written as a number) becomes the placeholder
// string.
//
// Otherwise — a body cut by a cap, or not JSON — the result is doc with
// every match of [Redactor.String] replaced in two readings of it: the raw
// text, and the text with JSON's escapes (\/ \b \f \n \r \t \uXXXX,
// surrogate pairs too) decoded wherever they are, a match there replacing the
// raw bytes it was decoded from, whole escapes included. Escaped quotes and
// backslashes stay escaped in that reading, so a quoted value still ends at
// its closing quote. What is guaranteed: no secret shape is left in either
// reading, whether or not it was escaped. What is not: a credential-named
// member's value is removed only when a text rule finds it ("authorization"
// does, "x-api-key" does not), a secret split by a cut is removed only if
// its head is long enough, and the result is not JSON.
func (r *Redactor) JSON(doc []byte) []byte {
	if !json.Valid(doc) {
		return r.text(doc)
	}
	w := walker{r: r, src: doc}
	w.walk()
	if w.out == nil {
		return doc
	}
	return append(w.out, doc[w.last:]...)
}

// walker copies a valid JSON document, rewriting what it redacts.
type walker struct {
	r    *Redactor
	src  []byte
	out  []byte // nil until something changed
	last int    // src[:last] is in out
}

// rewrite replaces src[start:end] by b.
func (w *walker) rewrite(start, end int, b []byte) {
	if w.out == nil {
		w.out = make([]byte, 0, len(w.src)+len(b))
	}
	w.out = append(w.out, w.src[w.last:start]...)
	w.out = append(w.out, b...)
	w.last = end
}

func (w *walker) walk() {
	src := w.src
	for i := 0; i < len(src); {
		switch c := src[i]; {
		case c == '"':
			end := stringEnd(src, i)
			j := skipSpace(src, end)
			if j < len(src) && src[j] == ':' { // a member name
				name := decodeString(src[i:end])
				w.redactString(i, end, name)
				if isCredentialKey(name) {
					v := skipSpace(src, j+1)
					vend := valueEnd(src, v)
					w.rewrite(v, vend, []byte(quotedPlaceholder))
					i = vend
					continue
				}
				i = j + 1
				continue
			}
			w.redactString(i, end, decodeString(src[i:end]))
			i = end
		case c == '-' || isDigit(c):
			end := i + 1
			for end < len(src) && strings.IndexByte("+-.eE0123456789", src[end]) >= 0 {
				end++
			}
			if w.r != nil && len(w.r.spans(string(src[i:end]), nil)) > 0 {
				w.rewrite(i, end, []byte(quotedPlaceholder))
			}
			i = end
		default:
			i++
		}
	}
}

// redactString rewrites the string literal src[start:end], whose decoded
// text is s, if s has something to redact.
func (w *walker) redactString(start, end int, s string) {
	spans := w.r.spans(s, nil)
	if len(spans) == 0 {
		return
	}
	w.rewrite(start, end, jsonstr.Append(nil, string(replace(nil, s, spans))))
}

func isCredentialKey(name string) bool {
	for _, k := range credentialKeys {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// stringEnd returns the end of the string literal at src[i] of a valid
// document.
func stringEnd(src []byte, i int) int {
	for i++; src[i] != '"'; i++ {
		if src[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd returns the end of the value at src[i] of a valid document.
func valueEnd(src []byte, i int) int {
	switch src[i] {
	case '"':
		return stringEnd(src, i)
	case '{', '[':
		for depth := 0; ; {
			switch src[i] {
			case '"':
				i = stringEnd(src, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(src) && strings.IndexByte(",}] \t\r\n", src[i]) < 0 {
		i++
	}
	return i
}

func skipSpace(src []byte, i int) int {
	for i < len(src) && strings.IndexByte(" \t\r\n", src[i]) >= 0 {
		i++
	}
	return i
}

// decodeString decodes a valid string literal as encoding/json does (invalid
// UTF-8 and lone surrogates become U+FFFD), so what is redacted is what a
// reader of the document will see.
func decodeString(lit []byte) string {
	body := lit[1 : len(lit)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body)
	}
	var s string
	_ = json.Unmarshal(lit, &s) // valid: the document was
	return s
}

// text redacts a document that is not valid JSON; see [Redactor.JSON].
func (r *Redactor) text(doc []byte) []byte {
	raw := string(doc)
	spans := r.spans(raw, nil)
	if bytes.IndexByte(doc, '\\') >= 0 && len(doc) < math.MaxInt32 {
		view, from, to := unescape(doc)
		for _, sp := range r.spans(view, nil) {
			spans = append(spans, span{int(from[sp.start]), int(to[sp.end-1])})
		}
	}
	if len(spans) == 0 {
		return doc
	}
	return replace(nil, raw, spans)
}

// unescape decodes JSON's escapes wherever they are in doc, leaving any
// other byte as it is, except that a quote or backslash, however escaped,
// stays escaped (as \" or \\): strings keep their ends, so a quoted value
// still runs to its closing quote. Byte i of the result came from
// doc[from[i]:to[i]].
func unescape(doc []byte) (view string, from, to []int32) {
	out := make([]byte, 0, len(doc))
	from = make([]int32, 0, len(doc))
	to = make([]int32, 0, len(doc))
	emit := func(b []byte, start, end int) {
		out = append(out, b...)
		for range b {
			from = append(from, int32(start))
			to = append(to, int32(end))
		}
	}
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(doc); {
		if doc[i] != '\\' || i+1 == len(doc) {
			emit(doc[i:i+1], i, i+1)
			i++
			continue
		}
		if c := doc[i+1]; c == '"' || c == '\\' {
			emit(doc[i:i+2], i, i+2)
			i += 2
			continue
		}
		if c := simpleEscape(doc[i+1]); c != 0 {
			emit([]byte{c}, i, i+2)
			i += 2
			continue
		}
		r, ok := hex4(doc, i)
		if !ok {
			emit(doc[i:i+1], i, i+1)
			i++
			continue
		}
		end := i + 6
		if utf16.IsSurrogate(r) {
			if r2, ok := hex4(doc, end); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
				r, end = utf16.DecodeRune(r, r2), end+6
			} else {
				r = utf8.RuneError
			}
		}
		if r == '"' || r == '\\' {
			emit([]byte{'\\', byte(r)}, i, end)
		} else {
			emit(buf[:utf8.EncodeRune(buf[:], r)], i, end)
		}
		i = end
	}
	return string(out), from, to
}

// simpleEscape returns the byte that a backslash and c stand for, 0 if c
// starts no one-character escape.
func simpleEscape(c byte) byte {
	switch c {
	case '/':
		return c
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return 0
}

// hex4 decodes a \uXXXX escape at doc[i].
func hex4(doc []byte, i int) (rune, bool) {
	if i+6 > len(doc) || doc[i] != '\\' || doc[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range doc[i+2 : i+6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c|0x20 && c|0x20 <= 'f':
			c = c | 0x20 - 'a' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
