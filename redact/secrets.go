package redact

import "strings"

// The shapes of the secrets every capture loses. They are scanned by hand
// rather than by regexp: the rules need to look one byte behind a match,
// which RE2 cannot, and this runs on every captured string.
const (
	// keyPrefix starts OpenAI's keys and the predecessor proxy's tokens that
	// imported tokens keep (authz.LegacyTokenPrefix).
	keyPrefix = "sk-"
	// minKeyChars is the fewest key characters after "sk-" taken for a key:
	// the predecessor's tokens have 8 or more (authz's minLegacySecretLen).
	minKeyChars = 8
	// minFamilyKeyChars is the fewest characters after an OpenAI key family
	// ("sk-proj-", …) for a key that is glued to a preceding word.
	minFamilyKeyChars = 20
	// tokenPrefix starts our proxy tokens (authz.TokenPrefix), which have 43
	// base64url characters after it.
	tokenPrefix = "llmp_"
	// minTokenChars is the fewest characters after "llmp_" taken for a token,
	// so that the head of one cut by a cap is still removed.
	minTokenChars = 8
	// minProseBearer is the shortest all-letter word after "Bearer" taken for
	// a token: shorter ones are prose ("the bearer of bad news"); a token
	// with a digit or a symbol is one at any length.
	minProseBearer = 8
)

// keyFamilies are the kinds of OpenAI keys, named after "sk-".
var keyFamilies = []string{"proj-", "svcacct-", "admin-"}

// secretSpans appends the secrets in s:
//
//   - "sk-" and at least [minKeyChars] key characters (base64url's alphabet),
//     not glued to a preceding letter or digit ("task-…" is a word); a key of
//     an OpenAI family ("sk-proj-" and [minFamilyKeyChars] more) anywhere;
//   - "llmp_" and at least [minTokenChars] key characters, anywhere;
//   - the token after "Bearer" (any case, not glued to a preceding letter)
//     and spaces or tabs: RFC 6750's b64token characters and "=" padding;
//   - the value after "authorization" (any case, not glued to a preceding
//     letter; "proxy-authorization" too) and ":" or "=": a quoted value up to
//     its closing quote, or an unquoted one up to the end of the line or one
//     of ,;&}] and quotes. A value that opens an object or array is left to
//     the other rules.
func secretSpans(s string, spans []span) []span {
	spans = keySpans(s, spans)
	spans = tokenSpans(s, spans)
	// A match resumes the scan at its end, so no byte is read by two of
	// them (a value runs to the end of its line).
	for i := 0; i < len(s); i++ {
		switch s[i] | 0x20 { // ASCII lower case
		case 'b':
			if end := bearerEnd(s, i); end > 0 {
				start := skipBlanks(s, i+len("bearer"))
				spans = append(spans, span{start, end})
				i = end - 1
			}
		case 'a':
			if start, end := authorizationValue(s, i); start < end {
				spans = append(spans, span{start, end})
				i = end - 1
			}
		}
	}
	return spans
}

func keySpans(s string, spans []span) []span {
	runEnd := 0 // the end of the last run of key characters measured
	for off := 0; ; {
		i := strings.Index(s[off:], keyPrefix)
		if i < 0 {
			return spans
		}
		i += off
		body := i + len(keyPrefix)
		if body >= runEnd { // else "sk-" is inside the last run, which ends there too
			runEnd = body + keyRun(s[body:])
		}
		end := runEnd
		ok := end-body >= minKeyChars && (i == 0 || !isAlnum(s[i-1]))
		for _, f := range keyFamilies {
			if strings.HasPrefix(s[body:end], f) && end-body-len(f) >= minFamilyKeyChars {
				ok = true
			}
		}
		if ok {
			spans = append(spans, span{i, end})
			off = end
		} else {
			off = i + 1
		}
	}
}

func tokenSpans(s string, spans []span) []span {
	for off := 0; ; {
		i := strings.Index(s[off:], tokenPrefix)
		if i < 0 {
			return spans
		}
		i += off
		body := i + len(tokenPrefix)
		if end := body + keyRun(s[body:]); end-body >= minTokenChars {
			spans = append(spans, span{i, end})
			off = end
		} else {
			off = i + 1
		}
	}
}

// bearerEnd returns the end of the token of a "Bearer" credential starting at
// i, or 0 if there is none.
func bearerEnd(s string, i int) int {
	const word = "bearer"
	if len(s)-i < len(word) || !strings.EqualFold(s[i:i+len(word)], word) || (i > 0 && isAlpha(s[i-1])) {
		return 0
	}
	j := i + len(word)
	start := j
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if j == start {
		return 0
	}
	tok, letters := j, true
	for j < len(s) && isB64Token(s[j]) {
		letters = letters && isAlpha(s[j])
		j++
	}
	for j > tok && j < len(s) && s[j] == '=' {
		letters = false
		j++
	}
	if j == tok || (letters && j-tok < minProseBearer) {
		return 0
	}
	return j
}

// authorizationValue returns the range of the value of an "authorization"
// header or key starting at i, empty if there is none.
func authorizationValue(s string, i int) (start, end int) {
	const word = "authorization"
	if len(s)-i < len(word) || !strings.EqualFold(s[i:i+len(word)], word) || (i > 0 && isAlpha(s[i-1])) {
		return 0, 0
	}
	j := i + len(word)
	if j < len(s) && (s[j] == '"' || s[j] == '\'') {
		j++ // the closing quote of a key
	}
	j = skipBlanks(s, j)
	if j == len(s) || (s[j] != ':' && s[j] != '=') {
		return 0, 0
	}
	j = skipBlanks(s, j+1)
	if j == len(s) {
		return 0, 0
	}
	switch q := s[j]; q {
	case '"', '\'':
		start = j + 1
		for end = start; end < len(s) && s[end] != q; end++ {
			if s[end] == '\\' {
				end++
			}
		}
		return start, min(end, len(s))
	case '{', '[':
		return 0, 0
	}
	start = j
	end = start + strings.IndexAny(s[start:], "\r\n,;&}]\"'")
	if end < start {
		end = len(s)
	}
	return start, len(strings.TrimRight(s[:end], " \t"))
}

func skipBlanks(s string, j int) int {
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	return j
}

// keyRun is the length of the run of key characters (base64url's alphabet)
// that s starts with.
func keyRun(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' {
			return i
		}
	}
	return len(s)
}

// isB64Token reports whether c may appear in RFC 6750's b64token before its
// "=" padding.
func isB64Token(c byte) bool {
	return isAlnum(c) || strings.IndexByte("-._~+/", c) >= 0
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }
