package usage

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// words is streamed content as the model sends it: a token or two per chunk.
var words = strings.Fields(strings.Repeat("The quick brown fox jumps over the lazy dog, and then it runs away into the forest to find its friends. ", 40))

// benchStream is a realistic 500-chunk chat completions stream with usage:
// a role chunk, 497 content chunks, a finish chunk, the usage chunk; then
// [DONE]. Each element is one event as Envoy would pass it.
var benchStream = func() [][]byte {
	var events [][]byte
	add := func(data string) { events = append(events, []byte("data: "+data+"\n\n")) }
	add(chatChunk(`{"role":"assistant","content":"","refusal":null}`, "null", "null"))
	for i := range 497 {
		add(chatChunk(`{"content":`+quote(" "+words[i%len(words)])+`}`, "null", "null"))
	}
	add(chatChunk(`{}`, `"stop"`, "null"))
	add(usageChunk)
	add("[DONE]")
	return events
}()

func BenchmarkStreamParser(b *testing.B) {
	var size int
	for _, e := range benchStream {
		size += len(e)
	}
	b.Run("event per chunk", func(b *testing.B) {
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			var s StreamParser
			for _, e := range benchStream {
				s.Write(e)
			}
			if !s.Done() {
				b.Fatal("not done")
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(benchStream)), "ns/chunk")
	})
	b.Run("1KiB chunks", func(b *testing.B) {
		var whole []byte
		for _, e := range benchStream {
			whole = append(whole, e...)
		}
		b.SetBytes(int64(size))
		b.ReportAllocs()
		for b.Loop() {
			var s StreamParser
			for rest := whole; len(rest) > 0; {
				n := min(1024, len(rest))
				s.Write(rest[:n])
				rest = rest[n:]
			}
			if !s.Done() {
				b.Fatal("not done")
			}
		}
	})
}

func chatBody(messages int, contentLen int) []byte {
	var msgs []map[string]string
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", contentLen/45+1)[:contentLen]
	for i := range messages {
		role := []string{"user", "assistant"}[i%2]
		msgs = append(msgs, map[string]string{"role": role, "content": fmt.Sprintf("Message %d. %s", i, text)})
	}
	b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "stream": true, "max_tokens": 1000, "messages": msgs})
	return b
}

func BenchmarkParseRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"2KiB", chatBody(4, 500)},
		{"8MiB", chatBody(128, 64<<10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRequest(bc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCountPrompt counts bodies cold (every text tokenized) and warm
// (every text remembered, as for a conversation's earlier turns).
func BenchmarkCountPrompt(b *testing.B) {
	tok := testTokenizer(b)
	for _, bc := range []struct {
		name string
		body []byte
	}{
		{"2KiB", chatBody(4, 500)},
		{"64KiB", chatBody(16, 4<<10)},
		{"8MiB", chatBody(128, 64<<10)},
	} {
		b.Run(bc.name+"/cold", func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				cold := &Tokenizer{encodings: tok.encodings, loaded: tok.loaded, counts: newCountCache(countCacheEntries)}
				cold.CountPrompt("gpt-4o", bc.body)
			}
		})
		b.Run(bc.name+"/warm", func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			tok.CountPrompt("gpt-4o", bc.body)
			for b.Loop() {
				tok.CountPrompt("gpt-4o", bc.body)
			}
		})
	}
}

func BenchmarkParseUsage(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("word ", 400) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":400,"total_tokens":419,` +
		`"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := ParseUsage(body); !ok {
			b.Fatal("no usage")
		}
	}
}

func BenchmarkCost(b *testing.B) {
	p := DefaultPrices()
	u := Usage{PromptTokens: 1234, CachedTokens: 1000, CompletionTokens: 567}
	b.ReportAllocs()
	for b.Loop() {
		p.Cost("gpt-4o-mini-2024-07-18", u)
	}
}
