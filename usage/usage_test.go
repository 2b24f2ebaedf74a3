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
		{"whisper-1 transcription",
			`{"text":"Imagine the wildest idea that you've ever had, and you're curious about how it might scale to something that's a 100, a 1,000 times bigger.","usage":{"type":"duration","seconds":9}}`,
			Usage{Seconds: 9}, true},
		{"fractional seconds", `{"text":"x","usage":{"type":"duration","seconds":42.75}}`, Usage{Seconds: 42.75}, true},
		{"whisper-1 verbose_json",
			`{"task":"transcribe","language":"english","duration":8.470000267028809,"text":"The beach was a popular spot.","segments":[{"id":0,"seek":0,"start":0.0,"end":3.319999933242798,"text":" The beach was a popular spot.","tokens":[50364,440],"temperature":0.0,"avg_logprob":-0.28,"compression_ratio":1.2,"no_speech_prob":0.009}],"usage":{"type":"duration","seconds":9}}`,
			Usage{Seconds: 9}, true},
		{"translation verbose_json: the duration", `{"task":"translate","language":"english","duration":8.47,"text":"Hello, my name is Wolfgang."}`,
			Usage{Seconds: 8.47}, true},
		{"usage preferred to duration", `{"duration":8.47,"usage":{"type":"duration","seconds":9}}`, Usage{Seconds: 9}, true},
		{"gpt-4o-transcribe",
			`{"text":"Imagine the wildest idea that you've ever had.","logprobs":[{"token":"Imagine","logprob":-0.0002,"bytes":[73]}],"usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":45,"total_tokens":59}}`,
			Usage{PromptTokens: 14, CompletionTokens: 45, TotalTokens: 59}, true},
		{"gpt-image-1 edit",
			`{"created":1713833628,"background":"transparent","data":[{"b64_json":"iVBORw0KGgo="}],"output_format":"png","quality":"high","size":"1024x1024",
			  "usage":{"total_tokens":5260,"input_tokens":1100,"output_tokens":4160,"input_tokens_details":{"text_tokens":50,"image_tokens":1050}}}`,
			Usage{PromptTokens: 1100, CompletionTokens: 4160, TotalTokens: 5260, ImageTokens: 1050}, true},
		{"gpt-image-1 stream completed event",
			`{"type":"image_generation.completed","b64_json":"x","created_at":1,"size":"1024x1024","quality":"low","background":"opaque","output_format":"png","usage":{"total_tokens":322,"input_tokens":50,"output_tokens":272,"input_tokens_details":{"text_tokens":50,"image_tokens":0}}}`,
			Usage{PromptTokens: 50, CompletionTokens: 272, TotalTokens: 322}, true},
		{"gpt-4o-mini-tts stream done event", `{"type":"speech.audio.done","usage":{"input_tokens":14,"output_tokens":101,"total_tokens":115}}`,
			Usage{PromptTokens: 14, CompletionTokens: 101, TotalTokens: 115}, true},

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
		{"dall-e response", `{"created":1589478378,"data":[{"url":"https://example.com/a.png","revised_prompt":"x"}]}`, Usage{}, false},
		{"translation json", `{"text":"Hello, my name is Wolfgang."}`, Usage{}, false},
		{"negative seconds", `{"usage":{"type":"duration","seconds":-1}}`, Usage{}, false},
		{"string seconds", `{"usage":{"type":"duration","seconds":"9"}}`, Usage{}, false},
		{"seconds out of range", `{"usage":{"type":"duration","seconds":1e999}}`, Usage{}, false},
		{"bad image tokens", `{"usage":{"input_tokens":1,"input_tokens_details":{"image_tokens":-1}}}`, Usage{}, false},
		{"string duration", `{"duration":"8.47","text":"x"}`, Usage{}, false},
		{"negative duration", `{"duration":-1}`, Usage{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseUsage([]byte(tc.body))
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("ParseUsage = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestImageCount(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		want   int64
		wantOK bool
	}{
		{"dall-e-3 url", `{"created":1589478378,"data":[{"url":"https://example.com/a.png","revised_prompt":"A cute otter"}]}`, 1, true},
		{"dall-e-2 b64", `{"created":1,"data":[{"b64_json":"iVBO"},{"b64_json":"iVBO"},{"b64_json":"iVBO"}]}`, 3, true},
		{"gpt-image-1 with usage", `{"created":1,"data":[{"b64_json":"x"},{"b64_json":"y"}],"usage":{"input_tokens":50,"output_tokens":544,"total_tokens":594}}`, 2, true},
		{"empty data", `{"created":1,"data":[]}`, 0, true},
		{"last data wins", `{"data":[1,2,3],"data":[{}]}`, 1, true},
		{"nested arrays count once", `{"data":[[1,2],[3]]}`, 2, true},
		{"no data", `{"created":1}`, 0, false},
		{"null data", `{"data":null}`, 0, false},
		{"data not an array", `{"data":{"url":"x"}}`, 0, false},
		{"last data not an array", `{"data":[1],"data":"x"}`, 0, false},
		{"error body", `{"error":{"message":"Your request was rejected","type":"image_generation_user_error","param":null,"code":"content_policy_violation"}}`, 0, false},
		{"invalid JSON", `{"data":[{}]`, 0, false},
		{"not an object", `[{"data":[]}]`, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := ImageCount([]byte(tc.body)); got != tc.want || ok != tc.wantOK {
				t.Errorf("ImageCount = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
