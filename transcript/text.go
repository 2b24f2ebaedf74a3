package transcript

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/jsonstr"
)

// escLen is the length of r as jsonstr.Append writes it inside a string.
func escLen(r rune, size int) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 2
	case r < 0x20, r == '\u2028', r == '\u2029', r == utf8.RuneError && size == 1:
		return 6
	}
	return size
}

// escapedLen is the length of s as jsonstr.Append writes it, quotes excluded.
func escapedLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		n += escLen(r, size)
		i += size
	}
	return n
}

// fit returns the longest prefix of s, cut between runes, whose escaped
// length is at most room, and that length.
func fit(s string, room int) (string, int) {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		e := escLen(r, size)
		if n+e > room {
			return s[:i], n
		}
		n += e
		i += size
	}
	return s, n
}

// appendMember appends ,"key": and the string v; nothing if v is empty.
func appendMember(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return jsonstr.Append(dst, v)
}

// appendStringOrNull appends v, or null if it was never set.
func appendStringOrNull(dst []byte, v string, set bool) []byte {
	if !set {
		return append(dst, "null"...)
	}
	return jsonstr.Append(dst, v)
}

// compact returns raw, a JSON value, without insignificant space; nil if it
// is JSON null or not JSON.
func compact(raw []byte) []byte {
	if len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return nil
	}
	return b.Bytes()
}

// maxNumberLen bounds the text of a number written in a result, such as a
// timestamp.
const maxNumberLen = 32

// number returns n, a number as the upstream wrote it, if it is short and
// finite; "" otherwise, and the result leaves it out or writes 0.
func number(n json.Number) string {
	if len(n) == 0 || len(n) > maxNumberLen {
		return ""
	}
	if _, err := strconv.ParseFloat(string(n), 64); err != nil {
		return ""
	}
	return string(n)
}

// appendNumber appends n, a number literal, or 0 if there is none.
func appendNumber(dst []byte, n string) []byte {
	if n == "" {
		return append(dst, '0')
	}
	return append(dst, n...)
}

func appendInt(dst []byte, i int) []byte {
	return strconv.AppendInt(dst, int64(i), 10)
}
