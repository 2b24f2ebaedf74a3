// Package jsonstr writes JSON string literals into byte slices, as
// encoding/json writes them but without escaping <, > and & (the text is
// data, never embedded in HTML), and without a reflection round trip. The
// capture path (packages redact and transcript) rewrites and builds JSON
// documents piece by piece and needs exactly that.
//
// The usage event encoder (eventsink) has its own: it must match protojson,
// which neither escapes U+2028/U+2029 nor writes U+FFFD as an escape.
package jsonstr

import "unicode/utf8"

// Append appends s to dst as a JSON string literal. It escapes what JSON
// requires (", \ and control characters, \n, \r and \t by name) and, as
// encoding/json does, U+2028 and U+2029; each byte of invalid UTF-8 becomes
// \ufffd.
func Append(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, `\n`...)
			case c == '\r':
				dst = append(dst, `\r`...)
			case c == '\t':
				dst = append(dst, `\t`...)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
