package redact

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// Secrets shaped like the real ones: an OpenAI project key, a legacy
// ("sk-" and 48) key, a service account key, a proxy token (authz.NewToken's
// shape) and a predecessor token.
const (
	projKey     = "sk-proj-Ab3_dE-fGhIjKlMnOpQrStUvWxYz0123456789abcdefGHIJKLmnopQRstuvWXyz_-0123456789T3BlbkFJabcdefghijklmnopqrstuv"
	legacyKey   = "sk-AbCdEfGhIjKlMnOpQrStT3BlbkFJuVwXyZ0123456789abcd"
	svcKey      = "sk-svcacct-ZZZZZZZZZZZZZZZZZZZZZZZZ1234"
	proxyToken  = "llmp_q3Zk8vB2xY7wN1mR5tH9pL4cF6gJ0dS2aE8uI3oK7nM"
	legacyToken = "sk-AbCdEfGhIjKlMn_-1"
)

func TestStringSecrets(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"project key", "key " + projKey + " end", "key [REDACTED] end"},
		{"legacy OpenAI key", legacyKey, "[REDACTED]"},
		{"service account key", "x=" + svcKey, "x=[REDACTED]"},
		{"predecessor token", "use " + legacyToken + ".", "use [REDACTED]."},
		{"proxy token", proxyToken, "[REDACTED]"},
		{"proxy token glued to a word", "abc" + proxyToken + "xyz", "abc[REDACTED]"},
		{"head of a proxy token cut by a cap", "token llmp_q3Zk8vB2", "token [REDACTED]"},
		{"too short to be a token", "llmp_abc", "llmp_abc"},
		{"key at the start", projKey + " tail", "[REDACTED] tail"},
		{"key at the end, cut by a cap", "tail " + projKey[:20], "tail [REDACTED]"},
		{"family key glued to a word", "mykey" + svcKey, "mykey[REDACTED]"},
		{"plain sk- glued to a word is a word", "task-management-system", "task-management-system"},
		{"short sk- word", "sk-learn", "sk-learn"},
		{"sk- repeated", "sk-sk-sk-abcdefgh1", "[REDACTED]"},
		{"glued then clean", "xsk-sk-abcdefgh1", "xsk-[REDACTED]"},
		{"two keys", legacyToken + "," + legacyKey, "[REDACTED],[REDACTED]"},
		{"bearer", "Authorization header was Bearer abc.def-ghi_jkl~mno+pqr/stu== ok", "Authorization header was Bearer [REDACTED] ok"},
		{"bearer lower case, tab", "bearer\teyJhbGciOiJIUzI1NiJ9.e30.x", "bearer\t[REDACTED]"},
		{"bearer prose", "the bearer of bad news", "the bearer of bad news"},
		{"bearer short token with a digit", "BEARER ab1", "BEARER [REDACTED]"},
		{"bearer long letters", "Bearer abcdefgh", "Bearer [REDACTED]"},
		{"bearer glued to a word is a word", "forbearer abcdefgh1", "forbearer abcdefgh1"},
		{"bearer at the end", "Bearer", "Bearer"},
		{"authorization header", "GET /\r\nAuthorization: Basic dXNlcjpwYXNz\r\nHost: x\r\n", "GET /\r\nAuthorization: [REDACTED]\r\nHost: x\r\n"},
		{"proxy-authorization header", "Proxy-Authorization: Negotiate abc", "Proxy-Authorization: [REDACTED]"},
		{"authorization in JSON text", `{"headers": {"Authorization": "Token a\"b", "x": 1}}`, `{"headers": {"Authorization": "[REDACTED]", "x": 1}}`},
		{"authorization single-quoted", `{'authorization': 'secret'}`, `{'authorization': '[REDACTED]'}`},
		{"authorization query", "?authorization=abc&x=1", "?authorization=[REDACTED]&x=1"},
		{"authorization object left to other rules", `"authorization": {"token": "x"}`, `"authorization": {"token": "x"}`},
		{"authorization without a value", "authorization: ", "authorization: "},
		{"preauthorization is a word", "preauthorization: pending", "preauthorization: pending"},
		{"authorization with bearer key", "authorization: Bearer " + projKey, "authorization: [REDACTED]"},
		{"unicode around", "clé: «" + legacyKey + "» ✓", "clé: «[REDACTED]» ✓"},
		{"nothing", "hello, world", "hello, world"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nilRedactor *Redactor
			for _, r := range []*Redactor{nilRedactor, {}, mustNew(t, Presets...)} {
				if got := r.String(tc.in); got != tc.want {
					t.Errorf("String(%q)\n got %q\nwant %q", tc.in, got, tc.want)
				}
			}
		})
	}
}

func TestStringPresets(t *testing.T) {
	for _, tc := range []struct{ pattern, in, want string }{
		{"email", "write to jane.doe+tag@mail.example.co.uk, or bob@x.io.", "write to [REDACTED], or [REDACTED]."},
		{"email", "not@an-address and a@b.c", "not@an-address and a@b.c"},
		{"card_number", "card 4111 1111 1111 1111 exp", "card [REDACTED] exp"},
		{"card_number", "card 4111-1111-1111-1111", "card [REDACTED]"},
		{"card_number", "amex 378282246310005.", "amex [REDACTED]."},
		{"card_number", "19 digits 6011000990139424 0", "19 digits [REDACTED] 0"},
		{"card_number", "exp 12 4111 1111 1111 1111", "exp 12 [REDACTED]"},
		{"card_number", "4111 1111 1111 1111 2024", "[REDACTED] 2024"},
		{"card_number", "Luhn fails 4111 1111 1111 1112", "Luhn fails 4111 1111 1111 1112"},
		{"card_number", "too long 41111111111111111111111", "too long 41111111111111111111111"},
		{"card_number", "glued id4111111111111111", "glued id4111111111111111"},
		{"card_number", "decimal 0.4111111111111111", "decimal 0.4111111111111111"},
		{"card_number", "two 4111111111111111 and 5500 0000 0000 0004", "two [REDACTED] and [REDACTED]"},
		{"card_number", "double space 4111  1111 1111 1111", "double space 4111  1111 1111 1111"},
		{"iban", "pay DE89 3704 0044 0532 0130 00 TODAY", "pay [REDACTED] TODAY"},
		{"iban", "GB82WEST12345698765432", "[REDACTED]"},
		{"iban", "bad check DE89 3704 0044 0532 0130 01", "bad check DE89 3704 0044 0532 0130 01"},
		{"iban", "xGB82WEST12345698765432", "xGB82WEST12345698765432"},
		{"ipv4", "from 192.168.1.25 and 10.0.0.1:8080", "from [REDACTED] and [REDACTED]:8080"},
		{"ipv4", "version 1.2.3.4.5, 256.1.1.1, 1.2.3", "version 1.2.3.4.5, 256.1.1.1, 1.2.3"},
		{"phone", "call +1 (555) 123-4567 or +44 20 7946 0958.", "call [REDACTED] or [REDACTED]."},
		{"phone", "E.164 +14155552671", "E.164 [REDACTED]"},
		{"phone", "US (555) 123-4567, 555.123.4567, 555-123-4567", "US [REDACTED], [REDACTED], [REDACTED]"},
		{"phone", "FR 06 12 34 56 78; UK 020 7946 0958", "FR [REDACTED]; UK [REDACTED]"},
		{"phone", "date 2024-01-15, id 12345678901, sum 3+12345678, ver 1.555.123.4567", "date 2024-01-15, id 12345678901, sum 3+12345678, ver 1.555.123.4567"},
		{"re:(?i)project-[0-9]+", "see PROJECT-42 and project-7", "see [REDACTED] and [REDACTED]"},
		{`re:\bacme\b`, "acme and acmes", "[REDACTED] and acmes"},
		{`re:\b`, "word", "word"},
	} {
		t.Run(tc.pattern+" "+tc.in, func(t *testing.T) {
			r := mustNew(t, tc.pattern)
			if got := r.String(tc.in); got != tc.want {
				t.Errorf("String(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

// Matches of several patterns that overlap or touch become one placeholder;
// a pattern cannot match what another replaced (all match the original).
func TestStringOverlaps(t *testing.T) {
	r := mustNew(t, "email", `re:[a-z]+\.example`, "re:REDACTED")
	for in, want := range map[string]string{
		"mail jane@mail.example.com now": "mail [REDACTED] now",
		"sk-abcdefgh1@mail.example.com":  "[REDACTED]",
		"REDACTED and " + legacyKey:      "[REDACTED] and [REDACTED]",
		legacyToken + legacyToken[2:]:    "[REDACTED]",
		"Bearer " + legacyKey + " x":     "Bearer [REDACTED] x",
		"a.example" + "b.example c":      "[REDACTED] c",
	} {
		if got := r.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	if !slices.IsSorted(Presets) {
		t.Errorf("Presets %v are not sorted", Presets)
	}
	for _, p := range Presets {
		if err := ValidatePattern(p); err != nil {
			t.Errorf("preset %q: %v", p, err)
		}
	}
	for _, tc := range []struct{ pattern, want string }{
		{"emails", `invalid redaction pattern "emails": not a preset (card_number, email, iban, ipv4, phone) nor re: followed by a regular expression`},
		{"", `invalid redaction pattern "": not a preset`},
		{"re:(", `invalid redaction pattern "re:(": error parsing regexp: missing closing ): ` + "`(`"},
		{"re:a*", `invalid redaction pattern "re:a*": matches the empty string`},
		{"re:", `invalid redaction pattern "re:": matches the empty string`},
		{"re:" + strings.Repeat("a", MaxPatternLen), `invalid redaction pattern "re:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"…: longer than 4096 bytes`},
	} {
		err := ValidatePattern(tc.pattern)
		if !errors.Is(err, ErrInvalidPattern) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("ValidatePattern(%.20q) = %v, want %s…", tc.pattern, err, tc.want)
		}
		if r, err2 := New([]string{"email", tc.pattern}); r != nil || err2 == nil || err2.Error() != err.Error() {
			t.Errorf("New with %.20q = %v, %v; want the same error", tc.pattern, r, err2)
		}
	}
}

// Redacting is linear: a pathological text of near-misses for every rule
// is handled in one pass (this would take minutes if a rule rescanned).
func TestStringLinear(t *testing.T) {
	r := mustNew(t, Presets...)
	var b strings.Builder
	for b.Len() < 1<<20 {
		b.WriteString("sk-a xsk-xsk-xsk-xsk-xsk-xsk- Bearer authorization: x\nDE00 AA00 1 2 3 4 5 6 7 8 9 0 1.2.3 +1 a@b ")
	}
	out := r.String(b.String())
	if !strings.Contains(out, "[REDACTED]") || len(out) < 1<<19 {
		t.Fatalf("unexpected output of %d bytes", len(out))
	}
	// One long run of key characters with an "sk-" glued to a letter every
	// four bytes.
	glued := strings.Repeat("xsk-", 1<<18)
	if out := r.String(glued); out != glued {
		t.Fatalf("glued sk- words were redacted")
	}
}

func mustNew(t testing.TB, patterns ...string) *Redactor {
	t.Helper()
	r, err := New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The incremental Luhn check agrees with the textbook one on every prefix.
func TestLuhn(t *testing.T) {
	textbook := func(digits string) bool {
		sum := 0
		for i := range len(digits) {
			d := int(digits[len(digits)-1-i] - '0')
			if i%2 == 1 {
				if d *= 2; d > 9 {
					d -= 9
				}
			}
			sum += d
		}
		return sum%10 == 0
	}
	digits := "4111111111111111378282246310005601100099013942479927398713"
	for start := range len(digits) {
		var l luhn
		for end := start + 1; end <= len(digits); end++ {
			l.add(digits[end-1 : end])
			if got, want := l.valid(), textbook(digits[start:end]); got != want {
				t.Fatalf("luhn(%s) = %v, want %v", digits[start:end], got, want)
			}
		}
	}
}
