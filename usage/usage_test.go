package usage

import "testing"

func TestParseUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		want   Usage
		wantOK bool
	}{
		{"chat completion",
			`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
			  "usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
			    "prompt_tokens_details":{"cached_tokens":8,"audio_tokens":0},
			    "completion_tokens_details":{"reasoning_tokens":4,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`,
			Usage{PromptTokens: 19, CompletionTokens: 10, CachedTokens: 8, ReasoningTokens: 4, TotalTokens: 29}, true},
		{"responses API",
			`{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"usage"}]}],
			  "usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":12},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}`,
			Usage{PromptTokens: 36, CompletionTokens: 87, CachedTokens: 12, ReasoningTokens: 64, TotalTokens: 123}, true},
		{"embeddings",
			`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`,
			Usage{PromptTokens: 8, TotalTokens: 8}, true},
		{"response.completed event",
			`{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}}`,
			Usage{PromptTokens: 5, CompletionTokens: 7, TotalTokens: 12}, true},
		{"total computed when missing", `{"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
			Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, true},
		{"null details", `{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":null}}`,
			Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, true},
		{"usage before choices", `{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2},"choices":[]}`,
			Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}, true},
		{"last usage wins", `{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}`,
			Usage{PromptTokens: 2, TotalTokens: 2}, true},
		{"top level preferred", `{"response":{"usage":{"input_tokens":9}},"usage":{"prompt_tokens":2}}`,
			Usage{PromptTokens: 2, TotalTokens: 2}, true},
		{"escaped key", `{"\u0075sage":{"prompt_tokens":2}}`, Usage{PromptTokens: 2, TotalTokens: 2}, true},

		{"no usage", `{"id":"x","choices":[]}`, Usage{}, false},
		{"null usage", `{"usage":null}`, Usage{}, false},
		{"empty usage", `{"usage":{}}`, Usage{}, false},
		{"error body", `{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}`, Usage{}, false},
		{"string count", `{"usage":{"prompt_tokens":"19"}}`, Usage{}, false},
		{"fractional count", `{"usage":{"prompt_tokens":1.5}}`, Usage{}, false},
		{"negative count", `{"usage":{"prompt_tokens":-1}}`, Usage{}, false},
		{"bad details", `{"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":"x"}}}`, Usage{}, false},
		{"details not an object", `{"usage":{"prompt_tokens":1,"prompt_tokens_details":3}}`, Usage{}, false},
		{"invalid JSON", `{"usage":{"prompt_tokens":1}`, Usage{}, false},
		{"case-sensitive", `{"Usage":{"prompt_tokens":1}}`, Usage{}, false},
		{"not an object", `[{"usage":{"prompt_tokens":1}}]`, Usage{}, false},
		{"empty", ``, Usage{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseUsage([]byte(tc.body))
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("ParseUsage = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
