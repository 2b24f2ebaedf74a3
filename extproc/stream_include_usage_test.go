package extproc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/usage"
)

const sseWithUsage = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n" +
	": keep-alive\n\n" +
	"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\r\n\r\n" +
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n" +
	"data: [DONE]\n\n"

const sseWithoutUsage = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n" +
	": keep-alive\n\n" +
	"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\r\n\r\n" +
	"data: [DONE]\n\n"

func TestUsageChunkFilterAtEveryChunkBoundary(t *testing.T) {
	in := []byte(sseWithUsage)
	for cut := 0; cut <= len(in); cut++ {
		for cut2 := cut; cut2 <= len(in); cut2 += 7 {
			var f usageChunkFilter
			var out []byte
			out = append(out, filtered(&f, in[:cut], false)...)
			out = append(out, filtered(&f, in[cut:cut2], false)...)
			out = append(out, filtered(&f, in[cut2:], true)...)
			if string(out) != sseWithoutUsage {
				t.Fatalf("cuts %d/%d: got %q", cut, cut2, out)
			}
		}
	}
}

// filtered is what the client receives of chunk; an unchanged chunk must be
// reported as such only when it is exactly what was received. It is valid
// until the next call.
func filtered(f *usageChunkFilter, chunk []byte, end bool) []byte {
	out, changed := f.filter(chunk, end)
	if !changed && !bytes.Equal(out, chunk) {
		panic("filter reported no change but changed the chunk")
	}
	return out
}

// Every chunk but the one with the usage-only event passes as it came: no
// body is sent back to Envoy for it.
func TestUsageChunkFilterChangesOnlyTheUsageChunk(t *testing.T) {
	var f usageChunkFilter
	for ev := range strings.SplitAfterSeq(sseWithUsage, "\n\n") {
		if ev == "" {
			continue
		}
		out, changed := f.filter([]byte(ev), strings.HasPrefix(ev, "data: [DONE]"))
		usageOnly := strings.Contains(ev, `"choices":[]`)
		if changed != usageOnly || strings.Contains(string(out), `"choices":[]`) {
			t.Errorf("event %q: changed %v, out %q", ev, changed, out)
		}
	}
	// A chunk ending inside an event is held back, and then changed.
	if out, changed := f.filter([]byte("data: {\"choi"), false); !changed || len(out) != 0 {
		t.Errorf("partial event: changed %v, out %q", changed, out)
	}
}

func TestIsUsageOnly(t *testing.T) {
	for ev, want := range map[string]bool{
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n":              true,
		"data: {\"choices\": [], \"usage\" : {\"prompt_tokens\":3}}\n\n":          true,
		"data: {\"choices\":[],\"usage\":null}\n\n":                               false,
		"data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{\"}}]}\n\n": false,
		"data: {\"choices\":[{\"index\":0}],\"usage\":{\"prompt_tokens\":3}}\n\n": false,
		"data: {\"choices\":[],\"xusage\":{\"prompt_tokens\":3}}\n\n":             false,
		"data: [DONE]\n\n": false,
	} {
		if got := isUsageOnly([]byte(ev)); got != want {
			t.Errorf("isUsageOnly(%q) = %v", ev, got)
		}
	}
}

// The body is edited in place: stream_options added at the end, or set
// inside the client's own (each occurrence), and every other byte kept —
// key order, spacing, number spelling, characters encoding/json would
// escape.
func TestInjectIncludeUsageKeepsTheBody(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{ "stream": true, "model": "m", "seed": 12345678901234567890, "x": "<&>" }`,
			`{ "stream": true, "model": "m", "seed": 12345678901234567890, "x": "<&>" ,"stream_options":{"include_usage":true}}`},
		{`{"model":"m","stream":true,"stream_options":null}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{`{"model":"m","stream":true,"stream_options":{"x":1.50}}`, `{"model":"m","stream":true,"stream_options":{"x":1.50,"include_usage":true}}`},
		{`{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true,"x":1}}`},
		{`{"stream_options":{},"model":"m","stream":true,"stream_options":{"include_usage":null}}`,
			`{"stream_options":{"include_usage":true},"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
	} {
		req, err := usage.ParseRequest([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		st := &stream{req: req, path: "/v1/chat/completions"}
		if got := string(st.injectIncludeUsage([]byte(tc.body))); got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.body, got, tc.want)
		}
	}
}

func TestInjectIncludeUsage(t *testing.T) {
	for _, tc := range []struct {
		name, body, path string
		want             bool // a changed body
	}{
		{"plain stream", `{"model":"m","stream":true,"messages":[]}`, "/v1/chat/completions", true},
		{"other stream options kept", `{"model":"m","stream":true,"stream_options":{"x":1}}`, "/v1/chat/completions", true},
		{"client asked", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, "/v1/chat/completions", false},
		{"not streamed", `{"model":"m","messages":[]}`, "/v1/chat/completions", false},
		{"responses API reports usage itself", `{"model":"m","stream":true,"input":"x"}`, "/v1/responses", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := usage.ParseRequest([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			st := &stream{req: req, path: tc.path}
			out := st.injectIncludeUsage([]byte(tc.body))
			if st.includeUsage.injected != (out != nil) {
				t.Fatalf("injected = %v for a changed body %v", st.includeUsage.injected, out != nil)
			}
			if (out != nil) != tc.want {
				t.Fatalf("changed = %v", out != nil)
			}
			if out == nil {
				return
			}
			var doc struct {
				StreamOptions map[string]any `json:"stream_options"`
				Model         string         `json:"model"`
			}
			if err := json.Unmarshal(out, &doc); err != nil || doc.StreamOptions["include_usage"] != true || doc.Model != "m" {
				t.Fatalf("%s → %s", tc.body, out)
			}
			if bytes.Contains([]byte(tc.body), []byte(`"x":1`)) && doc.StreamOptions["x"] != float64(1) {
				t.Fatalf("other stream options lost: %s", out)
			}
		})
	}
}

// referenceFilter is what filtering a whole stream means: every complete
// event but the usage-only ones, then whatever incomplete event ends it.
func referenceFilter(in []byte) []byte {
	var out []byte
	for {
		n := eventLen(in)
		if n < 0 {
			return append(out, in...)
		}
		if !isUsageOnly(in[:n]) {
			out = append(out, in[:n]...)
		}
		in = in[n:]
	}
}

func FuzzUsageChunkFilter(f *testing.F) {
	f.Add([]byte(sseWithUsage), 10, 40)
	f.Add([]byte("data: x\r\n\r\ndata: y"), 3, 5)
	f.Add([]byte("data: x\n\r\ndata: y\n\n"), 8, 9)
	f.Fuzz(func(t *testing.T, in []byte, cut, cut2 int) {
		if cut < 0 || cut2 < cut || cut2 > len(in) {
			return
		}
		var split usageChunkFilter
		// What filter returns lives until its next call: keep a copy.
		got := append([]byte(nil), filtered(&split, in[:cut], false)...)
		got = append(got, filtered(&split, in[cut:cut2], false)...)
		got = append(got, filtered(&split, in[cut2:], true)...)
		if want := referenceFilter(in); !bytes.Equal(got, want) {
			t.Fatalf("cuts %d/%d: got %q, want %q", cut, cut2, got, want)
		}
	})
}

func TestEventLen(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"data: x", -1},
		{"data: x\n", -1},
		{"data: x\n\n", 9},
		{"data: x\n\ndata: y\n\n", 9},
		{"data: x\r\n\r\n", 11},
		{"data: x\n\r\n", 10},
		{"data: x\r\n", -1},
		{"data: x\n\r", -1},
		{"a\nb\nc\n\n", 7},
		{"\n\n", 2},
		{"\n\r\n", 3},
		{"x\r\ry\n\n", 6},
	} {
		if got := eventLen([]byte(tc.in)); got != tc.want {
			t.Errorf("eventLen(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
