package usage

import (
	"fmt"
	"strings"
	"testing"
)

// chatChunk is a chat.completion.chunk as OpenAI streams it.
func chatChunk(delta, finish, usage string) string {
	return `{"id":"chatcmpl-CbQ8xYzAbC","object":"chat.completion.chunk","created":1764300000,"model":"gpt-4o-mini-2024-07-18",` +
		`"service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":` + delta +
		`,"logprobs":null,"finish_reason":` + finish + `}],"usage":` + usage + `,"obfuscation":"aBc12"}`
}

const usageChunk = `{"id":"chatcmpl-CbQ8xYzAbC","object":"chat.completion.chunk","created":1764300000,"model":"gpt-4o-mini-2024-07-18","choices":[],` +
	`"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},` +
	`"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"q"}`

// chatStream is a complete chat completions stream of the given contents.
func chatStream(sep string, withUsage bool, contents ...string) string {
	var b strings.Builder
	event := func(data string) { b.WriteString("data: " + data + sep + sep) }
	event(chatChunk(`{"role":"assistant","content":"","refusal":null}`, "null", "null"))
	for _, c := range contents {
		event(chatChunk(`{"content":`+quote(c)+`}`, "null", "null"))
	}
	event(chatChunk(`{}`, `"stop"`, "null"))
	if withUsage {
		event(usageChunk)
	}
	event("[DONE]")
	return b.String()
}

func quote(s string) string { return fmt.Sprintf("%q", s) } // ASCII test strings only

const responsesStream = "event: response.created\n" +
	`data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","usage":null}}` + "\n\n" +
	"event: response.output_text.delta\n" +
	`data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello","logprobs":[],"obfuscation":"x"}` + "\n\n" +
	"event: response.output_text.delta\n" +
	`data: {"sequence_number":5,"delta":" world","type":"response.output_text.delta"}` + "\n\n" +
	`data: {"type":"response.audio.delta","sequence_number":6,"delta":"QUFBQQ=="}` + "\n\n" +
	`data: {"type":"response.function_call_arguments.delta","sequence_number":7,"item_id":"fc_1","output_index":1,"delta":"{\"a\":1}"}` + "\n\n" +
	`data: {"type":"response.output_text.done","sequence_number":8,"text":"Hello world"}` + "\n\n" +
	"event: response.completed\n" +
	`data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hello world"}]}],` +
	`"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":20,"output_tokens_details":{"reasoning_tokens":8},"total_tokens":30}}}` + "\n\n"

type streamResult struct {
	Text      string
	TextBytes int64
	Truncated bool
	Usage     Usage
	HasUsage  bool
	Done      bool
}

func resultOf(s *StreamParser) streamResult {
	u, ok := s.Usage()
	return streamResult{s.Text(), s.TextBytes(), s.Truncated(), u, ok, s.Done()}
}

func parseWhole(maxText int, stream string) streamResult {
	s := NewStreamParser(maxText)
	s.Write([]byte(stream))
	return resultOf(s)
}

func TestStreamParser(t *testing.T) {
	chatUsage := Usage{PromptTokens: 12, CompletionTokens: 5, TotalTokens: 17}
	for _, tc := range []struct {
		name    string
		maxText int
		stream  string
		want    streamResult
	}{
		{name: "chat with usage", stream: chatStream("\n", true, "Hello", ",", " world", "!"),
			want: streamResult{Text: "Hello, world!", TextBytes: 13, Usage: chatUsage, HasUsage: true, Done: true}},
		{name: "chat without usage", stream: chatStream("\n", false, "Hello", " world"),
			want: streamResult{Text: "Hello world", TextBytes: 11, Done: true}},
		{name: "CRLF", stream: chatStream("\r\n", true, "a", "b"),
			want: streamResult{Text: "ab", TextBytes: 2, Usage: chatUsage, HasUsage: true, Done: true}},
		{name: "CR", stream: chatStream("\r", true, "a", "b"),
			want: streamResult{Text: "ab", TextBytes: 2, Usage: chatUsage, HasUsage: true, Done: true}},
		{name: "aborted", stream: strings.TrimSuffix(chatStream("\n", false, "a", "b"), "data: [DONE]\n\n"),
			want: streamResult{Text: "ab", TextBytes: 2}},
		{name: "comments and keep-alives", stream: ": OPENROUTER PROCESSING\n\n:\n\ndata: " + chatChunk(`{"content":"x"}`, "null", "null") + "\n:ping\n\n",
			want: streamResult{Text: "x", TextBytes: 1}},
		{name: "data lines joined", stream: "data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"x\"}}]}\n\n",
			want: streamResult{Text: "x", TextBytes: 1}},
		{name: "no space after colon, other fields", stream: "id: 1\nevent: message\nretry: 10\ndata:{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
			want: streamResult{Text: "x", TextBytes: 1}},
		{name: "event without blank line is not read", stream: "data: " + chatChunk(`{"content":"x"}`, "null", "null") + "\n",
			want: streamResult{}},
		{name: "malformed payload adds nothing", stream: `data: {"choices":[{"delta":{"content":"lost"}}], BROKEN` + "\n\n" +
			`data: {"choices":[{"delta":{"content":"kept"}}],"usage":{"prompt_tokens":1` + "\n\n" +
			`data: {"choices":[{"delta":{"content":"ok"}}]}` + "\n\n",
			want: streamResult{Text: "ok", TextBytes: 2}},
		{name: "non-object payloads", stream: "data: 42\n\ndata: \"x\"\n\ndata: \n\ndata\n\n",
			want: streamResult{}},
		{name: "DONE with spaces", stream: "data:  [DONE] \n\n", want: streamResult{Done: true}},
		{name: "reasoning, refusal and tool calls", stream: "data: " + chatChunk(`{"reasoning_content":"think "}`, "null", "null") + "\n\n" +
			"data: " + chatChunk(`{"refusal":"no "}`, "null", "null") + "\n\n" +
			"data: " + chatChunk(`{"content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}`, "null", "null") + "\n\n" +
			"data: " + chatChunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}`, "null", "null") + "\n\n" +
			"data: " + chatChunk(`{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`, "null", "null") + "\n\n",
			want: streamResult{Text: `think no get_weather{"city":"Paris"}`, TextBytes: 36}},
		{name: "legacy completions", stream: `data: {"id":"cmpl-1","object":"text_completion","choices":[{"text":"Hi","index":0,"logprobs":null,"finish_reason":null}]}` + "\n\n" +
			`data: {"choices":[{"text":" there","index":0}],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}` + "\n\ndata: [DONE]\n\n",
			want: streamResult{Text: "Hi there", TextBytes: 8, Usage: Usage{PromptTokens: 2, CompletionTokens: 2, TotalTokens: 4}, HasUsage: true, Done: true}},
		{name: "escapes", stream: `data: {"choices":[{"delta":{"content":"a\"b\\c\n\u00e9\ud83d\ude00\ud800"}}]}` + "\n\n",
			want: streamResult{Text: "a\"b\\c\né😀\uFFFD", TextBytes: 15}},
		{name: "several choices", stream: `data: {"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}` + "\n\n",
			want: streamResult{Text: "ab", TextBytes: 2}},
		{name: "responses API", stream: responsesStream,
			want: streamResult{Text: `Hello world{"a":1}`, TextBytes: 18,
				Usage: Usage{PromptTokens: 10, CompletionTokens: 20, CachedTokens: 4, ReasoningTokens: 8, TotalTokens: 30}, HasUsage: true, Done: true}},
		{name: "responses incomplete is done", stream: `data: {"type":"response.incomplete","response":{"usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}}}` + "\n\n",
			want: streamResult{Usage: Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}, HasUsage: true, Done: true}},
		{name: "later usage wins", stream: `data: {"usage":{"prompt_tokens":1,"completion_tokens":1}}` + "\n\n" + `data: {"usage":{"prompt_tokens":2,"completion_tokens":3}}` + "\n\n" + `data: {"usage":null}` + "\n\n",
			want: streamResult{Usage: Usage{PromptTokens: 2, CompletionTokens: 3, TotalTokens: 5}, HasUsage: true}},
		{name: "invalid usage ignored", stream: `data: {"usage":{"prompt_tokens":1,"completion_tokens":1}}` + "\n\n" + `data: {"usage":{"prompt_tokens":"x"}}` + "\n\n",
			want: streamResult{Usage: Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}, HasUsage: true}},
		{name: "truncated", maxText: 8, stream: chatStream("\n", false, "Hello", " world", "!"),
			want: streamResult{Text: "Hello wo", TextBytes: 12, Truncated: true, Done: true}},
		{name: "truncated at a rune boundary", maxText: 5, stream: chatStream("\n", false, "ab", "éé", "c"),
			want: streamResult{Text: "abé", TextBytes: 7, Truncated: true, Done: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseWhole(tc.maxText, tc.stream); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestStreamParserSplits feeds streams split at every boundary, into two and
// three parts and byte by byte, and expects what feeding them whole gives.
func TestStreamParserSplits(t *testing.T) {
	for name, stream := range map[string]string{
		"LF":        chatStream("\n", true, "Hel", "lo", " wörld", "\\n"),
		"CRLF":      chatStream("\r\n", true, "a", "b"),
		"CR":        chatStream("\r", true, "a"),
		"responses": responsesStream,
		"comments":  ": keep-alive\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\ndata\r\n\r\n: x\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			for _, maxText := range []int{0, 3} {
				whole := parseWhole(maxText, stream)
				check := func(how string, parts ...string) {
					t.Helper()
					s := NewStreamParser(maxText)
					for _, p := range parts {
						s.Write([]byte(p))
					}
					if got := resultOf(s); got != whole {
						t.Fatalf("maxText %d, %s: got %+v, want %+v", maxText, how, got, whole)
					}
				}
				for i := range len(stream) + 1 {
					check(fmt.Sprintf("split at %d", i), stream[:i], stream[i:])
				}
				if len(stream) < 1500 {
					for i := range len(stream) + 1 {
						for j := i; j <= len(stream); j += 41 {
							check(fmt.Sprintf("split at %d, %d", i, j), stream[:i], stream[i:j], "", stream[j:])
						}
					}
				}
				check("byte by byte", strings.Split(stream, "")...)
			}
		})
	}
}

func TestStreamParserLongEvent(t *testing.T) {
	long := "data: " + `{"choices":[{"delta":{"content":"` + strings.Repeat("x", maxEventBytes) + `"}}]}` + "\n\n"
	after := "data: " + chatChunk(`{"content":"ok"}`, "null", "null") + "\n\ndata: [DONE]\n\n"
	want := streamResult{Text: "ok", TextBytes: 2, Done: true}
	for _, chunk := range []int{len(long) + len(after), 64 << 10} {
		s := NewStreamParser(0)
		in := long + after
		for len(in) > 0 {
			n := min(chunk, len(in))
			s.Write([]byte(in[:n]))
			in = in[n:]
		}
		if got := resultOf(s); got != want {
			t.Errorf("chunk %d: got %+v, want %+v", chunk, got, want)
		}
		if cap(s.line) > keepBufferCap || cap(s.data) > keepBufferCap {
			t.Errorf("chunk %d: buffers kept after a long event: line %d, data %d", chunk, cap(s.line), cap(s.data))
		}
	}
}

func TestStreamParserZeroValue(t *testing.T) {
	var s StreamParser
	s.Write([]byte(chatStream("\n", true, "x")))
	if s.Text() != "x" || !s.Done() {
		t.Errorf("zero value: text %q, done %v", s.Text(), s.Done())
	}
	if s.textLimit() != DefaultMaxText {
		t.Errorf("zero value limit %d", s.textLimit())
	}
}
