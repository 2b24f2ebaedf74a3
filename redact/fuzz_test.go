package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
)

// The secret shapes as regexps, written apart from the scanners they check.
var (
	leakKey    = regexp.MustCompile(`(?:^|[^A-Za-z0-9])(sk-[A-Za-z0-9_-]{8,})`)
	leakFamily = regexp.MustCompile(`sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}`)
	leakToken  = regexp.MustCompile(`llmp_[A-Za-z0-9_-]{8,}`)
	leakBearer = regexp.MustCompile(`^(?i:bearer)[ \t]+([A-Za-z0-9._~+/-]+=*)`)
	allLetters = regexp.MustCompile(`^[A-Za-z]*$`)
)

// leak returns a secret shape left in s, "" if there is none.
func leak(s string) string {
	for _, re := range []*regexp.Regexp{leakKey, leakFamily, leakToken} {
		if m := re.FindString(s); m != "" {
			return m
		}
	}
	for i := range len(s) {
		if s[i]|0x20 != 'b' || (i > 0 && isAlpha(s[i-1])) {
			continue
		}
		if m := leakBearer.FindStringSubmatch(s[i:]); m != nil && (len(m[1]) >= minProseBearer || !allLetters.MatchString(m[1])) {
			return m[0]
		}
	}
	return ""
}

// FuzzJSON checks what JSON promises on any input: valid JSON stays valid,
// and no secret shape survives in any decoded string, member names included,
// nor a credential member's value; for other input, none survives in the raw
// text or in its unescaped reading. Redacting twice changes nothing. The seeds
// run with every go test.
func FuzzJSON(f *testing.F) {
	for _, seed := range []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"key ` + projKey + `"}]}`,
		`{"content":"sk-\u0070roj-` + projKey[8:] + `"}`,
		`["\u0073\u006B\u002dabcdefgh12", "Bearer abc\/def\/ghi1"]`,
		`{"` + legacyKey + `":{"Authorization":["Bearer x"],"x-api-key":1}}`,
		`{"arguments":"{\"headers\":{\"authorization\":\"Token abc\"},\"k\":\"` + proxyToken + `\"}"}`,
		`{"a":"Bearer \ud83d\ude00x\/y1" ,`,
		`{"\u0061uthorization": "abc\u0022x", "y`,
		`{"content":"` + projKey[:14],
		`"\u12 \x \sk-abcdefgh12\`,
		"Authorization: Bearer x\nmail a@b.io 4111 1111 1111 1111",
		`{"card":4111111111111111,"ip":"10.0.0.1","iban":"DE89 3704 0044 0532 0130 00","tel":"+1 (555) 123-4567"}`,
		`[[[[[[` + legacyToken + `]]]]]]`,
		`"Bearer Bearer xyz1 bearer\tabcdefgh"`,
		"\"\\u0020sk-abcdefgh1\\nsk-abcdefgh2\\tllmp_abcdefgh\"",
		`{"a":"x\u2028sk-abcdefgh1\u0000"}`,
		"",
	} {
		f.Add([]byte(seed))
	}
	all := mustNew(f, Presets...)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, r := range []*Redactor{nil, all} {
			out := r.JSON(in)
			if again := r.JSON(out); r == nil && !bytes.Equal(again, out) {
				t.Fatalf("not idempotent:\n in %q\nout %q\nagain %q", in, out, again)
			}
			if !json.Valid(in) {
				if json.Valid(out) {
					continue // a placeholder made it JSON; checked below on the next input
				}
				view, _, _ := unescape(out)
				for _, s := range []string{string(out), view} {
					if m := leak(s); m != "" {
						t.Fatalf("%q survives in %q (from %q)", m, s, in)
					}
				}
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("valid input, invalid output:\n in %q\nout %q", in, out)
			}
			checkDecoded(t, in, out)
		}
	})
}

// checkDecoded walks the decoded out for secret shapes and credential
// members.
func checkDecoded(t *testing.T, in, out []byte) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	type frame struct{ object, name bool } // name: the next token is a member name
	var stack []frame
	credential := false // the next value is a credential member's
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if v, ok := tok.(json.Delim); ok && (v == '}' || v == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if s, ok := tok.(string); ok {
			if m := leak(s); m != "" {
				t.Fatalf("%q survives in %q (from %q)", m, out, in)
			}
		}
		if len(stack) > 0 && stack[len(stack)-1].name {
			stack[len(stack)-1].name = false
			credential = isCredentialKey(tok.(string))
			continue
		}
		if credential && tok != Placeholder {
			t.Fatalf("credential member keeps %v in %q (from %q)", tok, out, in)
		}
		credential = false
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].name = true
		}
		if v, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{object: v == '{', name: v == '{'})
		}
	}
}

// The checker itself finds what it should.
func TestLeak(t *testing.T) {
	for s, want := range map[string]bool{
		legacyKey: true, "x " + proxyToken: true, "Bearer abcdefgh": true, "Bearer Bearer xyz1": true,
		"mykey" + svcKey: true, "task-management-system": false, "Bearer [REDACTED]": false,
		"bearer of": false, strings.Repeat("x", 100): false,
	} {
		if got := leak(s) != ""; got != want {
			t.Errorf("leak(%q) = %v, want %v", s, got, want)
		}
	}
}
