package jsonstr

import (
	"encoding/json"
	"testing"
)

func TestAppend(t *testing.T) {
	for in, want := range map[string]string{
		"":                     `""`,
		`say "hi" \ bye`:       `"say \"hi\" \\ bye"`,
		"a\nb\rc\td\x01":       `"a\nb\rc\td\u0001"`,
		"<&> stay":             `"<&> stay"`,
		"line\u2028para\u2029": `"line\u2028para\u2029"`,
		"bad \xff byte":        `"bad \ufffd byte"`,
		"héllo 日本 🎉":           `"héllo 日本 🎉"`,
	} {
		got := Append([]byte("x"), in)
		if string(got) != "x"+want {
			t.Errorf("Append(%q) = %s, want %s", in, got[1:], want)
		}
		var back string
		if err := json.Unmarshal(got[1:], &back); err != nil {
			t.Errorf("Append(%q) is not a JSON string: %v", in, err)
		}
	}
}
