package redact

import (
	"regexp"
	"strings"
)

// presetMatcher returns the matcher of a name of [Presets], nil for any other
// name.
func presetMatcher(name string) matcher {
	switch name {
	case "card_number":
		return cardSpans
	case "email":
		return emailMatcher
	case "iban":
		return ibanSpans
	case "ipv4":
		return ipv4Matcher
	case "phone":
		return phoneMatcher
	}
	return nil
}

// The regexp presets run only on windows of the text that could hold a
// match — maximal runs of the characters a match is made of, with what a
// match needs (an "@", enough digits) — since RE2 scanning all of a long
// text costs hundreds of nanoseconds a byte. A match never spans two runs,
// so the matches are the same as over the whole text.
var (
	emailMatcher = windowMatcher(regexp.MustCompile(
		`[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}`),
		func(c byte) bool { return isAlnum(c) || strings.IndexByte("._%+-@", c) >= 0 },
		func(w string) bool { return strings.IndexByte(w, '@') >= 0 },
		standalone)

	ipv4Matcher = windowMatcher(regexp.MustCompile(
		`(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}`),
		func(c byte) bool { return isDigit(c) || c == '.' },
		func(w string) bool { return strings.Count(w, ".") >= 3 },
		standaloneNumber)

	// phoneMatcher's alternatives: international; North American with a
	// bracketed area code; North American with dots or dashes; a national
	// number with a leading 0 in French pairs; one in British groups.
	phoneMatcher = windowMatcher(regexp.MustCompile(
		`\+[1-9][0-9]{0,2}(?:[ .-]?\([0-9]{1,4}\))?(?:[ .-]?[0-9]{1,5}){1,6}`+
			`|\([0-9]{3}\)[ .-]?[0-9]{3}[ .-][0-9]{4}`+
			`|[0-9]{3}[.-][0-9]{3}[.-][0-9]{4}`+
			`|0[1-9](?:[ .-][0-9]{2}){4}`+
			`|0[0-9]{2,4}[ -][0-9]{3,4}[ -][0-9]{3,4}`),
		func(c byte) bool { return isDigit(c) || strings.IndexByte("+() .-", c) >= 0 },
		func(w string) bool { return countDigits(w) >= minPhoneDigits },
		func(s string, start, end int) bool {
			n := countDigits(s[start:end])
			return n >= minPhoneDigits && n <= maxPhoneDigits && standaloneNumber(s, start, end)
		})
)

// Phone numbers: [minPhoneDigits] to [maxPhoneDigits] digits (E.164's most).
const (
	minPhoneDigits = 8
	maxPhoneDigits = 15
)

func countDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

// windowMatcher matches re in each maximal run of characters in that needs,
// keeping the matches accept approves in the whole text.
func windowMatcher(re *regexp.Regexp, in func(byte) bool, needs func(string) bool, accept func(s string, start, end int) bool) matcher {
	return func(s string, spans []span) []span {
		for i := 0; i < len(s); {
			if !in(s[i]) {
				i++
				continue
			}
			start := i
			for i < len(s) && in(s[i]) {
				i++
			}
			if !needs(s[start:i]) {
				continue
			}
			for _, m := range re.FindAllStringIndex(s[start:i], -1) {
				if m[0] < m[1] && accept(s, start+m[0], start+m[1]) {
					spans = append(spans, span{start + m[0], start + m[1]})
				}
			}
		}
		return spans
	}
}

// standalone reports whether s[start:end] is not glued to a letter or digit
// on either side.
func standalone(s string, start, end int) bool {
	return (start == 0 || !isAlnum(s[start-1])) && (end == len(s) || !isAlnum(s[end]))
}

// standaloneNumber is [standalone], and also not part of a longer dotted
// number: no digit and dot before, no dot and digit after.
func standaloneNumber(s string, start, end int) bool {
	if !standalone(s, start, end) {
		return false
	}
	if start >= 2 && s[start-1] == '.' && isDigit(s[start-2]) {
		return false
	}
	return end+2 > len(s) || s[end] != '.' || !isDigit(s[end+1])
}

// Card numbers: [minCardDigits] to [maxCardDigits] digits.
const (
	minCardDigits = 13
	maxCardDigits = 19
)

// cardSpans appends the card numbers in s. A run of digit groups joined by
// single spaces or dashes may hold a card among other numbers ("exp 12 4111
// 1111 1111 1111"), so every span of whole groups with a card's digit count
// is tried, the longest Luhn-valid one from the leftmost group first.
func cardSpans(s string, spans []span) []span {
	var groups []span
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		groups = digitGroups(s, i, groups[:0])
		run := span{groups[0].start, groups[len(groups)-1].end}
		i = run.end
		if !standaloneNumber(s, run.start, run.end) {
			continue
		}
		for g := 0; g < len(groups); {
			best := -1
			var l luhn
			for h := g; h < len(groups); h++ {
				if l.add(s[groups[h].start:groups[h].end]); l.n > maxCardDigits {
					break
				}
				if l.n >= minCardDigits && l.valid() {
					best = h
				}
			}
			if best < 0 {
				g++
				continue
			}
			spans = append(spans, span{groups[g].start, groups[best].end})
			g = best + 1
		}
	}
	return spans
}

// digitGroups appends the groups of digits from i: runs of digits joined by
// one space or dash.
func digitGroups(s string, i int, groups []span) []span {
	for {
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		groups = append(groups, span{start, i})
		if i+1 >= len(s) || (s[i] != ' ' && s[i] != '-') || !isDigit(s[i+1]) {
			return groups
		}
		i++
	}
}

// luhn computes the Luhn check of a digit string as it grows to the right,
// in constant time a digit: it keeps the digit sum both ways the doubling may
// fall, since which digits are doubled depends on the final length.
type luhn struct {
	n    int    // digits added
	sums [2]int // sums[p]: the sum with the digits at even positions (from the left) doubled if p is 0, the odd ones if 1
}

func (l *luhn) add(digits string) {
	for i := 0; i < len(digits); i++ {
		d := int(digits[i] - '0')
		dd := 2 * d
		if dd > 9 {
			dd -= 9
		}
		even := l.n%2 == 0
		if even {
			l.sums[0] += dd
			l.sums[1] += d
		} else {
			l.sums[0] += d
			l.sums[1] += dd
		}
		l.n++
	}
}

// valid reports whether the digits pass: the last digit is not doubled, so
// the doubled ones are those at positions of the other parity than n-1.
func (l *luhn) valid() bool {
	p := l.n % 2 // n-1 even (p 1): odd positions doubled
	return l.sums[p]%10 == 0
}

// IBANs: [minIBANChars] to [maxIBANChars] characters without spaces.
const (
	minIBANChars = 15
	maxIBANChars = 34
)

// ibanSpans appends the IBANs in s: a country code and check digits, then
// groups of capitals and digits joined by single spaces, the longest run of
// whole groups that passes the mod-97 check (so a capitalised word after an
// IBAN does not hide it).
func ibanSpans(s string, spans []span) []span {
	for i := 0; i+4 <= len(s); i++ {
		if !isUpper(s[i]) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) || (i > 0 && isAlnum(s[i-1])) {
			continue
		}
		best := -1 // the end of the longest IBAN from i
		for j, chars := i, 0; ; j++ {
			start := j
			for j < len(s) && j-start+chars <= maxIBANChars && (isUpper(s[j]) || isDigit(s[j])) {
				j++
			}
			if chars += j - start; chars > maxIBANChars {
				break
			}
			if chars >= minIBANChars && standalone(s, i, j) && mod97(s[i:j]) {
				best = j
			}
			if j+1 >= len(s) || s[j] != ' ' || !(isUpper(s[j+1]) || isDigit(s[j+1])) {
				break
			}
		}
		if best >= 0 {
			spans = append(spans, span{i, best})
			i = best
		}
	}
	return spans
}

// mod97 reports whether the IBAN in s (spaces skipped) passes ISO 13616's
// check: moved country code and check digits to the end, letters as 10 to
// 35, the number modulo 97 is 1.
func mod97(s string) bool {
	rem := 0
	add := func(c byte) {
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else if isUpper(c) {
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	for i := 4; i < len(s); i++ {
		add(s[i])
	}
	for i := range 4 {
		add(s[i])
	}
	return rem == 1
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
