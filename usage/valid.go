package usage

import "encoding/binary"

// maxNestingDepth is encoding/json's limit on nested arrays and objects.
const maxNestingDepth = 10000

// validJSON reports whether b is one valid JSON value, exactly as json.Valid
// does (a fuzz test holds it to that), at several times its speed: it matters
// for request bodies of up to 8 MiB on the hot path. Like json.Valid it does
// not check that strings are valid UTF-8.
func validJSON(b []byte) bool {
	var stack [maxNestingDepth/64 + 1]uint64 // bit set: 1 = object, 0 = array
	depth := 0
	i := skipSpace(b, 0)
value:
	if i >= len(b) {
		return false
	}
	switch c := b[i]; {
	case c == '{':
		if depth++; depth > maxNestingDepth {
			return false
		}
		stack[(depth-1)/64] |= 1 << ((depth - 1) % 64)
		if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
			depth--
			i++
			goto next
		}
		goto key
	case c == '[':
		if depth++; depth > maxNestingDepth {
			return false
		}
		stack[(depth-1)/64] &^= 1 << ((depth - 1) % 64)
		if i = skipSpace(b, i+1); i < len(b) && b[i] == ']' {
			depth--
			i++
			goto next
		}
		goto value
	case c == '"':
		if i = validString(b, i); i < 0 {
			return false
		}
	case c == '-' || c >= '0' && c <= '9':
		if i = validNumber(b, i); i < 0 {
			return false
		}
	case c == 't':
		if i = validLiteral(b, i, "true"); i < 0 {
			return false
		}
	case c == 'f':
		if i = validLiteral(b, i, "false"); i < 0 {
			return false
		}
	case c == 'n':
		if i = validLiteral(b, i, "null"); i < 0 {
			return false
		}
	default:
		return false
	}
next:
	i = skipSpace(b, i)
	if depth == 0 {
		return i == len(b)
	}
	if i >= len(b) {
		return false
	}
	if stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0 { // in an object
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
			goto key
		case '}':
			depth--
			i++
			goto next
		}
		return false
	}
	switch b[i] {
	case ',':
		i = skipSpace(b, i+1)
		goto value
	case ']':
		depth--
		i++
		goto next
	}
	return false
key:
	if i >= len(b) || b[i] != '"' {
		return false
	}
	if i = validString(b, i); i < 0 {
		return false
	}
	if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
		return false
	}
	i = skipSpace(b, i+1)
	goto value
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainStringByte marks the bytes a string may hold unescaped other than '"'
// and '\\': everything from 0x20 up.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plain8 reports whether none of the eight bytes in x is '"', '\\' or below
// 0x20, with the usual SWAR tests for a zero byte and a byte less than n.
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	hits := (quote-ones)&^quote | (backslash-ones)&^backslash | (x-ones*0x20)&^x
	return hits&highs == 0
}

// validString returns the index after the string starting at b[i] ('"'), or
// -1 if it is malformed.
func validString(b []byte, i int) int {
	i++
	for {
		// Eight bytes at a time while none is a quote, a backslash or a
		// control character, then byte by byte.
		for i+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plainStringByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(b[i+2:]); !ok {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default:
			return -1 // a control character
		}
	}
}

// validNumber returns the index after the number starting at b[i], or -1.
func validNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func validLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
