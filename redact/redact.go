package redact

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Placeholder replaces every redacted span: visibly a redaction, and made of
// characters no secret shape or preset can extend into, so redacting a
// redacted text again changes nothing.
const Placeholder = "[REDACTED]"

// ErrInvalidPattern is wrapped by every error of [New] and [ValidatePattern];
// the message names the pattern and what is wrong with it, fit to show the
// project's owner.
var ErrInvalidPattern = errors.New("invalid redaction pattern")

// RegexpPrefix starts a pattern that is an RE2 regular expression
// (https://github.com/google/re2/wiki/Syntax), such as `re:(?i)project-\d+`.
const RegexpPrefix = "re:"

// MaxPatternLen bounds one pattern: lists come through the management API,
// and a cap keeps one project from having megabytes of regexp compiled on a
// cache miss.
const MaxPatternLen = 4096

// Presets are the names [New] accepts besides "re:" patterns, sorted:
//
//   - card_number: 13 to 19 digits, single spaces or dashes allowed between
//     them, that pass the Luhn check;
//   - email: an address with a dotted domain and a top-level domain of two
//     letters or more;
//   - iban: two capital letters, two check digits and 11 to 30 capitals or
//     digits (single spaces allowed), that pass the ISO 13616 mod-97 check;
//   - ipv4: a dotted quad of decimal octets, not part of a longer dotted
//     number (a version such as 1.2.3.4.5);
//   - phone: conservatively, an international number ("+" and 8 to 15
//     digits, with spaces, dots, dashes or a bracketed area code), a North
//     American number with separators ("(555) 123-4567", "555-123-4567") or
//     a national number with a leading 0 and separators ("020 7946 0958",
//     "06 12 34 56 78"). Bare digit runs are not phones: they are too often
//     something else.
//
// Every preset needs a non-alphanumeric character (or the text's edge) on
// both sides of a match.
var Presets = []string{"card_number", "email", "iban", "ipv4", "phone"}

// Redactor removes the secrets every capture loses and a project's patterns.
// The zero value and a nil *Redactor remove the secrets only.
type Redactor struct {
	matchers []matcher
}

// span is a half-open byte range of a text to replace.
type span struct{ start, end int }

// matcher appends to spans the non-empty ranges of s it matches.
type matcher func(s string, spans []span) []span

// New compiles a project's patterns: each is a name of [Presets] or
// [RegexpPrefix] and an RE2 regexp. An error wraps [ErrInvalidPattern] and
// names the first pattern that is neither, or a regexp that does not compile,
// that matches the empty string (it would redact between every character)
// or is longer than [MaxPatternLen].
func New(patterns []string) (*Redactor, error) {
	r := &Redactor{}
	for _, p := range patterns {
		m, err := compile(p)
		if err != nil {
			return nil, err
		}
		r.matchers = append(r.matchers, m)
	}
	return r, nil
}

// ValidatePattern reports whether [New] would accept p, with the error it
// would return.
func ValidatePattern(p string) error {
	_, err := compile(p)
	return err
}

func compile(p string) (matcher, error) {
	if len(p) > MaxPatternLen {
		return nil, fmt.Errorf("%w %.40q…: longer than %d bytes", ErrInvalidPattern, p, MaxPatternLen)
	}
	expr, ok := strings.CutPrefix(p, RegexpPrefix)
	if !ok {
		if m := presetMatcher(p); m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("%w %q: not a preset (%s) nor %s followed by a regular expression",
			ErrInvalidPattern, p, strings.Join(Presets, ", "), RegexpPrefix)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidPattern, p, err)
	}
	if re.MatchString("") {
		return nil, fmt.Errorf("%w %q: matches the empty string", ErrInvalidPattern, p)
	}
	return regexpMatcher(re, nil), nil
}

// regexpMatcher matches re, keeping the matches accept approves (all when
// accept is nil). Empty matches are never kept: a regexp such as `\b` that
// matches only between characters would otherwise insert placeholders.
func regexpMatcher(re *regexp.Regexp, accept func(s string, start, end int) bool) matcher {
	return func(s string, spans []span) []span {
		for _, m := range re.FindAllStringIndex(s, -1) {
			if m[0] < m[1] && (accept == nil || accept(s, m[0], m[1])) {
				spans = append(spans, span{m[0], m[1]})
			}
		}
		return spans
	}
}

// String returns s with the secrets and r's patterns replaced by
// [Placeholder]; s itself when nothing matched. Overlapping or adjacent
// matches become one placeholder.
func (r *Redactor) String(s string) string {
	spans := r.spans(s, nil)
	if len(spans) == 0 {
		return s
	}
	return string(replace(nil, s, spans))
}

// spans appends every match in s: the secrets first, then the patterns.
func (r *Redactor) spans(s string, spans []span) []span {
	spans = secretSpans(s, spans)
	if r != nil {
		for _, m := range r.matchers {
			spans = m(s, spans)
		}
	}
	return spans
}

// replace appends s to dst with spans (in any order, possibly overlapping)
// replaced by the placeholder.
func replace(dst []byte, s string, spans []span) []byte {
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	last := 0
	for i := 0; i < len(spans); {
		start, end := spans[i].start, spans[i].end
		for i++; i < len(spans) && spans[i].start <= end; i++ {
			end = max(end, spans[i].end)
		}
		dst = append(dst, s[last:start]...)
		dst = append(dst, Placeholder...)
		last = end
	}
	return append(dst, s[last:]...)
}
