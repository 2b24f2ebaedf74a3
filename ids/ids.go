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
