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
	// The other endpoints' fields: OpenAI's sizes, qualities and endpoints
	// are kept without allocating, and so is a character count.
	for _, body := range []string{
		`{"model":"dall-e-3","prompt":"otter","n":1,"size":"1024x1792","quality":"hd","style":"vivid","background":"auto"}`,
		`{"model":"tts-1","voice":"alloy","input":"` + strings.Repeat(`Hé\n😀`, 1000) + `"}`,
		`{"model":"o3","input":"hi","background":true}`,
		`{"input_file_id":"file-abc123","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
	} {
		b := []byte(body)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := ParseRequest(b); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 { // the model name, or the input file ID
			t.Errorf("ParseRequest(%.60s…) allocates %v times, want at most 1", body, allocs)
		}
	}
}

// TestParseUsageAllocs holds ParseUsage to no allocation, seconds included.
func TestParseUsageAllocs(t *testing.T) {
	for _, body := range []string{
		`{"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":8}}}`,
		`{"text":"Hello.","usage":{"type":"duration","seconds":42.700000000000003}}`,
		`{"task":"translate","duration":8.470000267028809,"text":"x"}`,
		`{"data":[{"b64_json":"x"}],"usage":{"total_tokens":5260,"input_tokens":1100,"output_tokens":4160,"input_tokens_details":{"text_tokens":50,"image_tokens":1050}}}`,
	} {
		b := []byte(body)
		allocs := testing.AllocsPerRun(100, func() {
			if _, ok := ParseUsage(b); !ok {
				t.Fatalf("ParseUsage(%s) found no usage", body)
			}
		})
		if allocs != 0 {
			t.Errorf("ParseUsage(%.60s…) allocates %v times", body, allocs)
		}
	}
	body := []byte(`{"created":1,"data":[{"b64_json":"x"},{"b64_json":"y"}]}`)
	if allocs := testing.AllocsPerRun(100, func() { ImageCount(body) }); allocs != 0 {
		t.Errorf("ImageCount allocates %v times", allocs)
	}
}

// TestPricesAllocs holds the cost functions to no allocation.
func TestPricesAllocs(t *testing.T) {
	p := DefaultPrices()
	u := Usage{PromptTokens: 1000, CachedTokens: 100, ImageTokens: 200, CompletionTokens: 500}
	allocs := testing.AllocsPerRun(100, func() {
		p.Cost("gpt-image-1", u)
		p.BatchCost("gpt-4o-2024-08-06", u)
		p.ImageCost("dall-e-3", "1024x1792", "hd", 1)
		p.SpeechCost("tts-1-hd", 100)
		p.AudioCost("whisper-1", 12.5)
	})
	if allocs != 0 {
		t.Errorf("the cost functions allocate %v times", allocs)
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
