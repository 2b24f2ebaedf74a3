package usage

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		want      Request
		wantField string // the RequestError's Field, when an error is expected
		wantErr   bool
	}{
		{name: "chat", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
			want: Request{Model: "gpt-4o", N: 1}},
		{name: "stream with usage", body: `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"max_tokens":100,"n":3}`,
			want: Request{Model: "gpt-4o-mini", Stream: true, IncludeUsage: true, MaxOutputTokens: 100, N: 3}},
		{name: "max_completion_tokens", body: `{"model":"o3","max_completion_tokens":4096}`,
			want: Request{Model: "o3", MaxOutputTokens: 4096, N: 1}},
		{name: "max_output_tokens", body: `{"model":"gpt-5","input":"x","max_output_tokens":512}`,
			want: Request{Model: "gpt-5", MaxOutputTokens: 512, N: 1, InputChars: 1}},
		{name: "largest cap wins", body: `{"max_tokens":10,"max_completion_tokens":30,"max_output_tokens":20}`,
			want: Request{MaxOutputTokens: 30, N: 1}},
		{name: "nulls are absent", body: `{"model":null,"stream":null,"stream_options":null,"max_tokens":null,"n":null}`,
			want: Request{N: 1}},
		{name: "include_usage null", body: `{"stream_options":{"include_usage":null,"other":[1,2]}}`,
			want: Request{N: 1}},
		{name: "unknown fields", body: `{"temperature":0.2,"tools":[{"type":"function"}],"metadata":{"model":"x"},"model":"gpt-4.1"}`,
			want: Request{Model: "gpt-4.1", N: 1}},
		{name: "case-sensitive keys", body: `{"Model":"x","STREAM":true,"model":"gpt-4o"}`,
			want: Request{Model: "gpt-4o", N: 1}},
		{name: "last key wins", body: `{"model":"a","model":"b","n":5,"n":2}`,
			want: Request{Model: "b", N: 2}},
		{name: "later value corrects a wrong type", body: `{"max_tokens":"10","max_tokens":10}`,
			want: Request{MaxOutputTokens: 10, N: 1}},
		{name: "user", body: `{"model":"gpt-4o","user":"u-1"}`,
			want: Request{Model: "gpt-4o", N: 1, User: "u-1"}},
		{name: "safety_identifier wins over user", body: `{"safety_identifier":"s-1","user":"u-1"}`,
			want: Request{N: 1, User: "s-1"}},
		{name: "user not a string is not reported", body: `{"user":{"id":1},"model":"m"}`,
			want: Request{Model: "m", N: 1}},
		{name: "escaped model", body: `{"model":"gpt-4o\u002dmini"}`,
			want: Request{Model: "gpt-4o-mini", N: 1}},
		{name: "n below 1", body: `{"n":0}`, want: Request{N: 1}},
		{name: "negative max", body: `{"max_tokens":-5}`, want: Request{N: 1}},
		{name: "white space", body: " \n{ \"model\" : \"gpt-4o\" , \"stream\" : false }\n",
			want: Request{Model: "gpt-4o", N: 1}},
		{name: "long model truncated", body: `{"model":"` + strings.Repeat("m", 1000) + `"}`,
			want: Request{Model: strings.Repeat("m", 256), N: 1}},

		{name: "dall-e-3 image", body: `{"model":"dall-e-3","prompt":"A cute baby sea otter","n":1,"size":"1024x1792","quality":"hd","style":"vivid","response_format":"url"}`,
			want: Request{Model: "dall-e-3", N: 1, Size: "1024x1792", Quality: "hd"}},
		{name: "dall-e-2 images", body: `{"model":"dall-e-2","prompt":"A cute baby sea otter","n":4,"size":"256x256"}`,
			want: Request{Model: "dall-e-2", N: 4, Size: "256x256"}},
		{name: "gpt-image-1 transparent background", body: `{"model":"gpt-image-1","prompt":"a logo","background":"transparent","quality":"high","size":"1536x1024","output_format":"png","moderation":"low"}`,
			want: Request{Model: "gpt-image-1", N: 1, Size: "1536x1024", Quality: "high"}},
		{name: "custom size", body: `{"model":"gpt-image-2","size":"1536x864","quality":"xhigh"}`,
			want: Request{Model: "gpt-image-2", N: 1, Size: "1536x864", Quality: "xhigh"}},
		{name: "escaped size", body: `{"size":"1024\u00781024"}`, want: Request{N: 1, Size: "1024x1024"}},
		{name: "speech", body: `{"model":"tts-1","input":"Hello, wörld! 😀","voice":"alloy","response_format":"mp3","speed":1.0}`,
			want: Request{Model: "tts-1", N: 1, InputChars: 15}},
		{name: "speech with escapes", body: `{"model":"gpt-4o-mini-tts","input":"a\u00e9\ud83d\ude00\n\"x\\","instructions":"Speak in a cheerful tone."}`,
			want: Request{Model: "gpt-4o-mini-tts", N: 1, InputChars: 7}},
		{name: "lone surrogates count one each", body: `{"input":"\ud800x\udc00\ud83d\u0041"}`, want: Request{N: 1, InputChars: 5}},
		{name: "empty input", body: `{"input":""}`, want: Request{N: 1}},
		{name: "input items count nothing", body: `{"model":"gpt-5","input":[{"role":"user","content":"hello"}]}`,
			want: Request{Model: "gpt-5", N: 1}},
		{name: "last input wins", body: `{"input":"hello","input":[1,2]}`, want: Request{N: 1}},
		{name: "embeddings token array", body: `{"model":"text-embedding-3-small","input":[[1,2,3]],"encoding_format":"float"}`,
			want: Request{Model: "text-embedding-3-small", N: 1}},
		{name: "background response", body: `{"model":"o3","input":"Write a long essay.","background":true,"reasoning":{"effort":"high"}}`,
			want: Request{Model: "o3", N: 1, InputChars: 19, Background: true}},
		{name: "background false and null", body: `{"background":true,"background":null}`, want: Request{N: 1}},
		{name: "batch create", body: `{"input_file_id":"file-abc123","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"customer_id":"user_123456789"}}`,
			want: Request{N: 1, InputFileID: "file-abc123", Endpoint: "/v1/chat/completions"}},
		{name: "nulls are absent too", body: `{"size":null,"quality":null,"input":null,"input_file_id":null,"endpoint":null}`,
			want: Request{N: 1}},

		{name: "empty body", body: ``, wantErr: true},
		{name: "invalid JSON", body: `{"model":"gpt-4o"`, wantErr: true},
		{name: "trailing garbage", body: `{"model":"gpt-4o"} x`, wantErr: true},
		{name: "array", body: `[{"model":"gpt-4o"}]`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "model number", body: `{"model":4}`, wantField: "model"},
		{name: "stream string", body: `{"stream":"true"}`, wantField: "stream"},
		{name: "stream_options array", body: `{"stream_options":[]}`, wantField: "stream_options"},
		{name: "include_usage number", body: `{"stream_options":{"include_usage":1}}`, wantField: "stream_options.include_usage"},
		{name: "max_tokens float", body: `{"max_tokens":1.5}`, wantField: "max_tokens"},
		{name: "max_tokens exponent", body: `{"max_tokens":1e3}`, wantField: "max_tokens"},
		{name: "max_tokens overflow", body: `{"max_tokens":99999999999999999999}`, wantField: "max_tokens"},
		{name: "max_completion_tokens string", body: `{"max_completion_tokens":"5"}`, wantField: "max_completion_tokens"},
		{name: "max_output_tokens object", body: `{"max_output_tokens":{}}`, wantField: "max_output_tokens"},
		{name: "n bool", body: `{"n":true}`, wantField: "n"},
		{name: "size number", body: `{"size":1024}`, wantField: "size"},
		{name: "quality bool", body: `{"quality":true}`, wantField: "quality"},
		{name: "background number", body: `{"background":1}`, wantField: "background"},
		{name: "background object", body: `{"background":{}}`, wantField: "background"},
		{name: "input_file_id array", body: `{"input_file_id":["file-1"]}`, wantField: "input_file_id"},
		{name: "endpoint object", body: `{"endpoint":{"url":"/v1/responses"}}`, wantField: "endpoint"},
		{name: "first field in order", body: `{"endpoint":1,"size":1,"model":1}`, wantField: "model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(tc.body))
			if tc.wantErr || tc.wantField != "" {
				var re *RequestError
				if !errors.As(err, &re) {
					t.Fatalf("ParseRequest error = %v, want a *RequestError", err)
				}
				if re.Field != tc.wantField {
					t.Errorf("Field = %q, want %q (%v)", re.Field, tc.wantField, err)
				}
				if tc.wantField != "" && !strings.Contains(err.Error(), tc.wantField) {
					t.Errorf("error %q does not name %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if got != tc.want {
				t.Errorf("ParseRequest = %+v, want %+v", got, tc.want)
			}
		})
	}
}
