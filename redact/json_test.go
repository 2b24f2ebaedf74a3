package redact

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSON(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{
			"request body",
			`{"model":"gpt-4o","messages":[{"role":"user","content":"my key is ` + projKey + `, mail me at a@b.io"}],"temperature":0.70,"n":1e0}`,
			`{"model":"gpt-4o","messages":[{"role":"user","content":"my key is [REDACTED], mail me at [REDACTED]"}],"temperature":0.70,"n":1e0}`,
		},
		{
			"escaped key",
			`{"content":"sk-\u0070roj-` + projKey[len("sk-proj-"):] + `"}`,
			`{"content":"[REDACTED]"}`,
		},
		{
			"fully escaped key prefix",
			`["\u0073\u006B\u002dabcdefgh12"]`,
			`["[REDACTED]"]`,
		},
		{
			"bearer token split by an escaped slash",
			`{"h":"Bearer abc\/def\/ghi1"}`,
			`{"h":"Bearer [REDACTED]"}`,
		},
		{
			"escaped newline ends a header value",
			`{"curl":"-H \"Authorization: Basic QWxhZGRpbjpvcGVu\"\n-d x"}`,
			`{"curl":"-H \"Authorization: [REDACTED]\"\n-d x"}`,
		},
		{
			"key as a member name",
			`{"` + legacyKey + `":1,"ok":2}`,
			`{"[REDACTED]":1,"ok":2}`,
		},
		{
			"credential members, any value, any case",
			`{"headers":{"Authorization":"Bearer x","X-Api-Key":["a",{"b":1}],"AUTHORIZATION":null,"\u0061uthorization":12,"proxy-authorization" : {"a":"}"}},"keep":"y"}`,
			`{"headers":{"Authorization":"[REDACTED]","X-Api-Key":"[REDACTED]","AUTHORIZATION":"[REDACTED]","\u0061uthorization":"[REDACTED]","proxy-authorization" : "[REDACTED]"},"keep":"y"}`,
		},
		{
			"tool call arguments are JSON in a string",
			`{"arguments":"{\"url\":\"https://x\",\"headers\":{\"authorization\":\"Token abc\"},\"key\":\"` + legacyToken + `\"}"}`,
			`{"arguments":"{\"url\":\"https://x\",\"headers\":{\"authorization\":\"[REDACTED]\"},\"key\":\"[REDACTED]\"}"}`,
		},
		{
			"nested arrays and whitespace kept",
			"[[[\n  \"" + proxyToken + "\" ,\t[ \"x\" ]]], 1 ]",
			"[[[\n  \"[REDACTED]\" ,\t[ \"x\" ]]], 1 ]",
		},
		{
			"secret at string boundaries",
			`["` + legacyKey + `","` + legacyKey + `x y","y ` + legacyKey + `"]`,
			`["[REDACTED]","[REDACTED] y","y [REDACTED]"]`,
		},
		{
			"secret split across strings is not found",
			`["sk-proj-","` + projKey[len("sk-proj-"):len("sk-proj-")+6] + `"]`,
			`["sk-proj-","` + projKey[len("sk-proj-"):len("sk-proj-")+6] + `"]`,
		},
		{
			"card written as a number",
			`{"card":4111111111111111,"n":42,"f":-1.5e3}`,
			`{"card":"[REDACTED]","n":42,"f":-1.5e3}`,
		},
		{
			"unicode and escapes kept when nothing changes",
			`{"t":"h\u00e9llo \"w\" \ud83d\ude00 <b>","e":"é"}`,
			`{"t":"h\u00e9llo \"w\" \ud83d\ude00 <b>","e":"é"}`,
		},
		{
			"a changed string is re-encoded",
			`{"t":"\u00e9 \"` + legacyToken + `\" <b> \u2028 \u0001 \ud800"}`,
			`{"t":"é \"[REDACTED]\" <b> \u2028 \u0001 ` + "\ufffd" + `"}`,
		},
		{
			"top-level string",
			`"` + proxyToken + `"`,
			`"[REDACTED]"`,
		},
		{
			"literals",
			`[true,false,null,0,"a"]`,
			`[true,false,null,0,"a"]`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustNew(t, "email", "card_number").JSON([]byte(tc.in))
			if string(got) != tc.want {
				t.Errorf("JSON(%s)\n got %s\nwant %s", tc.in, got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("output is not JSON: %s", got)
			}
		})
	}
}

// A document with nothing to redact is returned as it is.
func TestJSONUnchanged(t *testing.T) {
	in := []byte(`{"a": [1, 2.50, "x"], "b": {"c": null}}`)
	if out := (*Redactor)(nil).JSON(in); &out[0] != &in[0] {
		t.Errorf("JSON copied an unchanged document")
	}
}

// What is not valid JSON (a body cut by a cap, plain text) is redacted as
// text, raw and with its escapes decoded; the escapes a secret was written
// with go with it.
func TestJSONInvalid(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{
			"cut body",
			`{"messages":[{"content":"key ` + legacyKey + ` and more`,
			`{"messages":[{"content":"key [REDACTED] and more`,
		},
		{
			"cut body with an escaped key",
			`{"content":"x sk-\u0070roj-` + projKey[8:40] + `\" tail`,
			`{"content":"x [REDACTED]\" tail`,
		},
		{
			"escaped digit and slash inside a token",
			`{"a":"Bearer x\u0031\/y1" ,`,
			`{"a":"Bearer [REDACTED]" ,`,
		},
		{
			"credential member in a cut body",
			`{"headers":{"Authorization":"Bearer abc","x":`,
			`{"headers":{"Authorization":"[REDACTED]","x":`,
		},
		{
			"escaped credential member in a cut body",
			`{"\u0061uthorization": "abc\u0022x", "y`,
			`{"\u0061uthorization": "[REDACTED]", "y`,
		},
		{
			"the key is cut itself",
			`{"content":"` + projKey[:14],
			`{"content":"[REDACTED]`,
		},
		{
			"broken escapes left alone",
			`"\u12 \x \` + "\ufffd" + `sk-abcdefgh12\`,
			`"\u12 \x \` + "\ufffd" + `[REDACTED]\`,
		},
		{
			"surrogate pair",
			`{"a":"\ud83d\ude00 sk-abcd\u0065fgh12`,
			`{"a":"\ud83d\ude00 [REDACTED]`,
		},
		{
			"escaped backslash before a quote ends the value",
			`{"authorization":"abc\\", "x": "y"`,
			`{"authorization":"[REDACTED]", "x": "y"`,
		},
		{
			"lone surrogate",
			`"\ud800sk-abcdefgh12`,
			`"\ud800[REDACTED]`,
		},
		{
			"plain text",
			"Authorization: Bearer x\nmail a@b.io",
			"Authorization: [REDACTED]\nmail [REDACTED]",
		},
		{
			"nothing",
			`{"a":`,
			`{"a":`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustNew(t, "email").JSON([]byte(tc.in))
			if string(got) != tc.want {
				t.Errorf("JSON(%s)\n got %s\nwant %s", tc.in, got, tc.want)
			}
		})
	}
}

// Large documents are redacted in one pass: a 4 MiB string and 100k small
// members.
func TestJSONLarge(t *testing.T) {
	r := mustNew(t, Presets...)
	big := strings.Repeat("lorem ipsum é ", 300000)
	in := `{"a":"` + big + legacyKey + " " + big + `"}`
	want := `{"a":"` + big + Placeholder + " " + big + `"}`
	if got := r.JSON([]byte(in)); string(got) != want {
		t.Errorf("big string: got %d bytes, want %d", len(got), len(want))
	}

	var b, w bytes.Buffer
	b.WriteString("[")
	w.WriteString("[")
	for i := range 100000 {
		if i > 0 {
			b.WriteString(",")
			w.WriteString(",")
		}
		b.WriteString(`{"k":"` + legacyToken + `","n":7}`)
		w.WriteString(`{"k":"[REDACTED]","n":7}`)
	}
	b.WriteString("]")
	w.WriteString("]")
	if got := r.JSON(b.Bytes()); !bytes.Equal(got, w.Bytes()) {
		t.Errorf("many members: got %.200s…", got)
	}
}
