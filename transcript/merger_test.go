package transcript

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// data is one "data:" event; named, one with an "event:" line too, as the
// Responses API sends them.
func data(payload string) string        { return "data: " + payload + "\n\n" }
func named(name, payload string) string { return "event: " + name + "\n" + data(payload) }

// chunkOf is a chat.completion.chunk with the fields every chunk repeats.
func chunkOf(choices string, usage string) string {
	return data(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1741290958,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_abc","choices":[` + choices + `],"usage":` + usage + `}`)
}

func delta(index int, d, finish string) string {
	return `{"index":` + strconv.Itoa(index) + `,"delta":` + d + `,"logprobs":null,"finish_reason":` + finish + `}`
}

const usage = `{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`

const head = `{"id":"chatcmpl-1","object":"chat.completion","created":1741290958,"model":"gpt-4o-2024-08-06","choices":[`
const tail = `],"usage":` + usage + `,"service_tier":"default","system_fingerprint":"fp_abc"}`

// A Responses API stream's events, as OpenAI sends them.
const (
	respCreated    = `{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":"Be brief.","model":"gpt-4o-2024-08-06","output":[],"parallel_tool_calls":true,"tools":[],"usage":null}}`
	respInProgress = `{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-4o-2024-08-06","output":[]}}`
	respUsage      = `{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}`
)

var chatStreams = []struct {
	name    string
	kind    Kind
	stream  string
	want    string
	summary Summary
}{
	{
		"content with include_usage",
		ChatCompletions,
		chunkOf(delta(0, `{"role":"assistant","content":"","refusal":null}`, "null"), "null") +
			chunkOf(delta(0, `{"content":"Hello"}`, "null"), "null") +
			chunkOf(delta(0, `{"content":" wörld ✓ \"q\"\n\u2028"}`, "null"), "null") +
			chunkOf(delta(0, `{}`, `"stop"`), "null") +
			chunkOf("", usage) +
			data("[DONE]"),
		head + `{"index":0,"message":{"role":"assistant","content":"Hello wörld ✓ \"q\"\n\u2028"},"logprobs":null,"finish_reason":"stop"}` + tail,
		Summary{Model: "gpt-4o-2024-08-06", FinishReasons: []string{"stop"}},
	},
	{
		"refusal",
		ChatCompletions,
		chunkOf(delta(0, `{"role":"assistant","content":null,"refusal":""}`, "null"), "null") +
			chunkOf(delta(0, `{"refusal":"I'm sorry"}`, "null"), "null") +
			chunkOf(delta(0, `{"refusal":", I can't help with that."}`, "null"), "null") +
			chunkOf(delta(0, `{}`, `"stop"`), usage) +
			data("[DONE]"),
		head + `{"index":0,"message":{"role":"assistant","content":null,"refusal":"I'm sorry, I can't help with that."},"logprobs":null,"finish_reason":"stop"}` + tail,
		Summary{Model: "gpt-4o-2024-08-06", FinishReasons: []string{"stop"}},
	},
	{
		"two parallel tool calls, arguments interleaved",
		ChatCompletions,
		chunkOf(delta(0, `{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null}`, "null"), "null") +
			chunkOf(delta(0, `{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}`, "null"), "null") +
			chunkOf(delta(0, `{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]}`, "null"), "null") +
			chunkOf(delta(0, `{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":"}}]}`, "null"), "null") +
			chunkOf(delta(0, `{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Paris\"}"}}]}`, "null"), "null") +
			chunkOf(delta(0, `{"tool_calls":[{"index":1,"function":{"arguments":"\"CET\"}"}}]}`, "null"), "null") +
			chunkOf(delta(0, `{}`, `"tool_calls"`), "null") +
			chunkOf("", usage) +
			data("[DONE]"),
		head + `{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
			`{"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
			`{"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"CET\"}"}}` +
			`]},"logprobs":null,"finish_reason":"tool_calls"}` + tail,
		Summary{Model: "gpt-4o-2024-08-06", FinishReasons: []string{"tool_calls"}},
	},
	{
		"n=2, choices interleaved and out of order",
		ChatCompletions,
		chunkOf(delta(1, `{"role":"assistant","content":""}`, "null")+","+delta(0, `{"role":"assistant","content":""}`, "null"), "null") +
			chunkOf(delta(1, `{"content":"Bonjour"}`, "null"), "null") +
			chunkOf(delta(0, `{"content":"Hello"}`, "null"), "null") +
			chunkOf(delta(0, `{"content":" there"}`, "null"), "null") +
			chunkOf(delta(1, `{}`, `"length"`), "null") +
			chunkOf(delta(0, `{}`, `"stop"`), "null") +
			chunkOf("", usage) +
			data("[DONE]"),
		head + `{"index":0,"message":{"role":"assistant","content":"Hello there"},"logprobs":null,"finish_reason":"stop"},` +
			`{"index":1,"message":{"role":"assistant","content":"Bonjour"},"logprobs":null,"finish_reason":"length"}` + tail,
		Summary{Model: "gpt-4o-2024-08-06", FinishReasons: []string{"stop", "length"}},
	},
	{
		"deprecated function_call",
		ChatCompletions,
		chunkOf(delta(0, `{"role":"assistant","content":null,"function_call":{"name":"lookup","arguments":""}}`, "null"), "null") +
			chunkOf(delta(0, `{"function_call":{"arguments":"{\"q\":"}}`, "null"), "null") +
			chunkOf(delta(0, `{"function_call":{"arguments":"1}"}}`, "null"), "null") +
			chunkOf(delta(0, `{}`, `"function_call"`), usage) +
			data("[DONE]"),
		head + `{"index":0,"message":{"role":"assistant","content":null,"function_call":{"name":"lookup","arguments":"{\"q\":1}"}},"logprobs":null,"finish_reason":"function_call"}` + tail,
		Summary{Model: "gpt-4o-2024-08-06", FinishReasons: []string{"function_call"}},
	},
	{
		"garbage, comments, other fields, CRLF and a mid-stream error",
		ChatCompletions,
		": keep-alive\r\n\r\n" +
			"garbage line\n\n" +
			"data: {not json\n\n" +
			"data: [1,2]\n\n" +
			"id: 7\nretry: 100\nevent: ignored\n" +
			strings.ReplaceAll(chunkOf(delta(0, `{"role":"assistant","content":"A"}`, "null"), "null"), "\n", "\r\n") +
			data(`{"choices":"not a list","model":7}`) +
			"data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\n" + // an event's data lines join with LF
			"data: \"delta\":{\"content\":\"B\"}}]}\n\n" +
			chunkOf(delta(0, `{"content":"C"}`, `"stop"`), usage) +
			data(`{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}`) +
			data("[DONE]") +
			chunkOf(delta(0, `{"content":"after the end"}`, "null"), "null"),
		head + `{"index":0,"message":{"role":"assistant","content":"ABC"},"logprobs":null,"finish_reason":"stop"}` +
			`],"usage":` + usage + `,"service_tier":"default","system_fingerprint":"fp_abc","error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}`,
		Summary{Model: "gpt-4o-2024-08-06", FinishReasons: []string{"stop"}},
	},
	{
		"legacy completions",
		Completions,
		data(`{"id":"cmpl-1","object":"text_completion","created":1690759702,"choices":[{"text":"Once","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct","system_fingerprint":null}`) +
			data(`{"id":"cmpl-1","object":"text_completion","created":1690759702,"choices":[{"text":" upon","index":0,"logprobs":null,"finish_reason":"length"}],"model":"gpt-3.5-turbo-instruct"}`) +
			data(`{"id":"cmpl-1","object":"text_completion","created":1690759702,"choices":[],"model":"gpt-3.5-turbo-instruct","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`) +
			data("[DONE]"),
		`{"id":"cmpl-1","object":"text_completion","created":1690759702,"model":"gpt-3.5-turbo-instruct","choices":[{"text":"Once upon","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
		Summary{Model: "gpt-3.5-turbo-instruct", FinishReasons: []string{"length"}},
	},
}

var (
	textMessage = `{"id":"msg_1","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hi there, \"friend\"."}],"role":"assistant"}`
	respText    = named("response.created", respCreated) +
		named("response.in_progress", respInProgress) +
		named("response.output_item.added", `{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","content":[],"role":"assistant"}}`) +
		named("response.content_part.added", `{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}}`) +
		named("response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[],"obfuscation":"x1"}`) +
		named("response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" there, \"fri","logprobs":[]}`) +
		named("response.output_text.delta", `{"type":"response.output_text.delta","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"end\".","logprobs":[]}`) +
		named("response.output_text.done", `{"type":"response.output_text.done","sequence_number":7,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hi there, \"friend\".","logprobs":[]}`) +
		named("response.content_part.done", `{"type":"response.content_part.done","sequence_number":8,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"Hi there, \"friend\"."}}`) +
		named("response.output_item.done", `{"type":"response.output_item.done","sequence_number":9,"output_index":0,"item":`+textMessage+`}`)
	respTextCompleted = `{"id":"resp_1","object":"response","created_at":1741290958,"status":"completed","error":null,"incomplete_details":null,"instructions":"Be brief.","model":"gpt-4o-2024-08-06","output":[` + textMessage + `],"parallel_tool_calls":true,"tools":[],"usage":` + respUsage + `}`
	respTextRebuilt   = `{"id":"resp_1","object":"response","created_at":1741290958,"status":"completed","model":"gpt-4o-2024-08-06","output":[` +
		`{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there, \"friend\".","annotations":[]}]}` +
		`],"usage":` + respUsage + `}`

	reasoning = `{"id":"rs_1","type":"reasoning","summary":[]}`
	call      = `{"id":"fc_1","type":"function_call","status":"completed","arguments":"{\"city\":\"Paris\"}","call_id":"call_1","name":"get_weather"}`
	respCall  = named("response.created", respCreated) +
		named("response.output_item.added", `{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"rs_1","type":"reasoning","summary":[]}}`) +
		named("response.output_item.done", `{"type":"response.output_item.done","sequence_number":2,"output_index":0,"item":`+reasoning+`}`) +
		named("response.output_item.added", `{"type":"response.output_item.added","sequence_number":3,"output_index":1,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_1","name":"get_weather"}}`) +
		named("response.function_call_arguments.delta", `{"type":"response.function_call_arguments.delta","sequence_number":4,"item_id":"fc_1","output_index":1,"delta":"{\"ci","obfuscation":"ab"}`) +
		named("response.function_call_arguments.delta", `{"type":"response.function_call_arguments.delta","sequence_number":5,"item_id":"fc_1","output_index":1,"delta":"ty\":\"Paris\"}"}`) +
		named("response.function_call_arguments.done", `{"type":"response.function_call_arguments.done","sequence_number":6,"item_id":"fc_1","output_index":1,"arguments":"{\"city\":\"Paris\"}"}`) +
		named("response.output_item.done", `{"type":"response.output_item.done","sequence_number":7,"output_index":1,"item":`+call+`}`)
	respCallCompleted = `{"id":"resp_1","object":"response","created_at":1741290958,"status":"completed","error":null,"incomplete_details":null,"model":"gpt-4o-2024-08-06","output":[` + reasoning + `,` + call + `],"tools":[{"type":"function","name":"get_weather","parameters":{}}],"usage":` + respUsage + `}`
	respCallRebuilt   = `{"id":"resp_1","object":"response","created_at":1741290958,"status":"completed","model":"gpt-4o-2024-08-06","output":[` +
		reasoning + `,{"id":"fc_1","type":"function_call","status":"completed","arguments":"{\"city\":\"Paris\"}","call_id":"call_1","name":"get_weather"}` +
		`],"usage":` + respUsage + `}`
)

var respStreams = []struct {
	name   string
	stream string
	max    int // the cap; 0 means 1 MiB
	want   string
	trunc  bool
}{
	{"text, completed response fits", respText + named("response.completed", `{"type":"response.completed","sequence_number":10,"response":`+respTextCompleted+`}`), 0, respTextCompleted, false},
	{"text, rebuilt", respText + named("response.completed", `{"type":"response.completed","sequence_number":10,"response":`+respTextCompleted+`}`), len(respTextRebuilt), respTextRebuilt, false},
	{"function call, completed response fits", respCall + named("response.completed", `{"type":"response.completed","sequence_number":8,"response":`+respCallCompleted+`}`), 0, respCallCompleted, false},
	{"function call, rebuilt", respCall + named("response.completed", `{"type":"response.completed","sequence_number":8,"response":`+respCallCompleted+`}`), len(respCallRebuilt), respCallRebuilt, false},
	{
		"refusal, incomplete, without event names",
		data(respCreated) +
			data(`{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"msg_2","type":"message","status":"in_progress","content":[],"role":"assistant"}}`) +
			data(`{"type":"response.refusal.delta","sequence_number":2,"item_id":"msg_2","output_index":0,"content_index":0,"delta":"No, "}`) +
			data(`{"type":"response.refusal.delta","sequence_number":3,"item_id":"msg_2","output_index":0,"content_index":0,"delta":"sorry."}`) +
			data(`{"type":"response.incomplete","sequence_number":4,"response":{"id":"resp_1","object":"response","created_at":1741290958,"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"model":"gpt-4o-2024-08-06","output":[{"id":"msg_2","type":"message","status":"incomplete","content":[{"type":"refusal","refusal":"No, sorry."}],"role":"assistant"}],"instructions":"`+strings.Repeat("long instructions ", 40)+`","usage":`+respUsage+`}}`),
		500,
		`{"id":"resp_1","object":"response","created_at":1741290958,"status":"incomplete","model":"gpt-4o-2024-08-06","output":[` +
			`{"id":"msg_2","type":"message","status":"in_progress","role":"assistant","content":[{"type":"refusal","refusal":"No, sorry."}]}` +
			`],"usage":` + respUsage + `,"incomplete_details":{"reason":"max_output_tokens"}}`,
		false,
	},
	{
		"cut off before the end, deltas without their item",
		data(respCreated) +
			data(`{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_3","output_index":0,"content_index":1,"delta":"B"}`) +
			data(`{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_3","output_index":0,"content_index":0,"delta":"A"}`) +
			data(`{"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":5}`),
		0,
		`{"id":"resp_1","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-4o-2024-08-06","output":[` +
			`{"id":"msg_3","type":"message","status":"","role":"assistant","content":[{"type":"output_text","text":"A","annotations":[]},{"type":"output_text","text":"B","annotations":[]}]}` +
			`],"error":{"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":5}}`,
		false,
	},
}

// result writes stream into a new Merger in the chunks split gives.
func result(k Kind, max int, stream string, split func(string) []string) ([]byte, bool, Summary) {
	m := NewMerger(k, max)
	for _, p := range split(stream) {
		m.Write([]byte(p))
	}
	doc, truncated := m.Result()
	return doc, truncated, m.Summary()
}

func whole(s string) []string { return []string{s} }

func TestMergeChat(t *testing.T) {
	for _, tc := range chatStreams {
		t.Run(tc.name, func(t *testing.T) {
			doc, truncated, summary := result(tc.kind, 1<<20, tc.stream, whole)
			if string(doc) != tc.want || truncated {
				t.Errorf("Result() = %s, %v\nwant %s", doc, truncated, tc.want)
			}
			if !json.Valid(doc) {
				t.Errorf("not JSON: %s", doc)
			}
			if !equalSummary(summary, tc.summary) {
				t.Errorf("Summary() = %+v, want %+v", summary, tc.summary)
			}
			// The merged stream summarises as the body would.
			if s := Summarize(tc.kind, doc); !equalSummary(s, tc.summary) {
				t.Errorf("Summarize(result) = %+v, want %+v", s, tc.summary)
			}
		})
	}
}

func TestMergeResponses(t *testing.T) {
	for _, tc := range respStreams {
		t.Run(tc.name, func(t *testing.T) {
			doc, truncated, _ := result(Responses, cmp.Or(tc.max, 1<<20), tc.stream, whole)
			if string(doc) != tc.want || truncated != tc.trunc {
				t.Errorf("Result() = %s, %v\nwant %s, %v", doc, truncated, tc.want, tc.trunc)
			}
			if !json.Valid(doc) {
				t.Errorf("not JSON: %s", doc)
			}
		})
	}
	// The status of the terminal event, and the model, summarise the stream.
	for _, tc := range []struct {
		stream string
		want   Summary
	}{
		{respStreams[0].stream, Summary{"gpt-4o-2024-08-06", []string{"completed"}}},
		{respStreams[4].stream, Summary{"gpt-4o-2024-08-06", []string{"incomplete"}}},
		{respStreams[5].stream, Summary{"gpt-4o-2024-08-06", nil}},
		{data(`{"type":"response.failed","response":{"status":"failed","model":"gpt-x","error":{"code":"server_error","message":"m"}}}`), Summary{"gpt-x", []string{"failed"}}},
	} {
		if _, _, s := result(Responses, 1<<20, tc.stream, whole); !equalSummary(s, tc.want) {
			t.Errorf("Summary() = %+v, want %+v", s, tc.want)
		}
	}
}

// Any split of a stream merges to the same result: byte by byte, at every
// single point, in random pieces, and with CRLF or CR line ends.
func TestMergeSplits(t *testing.T) {
	type stream struct {
		name   string
		kind   Kind
		max    int
		stream string
	}
	var all []stream
	for _, tc := range chatStreams {
		all = append(all, stream{tc.name, tc.kind, 1 << 20, tc.stream})
	}
	for _, tc := range respStreams {
		all = append(all, stream{tc.name, Responses, cmp.Or(tc.max, 1<<20), tc.stream})
	}
	all = append(all, stream{"truncated", ChatCompletions, 150, chatStreams[0].stream})
	for i, tc := range all {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(i)))
			want, wantTrunc, wantSummary := result(tc.kind, tc.max, tc.stream, whole)
			check := func(how string, split func(string) []string) {
				t.Helper()
				got, trunc, summary := result(tc.kind, tc.max, tc.stream, split)
				if !bytes.Equal(got, want) || trunc != wantTrunc || !equalSummary(summary, wantSummary) {
					t.Fatalf("%s: %s, %v, %+v\nwant %s, %v, %+v", how, got, trunc, summary, want, wantTrunc, wantSummary)
				}
			}
			check("byte by byte", func(s string) []string { return strings.Split(s, "") })
			for i := range len(tc.stream) + 1 {
				check(fmt.Sprint("split at ", i), func(s string) []string { return []string{s[:i], s[i:]} })
			}
			for range 20 {
				check("random pieces", func(s string) []string {
					var parts []string
					for len(s) > 0 {
						n := min(len(s), rng.IntN(40))
						parts, s = append(parts, s[:n]), s[n:]
					}
					return parts
				})
			}
			for _, eol := range []string{"\r\n", "\r"} {
				crlf := strings.ReplaceAll(tc.stream, "\n", eol)
				got, trunc, _ := result(tc.kind, tc.max, crlf, func(s string) []string { return strings.Split(s, "") })
				if !bytes.Equal(got, want) || trunc != wantTrunc {
					t.Fatalf("%q line ends, byte by byte: %s, %v\nwant %s", eol, got, trunc, want)
				}
			}
		})
	}
}

// Under any cap the result is JSON within cap+Overhead, its texts prefixes
// of the full ones, cut between runes; from the cap the full result needs
// (at most its length), it is the full result.
func TestMergeCaps(t *testing.T) {
	long := strings.Repeat("é\"\n\x01✓ ", 40)
	enc, _ := json.Marshal(long)
	for _, tc := range []struct {
		name   string
		kind   Kind
		stream string
	}{
		{"chat", ChatCompletions, chunkOf(delta(0, `{"role":"assistant","content":`+string(enc)+`}`, "null"), "null") +
			chunkOf(delta(1, `{"refusal":"no"}`, "null")+","+delta(2, `{"content":"x"}`, `"length"`), "null") +
			chunkOf(delta(0, `{"tool_calls":[{"index":0,"id":"call_a","function":{"name":"f","arguments":`+string(enc)+`}},{"index":1,"id":"call_b","function":{"name":"g","arguments":"{}"}}]}`, `"stop"`), usage) +
			data("[DONE]")},
		{"tool calls", ChatCompletions, chatStreams[2].stream},
		{"completions", Completions, chatStreams[6].stream},
		{"responses text", Responses, respText},
		{"responses call", Responses, respCall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full, _, fullSummary := result(tc.kind, 1<<20, tc.stream, whole)
			var fullDoc completion
			if err := json.Unmarshal(full, &fullDoc); err != nil {
				t.Fatal(err)
			}
			fitsAt := -1
			for max := 0; max <= len(full)+50; max++ {
				doc, truncated, summary := result(tc.kind, max, tc.stream, whole)
				var c completion
				if err := json.Unmarshal(doc, &c); err != nil {
					t.Fatalf("cap %d: %v: %s", max, err, doc)
				}
				if len(doc) > max+Overhead {
					t.Fatalf("cap %d: %d bytes", max, len(doc))
				}
				if !equalSummary(summary, fullSummary) {
					t.Fatalf("cap %d: summary %+v depends on the cap", max, summary)
				}
				for i, ch := range c.Choices {
					if full := fullDoc.Choices[i]; !strings.HasPrefix(full.Text, ch.Text) ||
						!strings.HasPrefix(full.Message.Content, ch.Message.Content) || !strings.HasPrefix(full.Message.Refusal, ch.Message.Refusal) {
						t.Fatalf("cap %d: choice %d is not a prefix: %+v", max, i, ch)
					}
				}
				if !truncated && fitsAt < 0 {
					fitsAt = max
				}
				if fitsAt >= 0 && (truncated || !bytes.Equal(doc, full)) {
					t.Fatalf("cap %d: %s, %v after the full result fitted at %d", max, doc, truncated, fitsAt)
				}
			}
			if fitsAt < 0 || fitsAt > len(full) {
				t.Errorf("the full result of %d bytes fits from a cap of %d", len(full), fitsAt)
			}
		})
	}
}

type completion struct {
	Choices []struct {
		Text    string
		Message struct {
			Content string
			Refusal string
		}
	}
}

// An event larger than the cap and its slack is dropped and marks the
// result truncated; the stream goes on. A dropped terminal event still
// gives the response's status, by its name or the type at its head.
func TestMergeLargeEvent(t *testing.T) {
	big := strings.Repeat("x", 70<<10)
	stream := chunkOf(delta(0, `{"content":"a"}`, "null"), "null") +
		chunkOf(delta(0, `{"content":"`+big+`"}`, "null"), "null") +
		chunkOf(delta(0, `{"content":"b"}`, `"stop"`), "null")
	for _, split := range []func(string) []string{whole, func(s string) []string { return strings.SplitAfter(s, "x") }} {
		doc, truncated, _ := result(ChatCompletions, 400, stream, split)
		want := head + `{"index":0,"message":{"role":"assistant","content":"ab"},"logprobs":null,"finish_reason":"stop"}],"service_tier":"default","system_fingerprint":"fp_abc"}`
		if string(doc) != want || !truncated {
			t.Errorf("Result() = %s, %v\nwant %s, true", doc, truncated, want)
		}
	}

	completed := `{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"` + big + `"}]}]}}`
	for name, stream := range map[string]string{
		"named":    data(respCreated) + named("response.completed", completed),
		"unnamed":  data(respCreated) + data(completed),
		"by lines": data(respCreated) + "data: " + strings.ReplaceAll(completed, "xx", "x\ndata: x") + "\n\n",
	} {
		m := NewMerger(Responses, 1000)
		for _, p := range strings.SplitAfter(stream, "x") {
			m.Write([]byte(p))
		}
		doc, truncated := m.Result()
		want := `{"id":"resp_1","object":"response","created_at":1741290958,"status":"completed","model":"gpt-4o-2024-08-06","output":[]}`
		if string(doc) != want || !truncated || !equalSummary(m.Summary(), Summary{"gpt-4o-2024-08-06", []string{"completed"}}) {
			t.Errorf("%s: Result() = %s, %v, %+v\nwant %s, true", name, doc, truncated, m.Summary(), want)
		}
	}
}

// A stream with no event of its kind has no result.
func TestMergeNothing(t *testing.T) {
	for _, stream := range []string{"", "data: [DONE]\n\n", ": ping\n\n", "data: {}", "data: nope\n\n", "data: [{}]\n\n"} {
		m := NewMerger(ChatCompletions, 100)
		m.Write([]byte(stream))
		if doc, truncated := m.Result(); doc != nil || truncated {
			t.Errorf("%q: Result() = %s, %v", stream, doc, truncated)
		}
	}
}

func TestKindOf(t *testing.T) {
	for path, want := range map[string]Kind{
		"/v1/chat/completions": ChatCompletions, "/v1/chat/completions?x=1": ChatCompletions, "/v1/chat/completions/": ChatCompletions,
		"/v1/completions": Completions, "/v1/responses": Responses,
		"/v1/responses/resp_1": 0, "/v1/embeddings": 0, "/v1/chat/completions/x": 0, "": 0,
	} {
		if k, ok := KindOf(path); k != want || ok != (want != 0) {
			t.Errorf("KindOf(%q) = %v, %v; want %v", path, k, ok, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		body string
		want Summary
	}{
		{ChatCompletions, `{"model":"gpt-4o","choices":[{"index":1,"finish_reason":"length"},{"index":0,"finish_reason":"stop"},{"index":2,"finish_reason":null}]}`, Summary{"gpt-4o", []string{"stop", "length"}}},
		{Completions, `{"model":"m","choices":[{"text":"x","index":0,"finish_reason":"length"}]}`, Summary{"m", []string{"length"}}},
		{Responses, respTextCompleted, Summary{"gpt-4o-2024-08-06", []string{"completed"}}},
		{Responses, `{"model":"m","status":"incomplete"}`, Summary{"m", []string{"incomplete"}}},
		{ChatCompletions, `{"model":5,"choices":[{"index":0,"finish_reason":"stop"}]}`, Summary{"", []string{"stop"}}},
		{ChatCompletions, `[1]`, Summary{}},
		{ChatCompletions, `{"model":"x"`, Summary{}},
		{ChatCompletions, ``, Summary{}},
		{Kind(99), `{"model":"x"}`, Summary{}},
	} {
		if got := Summarize(tc.kind, []byte(tc.body)); !equalSummary(got, tc.want) {
			t.Errorf("Summarize(%v, %.60s) = %+v, want %+v", tc.kind, tc.body, got, tc.want)
		}
	}
}

// The members a result writes besides what is charged fit in Overhead.
func TestOverhead(t *testing.T) {
	for _, skeleton := range []string{
		`{"id":"","object":"text_completion","created":` + strings.Repeat("9", maxNumberLen) + `,"model":"","choices":[],"usage":,"service_tier":"","system_fingerprint":"","error":}`,
		`{"id":"","object":"response","created_at":` + strings.Repeat("9", maxNumberLen) + `,"status":"","model":"","output":[],"usage":,"incomplete_details":,"error":}`,
	} {
		if len(skeleton) > Overhead {
			t.Errorf("%d bytes: %s", len(skeleton), skeleton)
		}
	}
}

// FuzzMerger checks, on any bytes, that the result is JSON within its
// bound, and the same however the bytes are split.
func FuzzMerger(f *testing.F) {
	for _, tc := range chatStreams {
		f.Add(tc.stream, uint16(1000), uint8(tc.kind), uint16(7))
	}
	for _, tc := range respStreams {
		f.Add(tc.stream, uint16(300), uint8(Responses), uint16(13))
	}
	f.Add("data: {\"choices\":[{\"index\":-9223372036854775808,\"delta\":{\"content\":\"\\ud800\"}}]}\n\n", uint16(50), uint8(ChatCompletions), uint16(1))
	f.Fuzz(func(t *testing.T, stream string, max uint16, kind uint8, step uint16) {
		k := Kind(kind%3 + 1)
		doc, truncated, summary := result(k, int(max), stream, whole)
		if doc != nil && (!json.Valid(doc) || len(doc) > int(max)+Overhead) {
			t.Fatalf("cap %d: %d bytes: %s", max, len(doc), doc)
		}
		n := int(step%64) + 1
		got, trunc, s := result(k, int(max), stream, func(s string) []string {
			var parts []string
			for len(s) > n {
				parts, s = append(parts, s[:n]), s[n:]
			}
			return append(parts, s)
		})
		if !bytes.Equal(got, doc) || trunc != truncated || !equalSummary(s, summary) {
			t.Fatalf("split by %d: %s\nwhole: %s", n, got, doc)
		}
	})
}

func equalSummary(a, b Summary) bool {
	return a.Model == b.Model && slices.Equal(a.FinishReasons, b.FinishReasons)
}
