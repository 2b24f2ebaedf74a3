package usage

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

func TestTokenizerOffline(t *testing.T) {
	testTokenizer(t).Load() // both encodings, from the binary
	if n := networkCalls.Load(); n != 0 {
		t.Fatalf("loading the encodings made %d network requests", n)
	}
	if entries, _ := os.ReadDir(tiktokenCacheDir); len(entries) != 0 {
		t.Fatalf("loading the encodings wrote the tiktoken cache: %v", entries)
	}
}

// A Tokenizer loads an encoding at its first count, only that one, and once.
func TestTokenizerLoadsEncodingsWhenNeeded(t *testing.T) {
	tok := NewTokenizer()
	loaded := func(id int) bool {
		if got, model := tok.loaded[id].Load(), [2]string{"gpt-4.1-mini", "gpt-3.5-turbo"}[id]; tok.Loaded(model) != got {
			t.Fatalf("Loaded(%s) = %v, the encoding says %v", model, tok.Loaded(model), got)
		}
		return tok.loaded[id].Load()
	}
	if loaded(0) || loaded(1) {
		t.Fatal("NewTokenizer loaded an encoding")
	}
	if n := tok.CountText("gpt-4.1-mini", "hello world"); n != 2 {
		t.Fatalf("o200k count = %d, want 2", n)
	}
	if !loaded(0) || loaded(1) {
		t.Fatalf("after a gpt-4.1 count: o200k loaded %v, cl100k loaded %v", loaded(0), loaded(1))
	}
	if n := tok.CountText("gpt-3.5-turbo", "hello world"); n != 2 {
		t.Fatalf("cl100k count = %d, want 2", n)
	}
	if !loaded(1) {
		t.Fatal("a gpt-3.5 count did not load cl100k_base")
	}
}

func TestEncodingFor(t *testing.T) {
	for _, tc := range []struct {
		model, want string
	}{
		{"gpt-4o", encodingO200k},
		{"gpt-4o-2024-08-06", encodingO200k},
		{"gpt-4o-mini", encodingO200k},
		{"chatgpt-4o-latest", encodingO200k},
		{"gpt-4.1", encodingO200k},
		{"gpt-4.1-nano-2025-04-14", encodingO200k},
		{"gpt-4.5-preview", encodingO200k},
		{"gpt-5", encodingO200k},
		{"gpt-5-mini", encodingO200k},
		{"gpt-5.1", encodingO200k},
		{"o1", encodingO200k},
		{"o1-mini", encodingO200k},
		{"o3", encodingO200k},
		{"o3-mini-2025-01-31", encodingO200k},
		{"o4-mini", encodingO200k},
		{"gpt-oss-120b", encodingO200k},
		{"", encodingO200k},
		{"some-future-model", encodingO200k},
		{"ft:gpt-4o-mini-2024-07-18:org::abc123", encodingO200k},
		{"gpt-4", encodingCL100k},
		{"gpt-4-0613", encodingCL100k},
		{"gpt-4-turbo", encodingCL100k},
		{"gpt-4-32k", encodingCL100k},
		{"gpt-3.5-turbo", encodingCL100k},
		{"gpt-3.5-turbo-0125", encodingCL100k},
		{"gpt-35-turbo", encodingCL100k},
		{"text-embedding-3-small", encodingCL100k},
		{"text-embedding-3-large", encodingCL100k},
		{"text-embedding-ada-002", encodingCL100k},
		{"davinci-002", encodingCL100k},
		{"babbage-002", encodingCL100k},
		{"ft:gpt-3.5-turbo-0125:org::abc123", encodingCL100k},
		{"gpt-4x", encodingO200k}, // not the gpt-4 family
	} {
		if got := encodingFor(tc.model); got != tc.want {
			t.Errorf("encodingFor(%q) = %s, want %s", tc.model, got, tc.want)
		}
	}
}

// TestKnownTokens checks each encoding against token ids published by OpenAI
// (tiktoken's README and cookbook), so the right rank file is loaded.
func TestKnownTokens(t *testing.T) {
	tok := testTokenizer(t)
	for _, tc := range []struct {
		model, text string
		want        []int
	}{
		{"gpt-4", "tiktoken is great!", []int{83, 1609, 5963, 374, 2294, 0}},
		{"gpt-4", "hello world", []int{15339, 1917}},
		{"gpt-4o", "hello world", []int{24912, 2375}},
	} {
		got := tok.encoding(tc.model).EncodeOrdinary(tc.text)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s %q: tokens %v, want %v", tc.model, tc.text, got, tc.want)
		}
		if n := tok.CountText(tc.model, tc.text); n != int64(len(tc.want)) {
			t.Errorf("CountText(%s, %q) = %d, want %d", tc.model, tc.text, n, len(tc.want))
		}
	}
}

func TestCountText(t *testing.T) {
	tok := testTokenizer(t)
	for _, tc := range []struct {
		name, model, text string
		want              int64
	}{
		{"empty", "gpt-4o", "", 0},
		{"special tokens are text", "gpt-4o", "<|endoftext|>", 7},
		{"cl100k word", "gpt-3.5-turbo", "antidisestablishmentarianism", 6},
		{"o200k word", "gpt-4o", "antidisestablishmentarianism", 6},
		{"cl100k japanese", "gpt-4", "お誕生日おめでとう", 9},
		{"o200k japanese", "gpt-4o", "お誕生日おめでとう", 8},
		{"cl100k arithmetic", "gpt-4", "2 + 2 = 4", 7},
		{"o200k arithmetic", "gpt-4o", "2 + 2 = 4", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tok.CountText(tc.model, tc.text); got != tc.want {
				t.Errorf("CountText(%s, %q) = %d, want %d", tc.model, tc.text, got, tc.want)
			}
		})
	}
}

// cookbookMessages is the example of OpenAI's cookbook "How to count tokens
// with tiktoken", whose prompt_tokens the API reports as 129 for the gpt-4 and
// gpt-3.5-turbo models and 124 for gpt-4o and gpt-4o-mini.
const cookbookMessages = `[
 {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
 {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
 {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
 {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
 {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
 {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
]`

func TestCountPromptCookbook(t *testing.T) {
	tok := testTokenizer(t)
	for _, tc := range []struct {
		model string
		want  int64
	}{
		{"gpt-3.5-turbo", 129},
		{"gpt-4-0613", 129},
		{"gpt-4", 129},
		{"gpt-4o", 124},
		{"gpt-4o-mini", 124},
	} {
		body := `{"model":"` + tc.model + `","messages":` + cookbookMessages + `}`
		if got := tok.CountPrompt(tc.model, []byte(body)); got != tc.want {
			t.Errorf("CountPrompt(%s) = %d, want %d", tc.model, got, tc.want)
		}
	}
}

func TestCountPrompt(t *testing.T) {
	tok := testTokenizer(t)
	n := func(model, text string) int64 { return tok.CountText(model, text) }
	const m = "gpt-4o"
	user := n(m, "user")
	hello := n(m, "Hello there")
	for _, tc := range []struct {
		name string
		body string
		want int64
	}{
		{"string content", `{"messages":[{"role":"user","content":"Hello there"}]}`,
			3 + user + hello + 3},
		{"text parts", `{"messages":[{"role":"user","content":[{"type":"text","text":"Hello"},{"type":"text","text":" there"}]}]}`,
			3 + user + n(m, "Hello") + n(m, " there") + 3},
		{"escaped content", `{"messages":[{"role":"user","content":"Hello\u0020there"}]}`,
			3 + user + hello + 3},
		{"null content and tool calls", `{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}]}`,
			3 + n(m, "assistant") + n(m, "get_weather") + n(m, `{"city":"Paris"}`) + 3},
		{"tool message", `{"messages":[{"role":"tool","tool_call_id":"call_1","content":"22C"}]}`,
			3 + n(m, "tool") + n(m, "22C") + 3},
		{"name", `{"messages":[{"role":"user","name":"bob","content":"Hello there"}]}`,
			3 + user + n(m, "bob") + 1 + hello + 3},
		{"image high", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`,
			3 + user + 765 + 3},
		{"image low", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]}]}`,
			3 + user + 85 + 3},
		{"audio and file parts count nothing", `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}},{"type":"file","file":{"file_data":"AAAA"}}]}]}`,
			3 + user + 3},
		{"responses string input", `{"model":"gpt-4o","input":"Hello there"}`, hello},
		{"responses instructions", `{"instructions":"Hello there","input":"Hello there"}`, 3 + 2*hello},
		{"responses items", `{"input":[{"role":"user","content":[{"type":"input_text","text":"Hello there"},{"type":"input_image","image_url":"https://x/y.png","detail":"low"}]},{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"ok"}]}`,
			3 + user + hello + 85 + 3 + n(m, "f") + 1 + n(m, "{}") + 3 + n(m, "ok") + 3}, // a name always adds 1
		{"embeddings strings", `{"model":"text-embedding-3-small","input":["Hello there","Hello there"]}`, 2 * hello},
		{"embeddings token ids", `{"input":[1,2,3]}`, 3},
		{"embeddings token id arrays", `{"input":[[1,2],[3]]}`, 3},
		{"completions prompt", `{"prompt":"Hello there"}`, hello},
		{"completions prompt array", `{"prompt":["Hello there","Hello there"]}`, 2 * hello},
		{"responses prompt template", `{"prompt":{"id":"pmpt_1","variables":{"x":"y"}}}`, 0},
		{"tools as compact JSON", `{"tools":[ {"type": "function", "function": {"name": "f"}} ]}`,
			n(m, `[{"type":"function","function":{"name":"f"}}]`)},
		{"response_format schema", `{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}`,
			n(m, `{"name":"x","schema":{"type":"object"}}`)},
		{"text format schema", `{"text":{"format":{"type":"json_schema","schema":{"type":"object"}}}}`,
			n(m, `{"type":"object"}`)},
		{"unknown fields ignored", `{"temperature":0.5,"metadata":{"messages":"x"},"messages":[]}`, 0},
		{"empty object", `{}`, 0},
		{"not JSON", `hello world, this is not JSON`, 8},
		{"truncated JSON", `{"messages":[{"role":"user","content":"Hello`, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tok.CountPrompt(m, []byte(tc.body)); got != tc.want {
				t.Errorf("CountPrompt = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestCountPromptLarge checks the exact-count budget: text past it is
// estimated at the ratio of what was counted, so a long uniform text comes
// out close to its exact count, and the count stays quick.
func TestCountPromptLarge(t *testing.T) {
	tok := testTokenizer(t)
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 6000) // 270 KB
	body, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": text}}})
	got := tok.CountPrompt("gpt-4o", body)
	exact := int64(len(tok.encoding("gpt-4o").EncodeOrdinary(text))) + 3 + 1 + 3
	if diff := float64(got-exact) / float64(exact); diff < -0.01 || diff > 0.01 {
		t.Errorf("CountPrompt = %d, exact %d (%.2f%% off)", got, exact, 100*diff)
	}
	if got := tok.CountText("gpt-4o", text); got < exact*99/100 || got > exact*101/100 {
		t.Errorf("CountText = %d, exact %d", got, exact)
	}
}

func TestCutPoint(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   int
	}{
		{"hello world", 5},
		{"helloworld", 10},
		{"héllo", 6},
		{"h\xc3", 1}, // a rune cut in half
		{"€"[:2], 0},
		{"", 0},
	} {
		if got := cutPoint(tc.prefix); got != tc.want {
			t.Errorf("cutPoint(%q) = %d, want %d", tc.prefix, got, tc.want)
		}
	}
}

func TestTokenizerConcurrent(t *testing.T) {
	tok := testTokenizer(t)
	body := []byte(`{"model":"gpt-4","messages":` + cookbookMessages + `}`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			model := []string{"gpt-4", "gpt-4o"}[i%2]
			want := map[string]int64{"gpt-4": 129, "gpt-4o": 124}[model]
			for range 20 {
				if got := tok.CountPrompt(model, body); got != want {
					t.Errorf("CountPrompt(%s) = %d, want %d", model, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestCountCache checks that remembered counts are the counts: per encoding,
// for repeated bodies, and for repeated texts within a body, which the cache
// lets a count take exactly past the budget.
func TestCountCache(t *testing.T) {
	tok := testTokenizer(t)
	cold := &Tokenizer{encodings: tok.encodings, loaded: tok.loaded}                         // no cache
	text := strings.Repeat("Once upon a time, in a land far away, lived a tokenizer. ", 700) // 40 KB
	body, _ := json.Marshal(map[string]any{"messages": []map[string]string{
		{"role": "user", "content": text}, {"role": "assistant", "content": text},
		{"role": "user", "content": text}, {"role": "assistant", "content": text},
	}})
	for _, model := range []string{"gpt-4o", "gpt-4", "gpt-4o"} {
		exact := int64(len(tok.encoding(model).EncodeOrdinary(text)))
		roles := tok.CountText(model, "user")*2 + tok.CountText(model, "assistant")*2
		want := 4*(3+exact) + roles + 3
		for i := range 2 {
			if got := tok.CountPrompt(model, body); got != want {
				t.Errorf("%s, count %d: CountPrompt = %d, want %d", model, i, got, want)
			}
		}
		if got := tok.CountText(model, text); got != exact {
			t.Errorf("%s: CountText = %d, want %d", model, got, exact)
		}
		// Without the cache the two texts past the budget are estimated.
		if got := cold.CountPrompt(model, body); got < want*98/100 || got > want*102/100 {
			t.Errorf("%s: uncached CountPrompt = %d, want about %d", model, got, want)
		}
	}
}

func TestCountCacheEviction(t *testing.T) {
	c := newCountCache(4)
	for i := range 10 {
		text := fmt.Sprintf("%0300d", i)
		key, _, ok := c.lookupString(0, text)
		if ok {
			t.Fatalf("text %d found before it was put", i)
		}
		c.put(key, countEntry{tokens: int64(i), size: len(text)})
		if _, e, ok := c.lookupString(0, text); !ok || e.tokens != int64(i) {
			t.Fatalf("text %d: got %+v, %v", i, e, ok)
		}
		if _, _, ok := c.lookupString(1, text); ok {
			t.Fatalf("text %d found in another encoding", i)
		}
		if len(c.m) > 4 {
			t.Fatalf("cache holds %d entries, max 4", len(c.m))
		}
	}
	if _, _, ok := c.lookupString(0, "short"); ok {
		t.Error("short text cached")
	}
}
