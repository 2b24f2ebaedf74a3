// Package ids makes the public identifiers of llm-proxy's records —
// projects, tokens, audit events, management requests — in one format:
// a kind, an underscore and 100 random bits, lower-case ("proj_3k9…"). They
// are not secrets: logs, events and URLs show them.
package ids

import (
	"crypto/rand"
	"strings"
)

// New returns a fresh identifier of the given kind, e.g. New("tok").
func New(kind string) string {
	return kind + "_" + strings.ToLower(rand.Text()[:20]) // 100 random bits
}

// MaxLen bounds an identifier: those [New] makes are far shorter, and ids
// kept from elsewhere (the predecessor import) must fit too.
const MaxLen = 64

// Valid reports whether id has the form of an identifier: 1 to [MaxLen]
// ASCII letters, digits, '_' or '-' (base64url's alphabet). Anything else
// names no record, so neither a NUL nor invalid UTF-8 (which PostgreSQL
// refuses with an error) need reach a store.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
