//go:build !race

// Allocation counts are only meaningful without the race detector, which
// allocates on its own; `make test` runs with -race, so these run under a
// plain `go test ./usage/`.

package usage

import (
	"strings"
	"testing"
)

func TestParseRequestAllocs(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"max_tokens":100,"messages":[{"role":"user","content":"` + strings.Repeat("x", 4096) + `"}]}`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(body); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 { // the model name
		t.Errorf("ParseRequest allocates %v times, want at most 1", allocs)
	}
}

// TestStreamParserAllocs holds Write to no allocation per content chunk once
// its buffers have grown.
func TestStreamParserAllocs(t *testing.T) {
	s := NewStreamParser(0)
	chunk := []byte("data: " + chatChunk(`{"content":" word"}`, "null", "null") + "\n\n")
	for range 1000 {
		s.Write(chunk)
	}
	if allocs := testing.AllocsPerRun(1000, func() { s.Write(chunk) }); allocs != 0 {
		t.Errorf("Write allocates %v times per content chunk", allocs)
	}
	delta := []byte(`data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" word","logprobs":[],"obfuscation":"x"}` + "\n\n")
	if allocs := testing.AllocsPerRun(1000, func() { s.Write(delta) }); allocs != 0 {
		t.Errorf("Write allocates %v times per Responses API text delta", allocs)
	}
	split := len(chunk) / 2
	if allocs := testing.AllocsPerRun(1000, func() { s.Write(chunk[:split]); s.Write(chunk[split:]) }); allocs != 0 {
		t.Errorf("Write allocates %v times per split content chunk", allocs)
	}
}
