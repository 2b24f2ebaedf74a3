package usage

import (
	"errors"
	"io"
	"maps"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

// Lines of batch output and error files as OpenAI writes them.
const (
	chatLine1      = `{"id":"batch_req_123","custom_id":"request-2","response":{"status_code":200,"request_id":"req_123","body":{"id":"chatcmpl-123","object":"chat.completion","created":1711652795,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":22,"completion_tokens":2,"total_tokens":24,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_123"}},"error":null}`
	chatLine2      = `{"id":"batch_req_456","custom_id":"request-1","response":{"status_code":200,"request_id":"req_789","body":{"id":"chatcmpl-789","object":"chat.completion","created":1711652789,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":2048,"completion_tokens":9,"total_tokens":2057,"prompt_tokens_details":{"cached_tokens":1024}},"system_fingerprint":"fp_3ba"}},"error":null}`
	embeddingsLine = `{"id":"batch_req_e1","custom_id":"emb-1","response":{"status_code":200,"request_id":"req_e1","body":{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}},"error":null}`
	responsesLine  = `{"id":"batch_req_r1","custom_id":"resp-1","response":{"status_code":200,"request_id":"req_r1","body":{"id":"resp_1","object":"response","created_at":1741476542,"status":"completed","model":"o4-mini-2025-04-16","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}},"error":null}`
	badRequestLine = `{"id":"batch_req_x","custom_id":"request-3","response":{"status_code":400,"request_id":"req_x","body":{"error":{"message":"Invalid 'messages'","type":"invalid_request_error","param":"messages","code":null}}},"error":null}`
	expiredLine    = `{"id":"batch_req_y","custom_id":"request-4","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}`
	moderationLine = `{"id":"batch_req_m","custom_id":"mod-1","response":{"status_code":200,"request_id":"req_m","body":{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":false}]}},"error":null}`
)

func TestReadBatchOutput(t *testing.T) {
	mini := Usage{PromptTokens: 22 + 2048, CompletionTokens: 2 + 9, CachedTokens: 1024, TotalTokens: 24 + 2057}
	for _, tc := range []struct {
		name      string
		file      string
		maxLine   int
		want      map[string]Usage
		wantLine  int // the BatchOutputError's line, when an error is expected
		wantInErr string
	}{
		{name: "chat completions", file: chatLine1 + "\n" + chatLine2 + "\n",
			want: map[string]Usage{"gpt-4o-mini-2024-07-18": mini}},
		{name: "every endpoint, errors and a CRLF", file: chatLine1 + "\r\n" + embeddingsLine + "\n" + responsesLine + "\n" + badRequestLine + "\n" +
			expiredLine + "\n" + moderationLine + "\n" + chatLine2,
			want: map[string]Usage{
				"gpt-4o-mini-2024-07-18": mini,
				"text-embedding-3-small": {PromptTokens: 8, TotalTokens: 8},
				"o4-mini-2025-04-16":     {PromptTokens: 36, CompletionTokens: 87, ReasoningTokens: 64, TotalTokens: 123},
			}},
		{name: "images", file: `{"custom_id":"img-1","response":{"status_code":200,"body":{"created":1,"model":"gpt-image-1","data":[{"b64_json":"x"}],"usage":{"input_tokens":50,"input_tokens_details":{"text_tokens":20,"image_tokens":30},"output_tokens":272,"total_tokens":322}}},"error":null}`,
			want: map[string]Usage{"gpt-image-1": {PromptTokens: 50, ImageTokens: 30, CompletionTokens: 272, TotalTokens: 322}}},
		{name: "blank lines", file: "\n\n" + chatLine1 + "\n \t\r\n\n", want: map[string]Usage{"gpt-4o-mini-2024-07-18": {PromptTokens: 22, CompletionTokens: 2, TotalTokens: 24}}},
		{name: "empty file", file: "", want: map[string]Usage{}},
		{name: "only failures", file: badRequestLine + "\n" + expiredLine + "\n", want: map[string]Usage{}},
		{name: "error beats a 200", file: `{"response":{"status_code":200,"body":{"model":"m","usage":{"prompt_tokens":5}}},"error":{"code":"x"}}`, want: map[string]Usage{}},
		{name: "2xx counts", file: `{"response":{"status_code":299,"body":{"model":"m","usage":{"prompt_tokens":5}}}}`,
			want: map[string]Usage{"m": {PromptTokens: 5, TotalTokens: 5}}},
		{name: "300 does not", file: `{"response":{"status_code":300,"body":{"model":"m","usage":{"prompt_tokens":5}}}}`, want: map[string]Usage{}},
		{name: "status not an integer", file: `{"response":{"status_code":"200","body":{"model":"m","usage":{"prompt_tokens":5}}}}` + "\n" +
			`{"response":{"status_code":200.0,"body":{"model":"m","usage":{"prompt_tokens":5}}}}` + "\n" +
			`{"response":{"body":{"model":"m","usage":{"prompt_tokens":5}}}}`, want: map[string]Usage{}},
		{name: "no model", file: `{"response":{"status_code":200,"body":{"usage":{"prompt_tokens":5}}}}` + "\n" +
			`{"response":{"status_code":200,"body":{"model":7,"usage":{"prompt_tokens":1}}}}`,
			want: map[string]Usage{"": {PromptTokens: 6, TotalTokens: 6}}},
		{name: "escaped model, last keys win", file: `{"response":{"status_code":500,"body":{"model":"x","usage":{"prompt_tokens":9}},"status_code":200,"body":{"model":"gpt-4o\u002dmini","usage":{"prompt_tokens":5}}},"error":{},"error":null}`,
			want: map[string]Usage{"gpt-4o-mini": {PromptTokens: 5, TotalTokens: 5}}},
		{name: "saturates", file: `{"response":{"status_code":200,"body":{"model":"m","usage":{"prompt_tokens":9223372036854775807}}}}` + "\n" +
			`{"response":{"status_code":200,"body":{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":1}}}}`,
			want: map[string]Usage{"m": {PromptTokens: math.MaxInt64, CompletionTokens: 1, TotalTokens: math.MaxInt64}}},
		{name: "line at the limit", file: `{"a":1}` + "\r\n" + `{"b":2}`, maxLine: 7, want: map[string]Usage{}},

		{name: "line over the limit", file: chatLine1 + "\n" + `{"a":12}` + "\n" + chatLine1 + " ", maxLine: len(chatLine1),
			wantLine: 3, wantInErr: "batch output line 3 is longer than"},
		{name: "last line over the limit", file: `{"a":1}` + "\n" + `{"a":12}`, maxLine: 7, wantLine: 2, wantInErr: "longer than 7 bytes"},
		{name: "long line early", file: strings.Repeat(" ", 200<<10), maxLine: 1000, wantLine: 1, wantInErr: "longer than 1000 bytes"},
		{name: "not JSON", file: chatLine1 + "\n" + `{"response":` + "\n", wantLine: 2, wantInErr: "line 2 is not valid JSON"},
		{name: "not an object", file: "[]\n", wantLine: 1, wantInErr: "is not a JSON object"},
		{name: "a lone CR is not a line end", file: chatLine1 + "\r" + chatLine2, wantLine: 1, wantInErr: "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadBatchOutput(strings.NewReader(tc.file), tc.maxLine)
			if tc.wantLine != 0 {
				var be *BatchOutputError
				if !errors.As(err, &be) || be.Line != tc.wantLine || !strings.Contains(err.Error(), tc.wantInErr) {
					t.Fatalf("ReadBatchOutput error = %v, want line %d with %q", err, tc.wantLine, tc.wantInErr)
				}
				if got != nil {
					t.Errorf("ReadBatchOutput returned sums with an error: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadBatchOutput: %v", err)
			}
			if got == nil || !maps.Equal(got, tc.want) {
				t.Errorf("ReadBatchOutput = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadBatchOutputReader(t *testing.T) {
	file := strings.Repeat(chatLine2+"\n", 1000)
	// One byte at a time, and a long file past the reader's buffer.
	got, err := ReadBatchOutput(iotest.OneByteReader(strings.NewReader(file)), 0)
	want := Usage{PromptTokens: 2048000, CompletionTokens: 9000, CachedTokens: 1024000, TotalTokens: 2057000}
	if err != nil || len(got) != 1 || got["gpt-4o-mini-2024-07-18"] != want {
		t.Errorf("ReadBatchOutput = %v, %v; want %+v", got, err, want)
	}
	// A line longer than the reader's buffer but within the limit.
	long := `{"pad":"` + strings.Repeat("x", 200<<10) + `",` + chatLine1[1:]
	if got, err := ReadBatchOutput(strings.NewReader(long), 0); err != nil || got["gpt-4o-mini-2024-07-18"].TotalTokens != 24 {
		t.Errorf("ReadBatchOutput(long line) = %v, %v", got, err)
	}
	// A read error is wrapped, not a line error.
	boom := errors.New("boom")
	_, err = ReadBatchOutput(io.MultiReader(strings.NewReader(chatLine1+"\n"), iotest.ErrReader(boom)), 0)
	var be *BatchOutputError
	if !errors.Is(err, boom) || errors.As(err, &be) {
		t.Errorf("ReadBatchOutput error = %v, want the read error", err)
	}
}
