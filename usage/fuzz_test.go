package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"strconv"
	"testing"
	"unicode/utf8"
)

// decodeAny decodes body as encoding/json does, numbers kept as json.Number.
// encoding/json is the reference for the package's own readers: it too lets a
// repeated key's last value win, and a map keeps keys case-sensitively.
func decodeAny(body []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// refRequest is ParseRequest's contract written over encoding/json.
func refRequest(body []byte) (req Request, errField string, err bool) {
	req = Request{N: 1}
	if !json.Valid(body) {
		return req, "", true
	}
	m, ok := decodeAny(body)
	if !ok {
		return req, "", true
	}
	var fieldErrs []string
	integer := func(name string) int64 {
		switch v := m[name].(type) {
		case nil:
			return 0
		case json.Number:
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				return n
			}
		}
		fieldErrs = append(fieldErrs, name)
		return 0
	}
	str := func(name string) string {
		switch v := m[name].(type) {
		case nil:
		case string:
			return v[:min(len(v), maxModelLen)]
		default:
			fieldErrs = append(fieldErrs, name)
		}
		return ""
	}
	req.Model = str("model")
	switch v := m["stream"].(type) {
	case nil:
	case bool:
		req.Stream = v
	default:
		fieldErrs = append(fieldErrs, "stream")
	}
	switch v := m["stream_options"].(type) {
	case nil:
	case map[string]any:
		switch iu := v["include_usage"].(type) {
		case nil:
		case bool:
			req.IncludeUsage = iu
		default:
			fieldErrs = append(fieldErrs, "stream_options.include_usage")
		}
	default:
		fieldErrs = append(fieldErrs, "stream_options")
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
		req.MaxOutputTokens = max(req.MaxOutputTokens, integer(name))
	}
	if n := integer("n"); n > 1 {
		req.N = n
	}
	req.Size = str("size")
	req.Quality = str("quality")
	if v, ok := m["input"].(string); ok {
		req.InputChars = int64(utf8.RuneCountInString(v))
	}
	switch v := m["background"].(type) {
	case nil, string:
	case bool:
		req.Background = v
	default:
		fieldErrs = append(fieldErrs, "background")
	}
	req.InputFileID = str("input_file_id")
	req.Endpoint = str("endpoint")
	if len(fieldErrs) > 0 {
		return Request{N: 1}, fieldErrs[0], true
	}
	return req, "", false
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":100,"n":2}`,
		`{"model":"o3","max_completion_tokens":4096,"max_tokens":null}`,
		`{"model":"gpt-5","input":"x","max_output_tokens":512,"stream":false}`,
		`{"model":4}`, `{"stream_options":{"include_usage":1}}`, `{"max_tokens":1.5}`, `{"n":"2"}`,
		`{"model":"a\u00e9\ud83d\ude00","model":"b"}`, `[]`, `null`, ``, `{`, `{"a":[1,{"b":"\"}"}]}`,
		`{"model":"dall-e-3","prompt":"otter","n":1,"size":"1024x1792","quality":"hd","background":"transparent"}`,
		`{"model":"tts-1","input":"Hello, wörld! 😀 \u00e9\ud83d\ude00\ud800x\"\\","voice":"alloy"}`,
		`{"model":"o3","input":[{"role":"user","content":"x"}],"background":true}`,
		`{"input_file_id":"file-abc123","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
		`{"size":1,"quality":[],"background":0,"input_file_id":{},"endpoint":false}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseRequest(body)
		if !utf8.Valid(body) {
			return // encoding/json rewrites invalid UTF-8; the reference would differ
		}
		want, wantField, wantErr := refRequest(body)
		if (err != nil) != wantErr {
			t.Fatalf("ParseRequest(%q) error %v, reference error %v (%q)", body, err, wantErr, wantField)
		}
		if err != nil {
			if re, ok := err.(*RequestError); !ok || re.Field != wantField {
				t.Fatalf("ParseRequest(%q) error %v, reference field %q", body, err, wantField)
			}
			return
		}
		if got != want {
			t.Fatalf("ParseRequest(%q) = %+v, reference %+v", body, got, want)
		}
	})
}

// refUsage is ParseUsage's contract written over encoding/json.
func refUsage(body []byte) (Usage, bool) {
	m, ok := decodeAny(body)
	if !ok || !json.Valid(body) {
		return Usage{}, false
	}
	if u, ok := refUsageObject(m["usage"]); ok {
		return u, true
	}
	if resp, ok := m["response"].(map[string]any); ok {
		if u, ok := refUsageObject(resp["usage"]); ok {
			return u, true
		}
	}
	if d, ok := refSeconds(m["duration"]); ok && d.set {
		return Usage{Seconds: d.v}, true
	}
	return Usage{}, false
}

// refSeconds is readSeconds over encoding/json; ok is false for a bad value.
func refSeconds(v any) (seconds, bool) {
	switch n := v.(type) {
	case nil:
		return seconds{}, true
	case json.Number:
		if f, err := strconv.ParseFloat(string(n), 64); err == nil && f >= 0 {
			return seconds{v: f, set: true}, true
		}
	}
	return seconds{}, false
}

func refUsageObject(v any) (Usage, bool) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Usage{}, false
	}
	valid := true
	get := func(m map[string]any, name string) count {
		switch n := m[name].(type) {
		case nil:
			return count{}
		case json.Number:
			if v, err := strconv.ParseInt(string(n), 10, 64); err == nil && v >= 0 {
				return count{v: v, set: true}
			}
		}
		valid = false
		return count{}
	}
	detail := func(name, inner string) count {
		switch d := obj[name].(type) {
		case nil:
			return count{}
		case map[string]any:
			return get(d, inner)
		}
		valid = false
		return count{}
	}
	prompt, input := get(obj, "prompt_tokens"), get(obj, "input_tokens")
	completion, output := get(obj, "completion_tokens"), get(obj, "output_tokens")
	total := get(obj, "total_tokens")
	cached := detail("prompt_tokens_details", "cached_tokens").or(detail("input_tokens_details", "cached_tokens"))
	image := detail("input_tokens_details", "image_tokens")
	reasoning := detail("completion_tokens_details", "reasoning_tokens").or(detail("output_tokens_details", "reasoning_tokens"))
	secs, ok := refSeconds(obj["seconds"])
	p, c := prompt.or(input), completion.or(output)
	if !valid || !ok || !p.set && !c.set && !total.set && !secs.set {
		return Usage{}, false
	}
	u := Usage{
		PromptTokens: p.v, CompletionTokens: c.v, CachedTokens: cached.v, ReasoningTokens: reasoning.v, TotalTokens: total.v,
		ImageTokens: image.v, Seconds: secs.v,
	}
	if !total.set {
		u.TotalTokens = saturatingAdd(p.v, c.v)
	}
	return u, true
}

func FuzzParseUsage(f *testing.F) {
	for _, s := range []string{
		`{"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":4}}}`,
		`{"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":12},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}`,
		`{"usage":{"prompt_tokens":8,"total_tokens":8}}`,
		`{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}}`,
		`{"usage":{"prompt_tokens":"1"},"response":{"usage":{"input_tokens":2}}}`,
		`{"usage":{"prompt_tokens":1,"prompt_tokens":null}}`, `{"usage":{"prompt_tokens":-0}}`,
		`{"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":1}}`, `{"usage":null}`, `[]`, ``,
		`{"text":"Hello.","usage":{"type":"duration","seconds":3}}`,
		`{"text":"Hi.","usage":{"type":"duration","seconds":42.7e0}}`, `{"usage":{"seconds":-1}}`, `{"usage":{"seconds":1e400}}`,
		`{"text":"Hi.","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":45,"total_tokens":59}}`,
		`{"created":1,"data":[{"b64_json":"x"}],"usage":{"total_tokens":4260,"input_tokens":100,"output_tokens":4160,"input_tokens_details":{"text_tokens":20,"image_tokens":80}}}`,
		`{"task":"translate","language":"english","duration":8.47,"text":"Hi."}`, `{"duration":"8"}`, `{"duration":null,"usage":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := ParseUsage(body)
		if ok && (got.PromptTokens < 0 || got.CompletionTokens < 0 || got.CachedTokens < 0 || got.ReasoningTokens < 0 || got.TotalTokens < 0 ||
			got.ImageTokens < 0 || !(got.Seconds >= 0) || math.IsInf(got.Seconds, 0)) {
			t.Fatalf("ParseUsage(%q) = %+v: negative count", body, got)
		}
		want, wantOK := refUsage(body)
		if ok != wantOK || got != want {
			t.Fatalf("ParseUsage(%q) = %+v, %v; reference %+v, %v", body, got, ok, want, wantOK)
		}
	})
}

// refImageCount is ImageCount's contract written over encoding/json.
func refImageCount(body []byte) (int64, bool) {
	m, ok := decodeAny(body)
	if !ok || !json.Valid(body) {
		return 0, false
	}
	data, ok := m["data"].([]any)
	return int64(len(data)), ok
}

func FuzzImageCount(f *testing.F) {
	for _, s := range []string{
		`{"created":1589478378,"data":[{"url":"https://example.com/a.png","revised_prompt":"otter"}]}`,
		`{"data":[[1,{"a":"]"}],"x",null],"usage":{"input_tokens":1}}`, `{"data":[1],"data":null}`, `{"data":{}}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := ImageCount(body)
		if want, wantOK := refImageCount(body); got != want || ok != wantOK {
			t.Fatalf("ImageCount(%q) = %d, %v; reference %d, %v", body, got, ok, want, wantOK)
		}
	})
}

// refJob is ParseJob's contract written over encoding/json.
func refJob(body []byte) (Job, bool) {
	m, ok := decodeAny(body)
	if !ok || !json.Valid(body) {
		return Job{}, false
	}
	var j Job
	for name, dst := range map[string]*string{
		"id": &j.ID, "object": &j.Object, "status": &j.Status, "model": &j.Model,
		"output_file_id": &j.OutputFileID, "error_file_id": &j.ErrorFileID,
	} {
		switch v := m[name].(type) {
		case nil:
		case string:
			*dst = v
		default:
			return Job{}, false
		}
	}
	if j.ID == "" || j.Object != "response" && j.Object != "batch" {
		return Job{}, false
	}
	j.Usage, j.HasUsage = refUsageObject(m["usage"])
	return j, true
}

func FuzzParseJob(f *testing.F) {
	for _, s := range []string{
		backgroundQueued, backgroundCompleted, batchInProgress, batchCompleted,
		`{"id":"resp_\u0031","object":"response","status":"completed","usage":{"input_tokens":"5"}}`,
		`{"id":"x","id":"b","object":"batch","status":7,"status":"expired","output_file_id":null}`,
		`{"id":"b","object":"batch","error_file_id":[]}`, `{"id":"","object":"response"}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := ParseJob(body)
		if !utf8.Valid(body) {
			return // encoding/json rewrites invalid UTF-8; the reference would differ
		}
		if want, wantOK := refJob(body); got != want || ok != wantOK {
			t.Fatalf("ParseJob(%q) = %+v, %v; reference %+v, %v", body, got, ok, want, wantOK)
		}
	})
}

// refBatchOutput is ReadBatchOutput's contract written over encoding/json;
// errLine is the line of the error, 0 if none.
func refBatchOutput(data []byte, maxLine int) (sums map[string]Usage, errLine int) {
	if maxLine <= 0 {
		maxLine = DefaultMaxBatchLine
	}
	sums = make(map[string]Usage)
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		if i < len(lines)-1 {
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		switch {
		case len(line) > maxLine:
			return nil, i + 1
		case len(bytes.Trim(line, " \t\r\n")) == 0:
			continue
		case !json.Valid(line):
			return nil, i + 1
		}
		m, ok := decodeAny(line)
		if !ok {
			return nil, i + 1
		}
		resp, ok := m["response"].(map[string]any)
		if m["error"] != nil || !ok {
			continue
		}
		status, _ := resp["status_code"].(json.Number)
		code, err := strconv.ParseInt(string(status), 10, 64)
		body, ok := resp["body"].(map[string]any)
		if err != nil || code < 200 || code > 299 || !ok {
			continue
		}
		if u, ok := refUsageObject(body["usage"]); ok {
			model, _ := body["model"].(string)
			sums[model] = addUsage(sums[model], u)
		}
	}
	return sums, 0
}

func FuzzReadBatchOutput(f *testing.F) {
	f.Add([]byte(chatLine1+"\n"+chatLine2+"\r\n"+embeddingsLine+"\n\n"+responsesLine+"\n"+badRequestLine+"\n"+expiredLine+"\n"+moderationLine), 0)
	f.Add([]byte(`{"response":{"status_code":200,"body":{"model":"m","usage":{"prompt_tokens":5}}},"error":null}`+"\n"+`{"a":12}`+"\r\n"), 8)
	f.Add([]byte(`{"response":{"status_code":2e2,"body":{"model":"m\u002d1","usage":{"seconds":3}},"status_code":201}}`+"\r"), 0)
	f.Add([]byte("[]\n{"), 0)
	f.Fuzz(func(t *testing.T, data []byte, maxLine int) {
		maxLine %= 1 << 10 // keep small limits common
		got, err := readBatchOutput(bytes.NewReader(data), maxLine, 16)
		if !utf8.Valid(data) {
			return // encoding/json rewrites invalid UTF-8; the reference would differ
		}
		want, wantLine := refBatchOutput(data, maxLine)
		if wantLine != 0 {
			var be *BatchOutputError
			if !errors.As(err, &be) || be.Line != wantLine || got != nil {
				t.Fatalf("ReadBatchOutput(%q, %d) = %v, %v; want an error on line %d", data, maxLine, got, err, wantLine)
			}
			return
		}
		if err != nil || got == nil || !maps.Equal(got, want) {
			t.Fatalf("ReadBatchOutput(%q, %d) = %v, %v; reference %v", data, maxLine, got, err, want)
		}
	})
}

// FuzzStreamParser feeds arbitrary bytes in arbitrary chunks: the parser must
// not panic, must keep its limits, and must read the same whatever the chunking.
func FuzzStreamParser(f *testing.F) {
	for _, s := range []string{
		chatStream("\n", true, "Hello", " world"),
		chatStream("\r\n", false, "a"),
		chatStream("\r", true, "é"),
		responsesStream,
		": ping\n\ndata: {\"choices\":[{\"delta\":\ndata: {\"content\":\"x\"}}]}\n\n",
		"data: {\"usage\":{\"prompt_tokens\":1}\n\ndata: [DONE]\r\n\r\n",
	} {
		f.Add([]byte(s), []byte{1, 7, 3, 200, 0, 13})
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		const maxText = 16
		whole := NewStreamParser(maxText)
		whole.Write(stream)
		want := resultOf(whole)
		if len(want.Text) > maxText || int64(len(want.Text)) > want.TextBytes {
			t.Fatalf("text %q over its limit or its byte count %d", want.Text, want.TextBytes)
		}
		if want.Truncated != (want.TextBytes > int64(len(want.Text))) {
			t.Fatalf("Truncated %v with %d of %d bytes kept", want.Truncated, len(want.Text), want.TextBytes)
		}
		chunked := NewStreamParser(maxText)
		rest := stream
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				if n = min(int(cuts[i%len(cuts)]), len(rest)); n == 0 {
					chunked.Write(nil) // an empty chunk, then go on
					n = 1
				}
			}
			chunked.Write(rest[:n])
			rest = rest[n:]
		}
		if got := resultOf(chunked); got != want {
			t.Fatalf("chunked by %v: %+v, whole: %+v", cuts, got, want)
		}
	})
}

// FuzzStreamPayload builds chat chunks with encoding/json from arbitrary
// strings and counts and expects the parser to read back exactly what
// encoding/json does.
func FuzzStreamPayload(f *testing.F) {
	f.Add("Hello", "think", "get_weather", `{"city":"Paris"}`, int64(12), int64(5), int64(3), int64(1))
	f.Add("<&>\u2028\x00\"\\", "\xff", "", "😀", int64(-1), int64(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, content, reasoning, name, args string, prompt, completion, cached, reasoningTokens int64) {
		type function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		}
		type toolCall struct {
			Index    int      `json:"index"`
			Type     string   `json:"type"`
			Function function `json:"function"`
		}
		chunk := map[string]any{
			"id":     "chatcmpl-1",
			"object": "chat.completion.chunk",
			"choices": []any{map[string]any{
				"index": 0,
				"delta": map[string]any{
					"content":           content,
					"reasoning_content": reasoning,
					"tool_calls":        []toolCall{{Type: "function", Function: function{name, args}}},
				},
			}},
			"usage": map[string]any{
				"prompt_tokens":             prompt,
				"completion_tokens":         completion,
				"prompt_tokens_details":     map[string]any{"cached_tokens": cached},
				"completion_tokens_details": map[string]any{"reasoning_tokens": reasoningTokens},
			},
		}
		payload, err := json.Marshal(chunk)
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Choices []struct {
				Delta struct {
					Content          string     `json:"content"`
					ReasoningContent string     `json:"reasoning_content"`
					ToolCalls        []toolCall `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(payload, &back); err != nil {
			t.Fatal(err)
		}
		d := back.Choices[0].Delta
		// Members are read in document order: sorted map keys, then struct fields.
		wantText := d.Content + d.ReasoningContent + d.ToolCalls[0].Function.Name + d.ToolCalls[0].Function.Arguments
		s := NewStreamParser(0)
		s.Write([]byte("data: " + string(payload) + "\n\n"))
		if got := s.Text(); got != wantText {
			t.Fatalf("Text = %q, want %q (payload %s)", got, wantText, payload)
		}
		u, ok := s.Usage()
		wantOK := prompt >= 0 && completion >= 0 && cached >= 0 && reasoningTokens >= 0
		if ok != wantOK {
			t.Fatalf("Usage ok = %v, want %v (payload %s)", ok, wantOK, payload)
		}
		if want := (Usage{PromptTokens: prompt, CompletionTokens: completion, CachedTokens: cached, ReasoningTokens: reasoningTokens, TotalTokens: saturatingAdd(prompt, completion)}); ok && u != want {
			t.Fatalf("Usage = %+v, want %+v", u, want)
		}
	})
}

// FuzzValidJSON holds validJSON to json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,-2.5e+3,true,false,null,"x\u00e9\n"],"b":{}}`, `[]`, ` 0 `, `-`, `01`, `1.`, `1e`, `"\x"`, "\"\x01\"",
		`{"a" 1}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a":1}}`, `"abc`, `tru`, `nul`, `{"a":"\ud83d"}`, `[[[[[]]]]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid %v", b, got, want)
		}
	})
}

// FuzzJSONString holds the reader's string decoding to encoding/json's.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`abc`, `a\"b\\c\/\b\f\n\r\t`, `\u00e9\ud83d\ude00`, `\ud800`, `\udc00\ud800x`, `\ud83d\u0041`, `\u12`, `\q`} {
		f.Add([]byte(s), 64)
	}
	f.Fuzz(func(t *testing.T, raw []byte, limit int) {
		quoted := append(append([]byte{'"'}, raw...), '"')
		r := reader{b: quoted}
		got, n := r.str(nil, max(limit, 0))
		if len(got) > max(limit, 0) || n < len(got) {
			t.Fatalf("str(%q, %d) = %q, %d: over the limit", quoted, limit, got, n)
		}
		var want string
		if err := json.Unmarshal(quoted, &want); err != nil || !utf8.Valid(raw) {
			return
		}
		if r.err || r.i != len(quoted) || n != len(want) || string(got) != want[:min(len(want), max(limit, 0))] {
			t.Fatalf("str(%q) = %q, %d (err %v), encoding/json %q", quoted, got, n, r.err, want)
		}
	})
}

// FuzzCountPrompt holds CountPrompt, on arbitrary bodies, to what holds
// whatever the body says: the count is never negative; it is the same on a
// second call, when every text comes from the Tokenizer's memory (within
// the 64 KiB counted exactly, memory changes nothing); a body that does not
// start as a JSON object counts one token per 4 bytes; and white space
// between the tokens of a valid JSON object changes nothing.
func FuzzCountPrompt(f *testing.F) {
	f.Add([]byte(`{"messages":` + cookbookMessages + `}`))
	f.Add([]byte(`{"input":[{"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","detail":"low"}]},[1,2],"x"],"tools":[{"a":1}]}`))
	f.Add([]byte(`{"prompt":["a",[1,2]],"instructions":"x","text":{"format":{"schema":{}}},"response_format":{"json_schema":{}}}`))
	f.Add([]byte(` ["not", "an object"]`))
	f.Add([]byte(`{"messages":[{"role":"user","content":"unterminated`))
	tok := testTokenizer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		n := tok.CountPrompt("gpt-4o", body)
		if n < 0 {
			t.Fatalf("CountPrompt(%q) = %d", body, n)
		}
		if len(body) > exactTextLimit {
			return // past the exact budget, memory may change the estimate
		}
		if again := tok.CountPrompt("gpt-4o", body); again != n {
			t.Fatalf("CountPrompt(%q) = %d, then %d", body, n, again)
		}
		if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
			if want := bytesEstimate(len(body)); n != want {
				t.Fatalf("CountPrompt(%q), not an object, = %d, want %d (one per 4 bytes)", body, n, want)
			}
			return
		}
		if !json.Valid(body) {
			return
		}
		var compact, indented bytes.Buffer
		if err := json.Compact(&compact, body); err != nil {
			t.Fatal(err)
		}
		if err := json.Indent(&indented, body, "\n", " \t"); err != nil {
			t.Fatal(err)
		}
		for _, other := range [][]byte{compact.Bytes(), indented.Bytes()} {
			if len(other) > exactTextLimit {
				continue
			}
			if got := tok.CountPrompt("gpt-4o", other); got != n {
				t.Fatalf("CountPrompt(%q) = %d, but %d with other white space: %q", body, n, got, other)
			}
		}
	})
}

// FuzzCountPromptMessages holds CountPrompt to its formula on simple
// prompts built from arbitrary texts, in both encodings, with CountText as
// the reference: a chat counts 3 to prime the reply plus, per message, 3,
// its role, its content, and 1 plus its name if it has one, so appending a
// message adds exactly that message's share and never lowers the count; an
// "input" array of strings is the sum of its strings; "instructions" count
// as one message without priming.
func FuzzCountPromptMessages(f *testing.F) {
	f.Add("system", "You are a helpful assistant.", "example_user", "user", "Hello <|endoftext|> there!", true)
	f.Add("user", "", "", "assistant", "héllo wörld 🙂", false)
	f.Add("tool", "\u0000 \\ \"", "n", "developer", "\xff\xfe invalid utf-8", true)
	tok := testTokenizer(f)
	f.Fuzz(func(t *testing.T, role1, content1, name1, role2, content2 string, named bool) {
		// Past the exact budget a count is an estimate, not the formula: keep
		// every body below it (JSON escapes a byte into six at most; the
		// third message repeats both contents).
		if 6*(len(role1)+2*len(content1)+len(name1)+len(role2)+2*len(content2))+256 > exactTextLimit {
			return
		}
		first := map[string]string{"role": role1, "content": content1}
		if named {
			first["name"] = name1
		}
		msgs := []map[string]string{
			first,
			{"role": role2, "content": content2},
			{"role": "assistant", "content": content1 + content2},
		}
		for _, model := range []string{"gpt-4o", "gpt-4"} {
			count := func(v any) int64 {
				t.Helper()
				body, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if len(body) > exactTextLimit {
					t.Fatalf("a body of %d bytes got past the size filter", len(body))
				}
				return tok.CountPrompt(model, body)
			}
			// text is CountText of s as it reads back from JSON (invalid
			// UTF-8 is replaced when encoding).
			text := func(s string) int64 {
				t.Helper()
				b, err := json.Marshal(s)
				if err != nil {
					t.Fatal(err)
				}
				var back string
				if err := json.Unmarshal(b, &back); err != nil {
					t.Fatal(err)
				}
				return tok.CountText(model, back)
			}

			prev := count(map[string]any{"messages": msgs[:0]})
			if prev != 0 {
				t.Fatalf("%s: an empty chat counts %d", model, prev)
			}
			want := int64(tokensPriming)
			for k, m := range msgs {
				share := tokensPerMessage + text(m["role"]) + text(m["content"])
				if name, ok := m["name"]; ok {
					share += tokensPerName + text(name)
				}
				want += share
				got := count(map[string]any{"messages": msgs[:k+1]})
				if got != want {
					t.Fatalf("%s: %d messages %q count %d, want %d", model, k+1, msgs[:k+1], got, want)
				}
				if got <= prev {
					t.Fatalf("%s: appending message %d lowered the count from %d to %d", model, k+1, prev, got)
				}
				prev = got
			}

			if got, want := count(map[string]any{"input": []string{content1, content2}}), text(content1)+text(content2); got != want {
				t.Fatalf("%s: input [%q, %q] counts %d, want %d", model, content1, content2, got, want)
			}
			if got, want := count(map[string]any{"instructions": content1, "input": content2}), tokensPerMessage+text(content1)+text(content2); got != want {
				t.Fatalf("%s: instructions %q and input %q count %d, want %d", model, content1, content2, got, want)
			}
		}
	})
}
