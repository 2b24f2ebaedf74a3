package adminapi

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/ids"
)

// maxIDLen bounds a project or token id. Ids are made by [ids.New]
// ("proj_" or "tok_" and 20 characters); nothing longer can exist.
const maxIDLen = ids.MaxLen

// validID reports whether id has the form of an id this API hands out
// ([ids.Valid]). Anything else names no project or token and is never
// looked up.
func validID(id string) bool { return ids.Valid(id) }

// pathID returns the {id} of r's path. An id that cannot exist gets the
// same 404 as one that does not, written here, without asking the store;
// ok is then false.
func pathID(w http.ResponseWriter, r *http.Request, kind string) (id string, ok bool) {
	id = r.PathValue("id")
	if !validID(id) {
		writeError(w, r, notFound(kind, id))
		return "", false
	}
	return id, true
}

// checkIDParam validates a query parameter or body member holding an id
// to filter or purge by: "" (no filter) or the form [validID] accepts.
func checkIDParam(param, id string) error {
	if id != "" && !validID(id) {
		return invalid(codeInvalidValue, param, "%s must be a project id: letters, digits, '_' and '-', at most %d characters.", param, maxIDLen)
	}
	return nil
}

// hasControl reports whether s holds a control character (C0, DEL or C1;
// NUL included) or is not valid UTF-8.
func hasControl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// maxOpenAIKeyLen bounds an OpenAI key. Real ones are about 50 to 170
// characters; what is longer is a mistake (a pasted file, say) that would
// break every request of the project.
const maxOpenAIKeyLen = 512

// keyMaskMarker stands for the hidden middle of a masked key.
const keyMaskMarker = "…"

// minHintedKeyLen is the shortest key whose mask shows its first and last
// four characters; a shorter one is masked as the marker alone, so that a
// mask never shows more than a third of a key.
const minHintedKeyLen = 24

// maskKey returns the form of an OpenAI key that may be shown: its first
// and last four characters around keyMaskMarker ("sk-a…wxyz"), or the
// marker alone for a key shorter than minHintedKeyLen. The middle has a
// fixed width, so the mask does not tell the key's length, and it counts
// characters, not bytes, so it never cuts one in two.
func maskKey(key string) string {
	r := []rune(key)
	if len(r) < minHintedKeyLen {
		return keyMaskMarker
	}
	return string(r[:4]) + keyMaskMarker + string(r[len(r)-4:])
}

// MaskKey is the hint stored beside a sealed OpenAI key ([store.Project]'s
// KeyHint), as this API makes it: for a program that seals keys without the
// API, the predecessor import.
func MaskKey(key string) string { return maskKey(key) }

// hintView is a stored key hint as a response shows it. Hints stored by
// earlier versions masked short keys as one '*' per character (telling the
// length) and could cut a character in two; those show as the marker alone.
func hintView(hint string) string {
	if !utf8.ValidString(hint) || !strings.Contains(hint, keyMaskMarker) {
		return keyMaskMarker
	}
	return hint
}

// checkOpenAIKey validates an OpenAI key's form: 1 to maxOpenAIKeyLen
// printable ASCII characters, no space, and nothing shaped like a masked
// key ('…' or '*'): a client that sends back the masked key it was shown
// must not replace the real one with it. Its messages never include the
// key.
func checkOpenAIKey(field, key string) error {
	switch {
	case key == "":
		return invalid(codeInvalidValue, field, "%s must not be empty.", field)
	case strings.Contains(key, keyMaskMarker), strings.Contains(key, "*"):
		return invalid(codeInvalidValue, field,
			"%s looks like the masked key this API shows (it contains %q or '*'), not a key. Send the real key to change it, or leave %s out to keep the current one.",
			field, keyMaskMarker, field)
	case len(key) > maxOpenAIKeyLen:
		return invalid(codeInvalidValue, field, "%s must be at most %d characters.", field, maxOpenAIKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return invalid(codeInvalidValue, field, "%s must be printable ASCII characters, without whitespace or control characters.", field)
		}
	}
	return nil
}
