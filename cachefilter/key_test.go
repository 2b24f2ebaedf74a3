package cachefilter_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"unicode/utf8"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

func key(t testing.TB, project, method, path, query, body string, h http.Header) string {
	t.Helper()
	k, err := cachefilter.KeyFor(project, method, path, query, []byte(body), h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const chat = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`

func TestKeyForSame(t *testing.T) {
	t.Parallel()
	base := key(t, "p1", "POST", "/v1/chat/completions", "a=1&b=2", chat, http.Header{"Accept": {"application/json"}})
	if len(base) != 64 {
		t.Fatalf("key %q is not hex SHA-256", base)
	}
	for _, tc := range []struct {
		name, method, query, body string
		h                         http.Header
	}{
		{"method case", "post", "a=1&b=2", chat, http.Header{"Accept": {"application/json"}}},
		{"query order", "POST", "b=2&a=1", chat, http.Header{"Accept": {"application/json"}}},
		{"key order and white space", "POST", "a=1&b=2", "\n{ \"temperature\" : 0.5,\n \"messages\":[{\"content\":\"hi\",\"role\":\"user\"}], \"model\":\"gpt-4o\" }\n", http.Header{"Accept": {"application/json"}}},
		{"unrelated headers", "POST", "a=1&b=2", chat, http.Header{"Accept": {"application/json"}, "Origin": {"https://evil.example"}, "User-Agent": {"x"}, "X-Request-Id": {"r1"}, "Authorization": {"Bearer a"}}},
		{"header name case", "POST", "a=1&b=2", chat, http.Header{"accept": {"application/json"}}},
		{"header value case and space", "POST", "a=1&b=2", chat, http.Header{"Accept": {" Application/JSON "}}},
	} {
		if got := key(t, "p1", tc.method, "/v1/chat/completions", tc.query, tc.body, tc.h); got != base {
			t.Errorf("%s: key differs", tc.name)
		}
	}
	a := key(t, "p", "GET", "/", "", "", http.Header{"Accept": {"text/event-stream, application/json"}})
	b := key(t, "p", "GET", "/", "", "", http.Header{"Accept": {"application/json", "text/event-stream"}})
	if a != b {
		t.Error("accept lists in another order or split differ")
	}
	if key(t, "p", "GET", "/", "", "", http.Header{"Accept-Encoding": {"gzip"}}) != key(t, "p", "GET", "/", "", "", nil) {
		t.Error("accept-encoding splits the key; entries are identity bodies")
	}
	if key(t, "p", "GET", "/", "", "", nil) != key(t, "p", "GET", "/", "", "", http.Header{"Accept": {""}}) {
		t.Error("absent and empty variant header differ")
	}
}

func TestKeyForDifferent(t *testing.T) {
	t.Parallel()
	base := key(t, "p1", "POST", "/v1/chat/completions", "a=1", chat, nil)
	for _, tc := range []struct {
		name, project, method, path, query, body string
		h                                        http.Header
	}{
		{"project", "p2", "POST", "/v1/chat/completions", "a=1", chat, nil},
		{"method", "p1", "GET", "/v1/chat/completions", "a=1", chat, nil},
		{"path", "p1", "POST", "/v1/completions", "a=1", chat, nil},
		{"query", "p1", "POST", "/v1/chat/completions", "a=2", chat, nil},
		{"no query", "p1", "POST", "/v1/chat/completions", "", chat, nil},
		{"body value", "p1", "POST", "/v1/chat/completions", "a=1", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi!"}],"temperature":0.5}`, nil},
		{"number spelling", "p1", "POST", "/v1/chat/completions", "a=1", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.50}`, nil},
		{"array order", "p1", "POST", "/v1/chat/completions", "a=1", `{"model":"gpt-4o","messages":[{"content":"hi","role":"user"},{"role":"user","content":"hi"}],"temperature":0.5}`, nil},
		{"accept", "p1", "POST", "/v1/chat/completions", "a=1", chat, http.Header{"Accept": {"text/event-stream"}}},
		{"openai-beta", "p1", "POST", "/v1/chat/completions", "a=1", chat, http.Header{"Openai-Beta": {"assistants=v2"}}},
		{"field boundaries", "p1P", "OST", "/v1/chat/completions", "a=1", chat, nil},
	} {
		if got := key(t, tc.project, tc.method, tc.path, tc.query, tc.body, tc.h); got == base {
			t.Errorf("%s: same key", tc.name)
		}
	}
	// Repeated parameters keep their order.
	if key(t, "p", "GET", "/", "a=1&a=2", "", nil) == key(t, "p", "GET", "/", "a=2&a=1", "", nil) {
		t.Error("a=1&a=2 and a=2&a=1 share a key")
	}
	// Non-JSON bodies are hashed raw: white space counts.
	if key(t, "p", "POST", "/", "", "not json", nil) == key(t, "p", "POST", "/", "", "not  json", nil) {
		t.Error("raw bodies differing in white space share a key")
	}
	// Invalid UTF-8 inside JSON strings is not folded into U+FFFD.
	if key(t, "p", "POST", "/", "", "\"\xff\"", nil) == key(t, "p", "POST", "/", "", "\"\xfe\"", nil) {
		t.Error("different invalid UTF-8 bodies share a key")
	}
	if _, err := cachefilter.KeyFor("p", "GET", "/", "a=%zz", nil, nil); err == nil {
		t.Error("malformed query accepted")
	}
}

// reformat re-encodes a JSON document with indentation and, for objects,
// keys in reverse order.
func reformat(t *testing.T, body []byte) []byte {
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, " ", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzKeyForJSON: equivalent JSON (re-indented, re-ordered) gets the same
// key; a simple change of a value gets another.
func FuzzKeyForJSON(f *testing.F) {
	f.Add(chat)
	f.Add(`{"a":[1,2,{"b":null,"c":true}],"d":"é\u00e9<>&"}`)
	f.Add(`[1.5e3, -0, "x"]`)
	f.Add(`"just a string"`)
	f.Fuzz(func(t *testing.T, body string) {
		var v any
		d := json.NewDecoder(bytes.NewReader([]byte(body)))
		d.UseNumber()
		if !utf8.ValidString(body) || !json.Valid([]byte(body)) || d.Decode(&v) != nil {
			return // KeyFor hashes these raw, by design
		}
		k1, err := cachefilter.KeyFor("p", "POST", "/v1/x", "", []byte(body), nil)
		if err != nil {
			t.Fatal(err)
		}
		k2, _ := cachefilter.KeyFor("p", "POST", "/v1/x", "", reformat(t, []byte(body)), nil)
		if k1 != k2 {
			t.Fatalf("re-indented body changed the key")
		}
		// Re-encoding through a map sorts keys: still the same document.
		if m, ok := v.(map[string]any); ok {
			sorted, _ := json.Marshal(m)
			k3, _ := cachefilter.KeyFor("p", "POST", "/v1/x", "", sorted, nil)
			if k3 != k1 {
				t.Fatalf("sorted body %s changed the key", sorted)
			}
			m["__fuzz_extra"] = 1
			changed, _ := json.Marshal(m)
			k4, _ := cachefilter.KeyFor("p", "POST", "/v1/x", "", changed, nil)
			if k4 == k1 {
				t.Fatal("added member kept the key")
			}
		}
		wrapped, _ := cachefilter.KeyFor("p", "POST", "/v1/x", "", []byte("["+body+"]"), nil)
		if wrapped == k1 {
			t.Fatal("wrapped body kept the key")
		}
	})
}
