package extproc

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

const tokRules = "llmp_rules"

// withRules adds tokRules: the principal of base (its project, limits and
// flags) under the given project and token rules.
func withRules(base string, project, token policy.Rules) func(*harness, *Options) {
	return func(h *harness, _ *Options) {
		p := h.auth.principals[base]
		p.TokenID, p.Rules = "tok_rules", policy.Combined{Project: project, Token: token}
		h.auth.principals[tokRules] = p
	}
}

// refused is the immediate answer of a refusal, its body rendered as
// OpenAI's error document (param "" is null).
func refused(status int, typ, param, code, message string) answer {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Code = message, typ, code
	if param != "" {
		b.Error.Param = &param
	}
	body, _ := json.Marshal(b)
	return answer{status: status, code: code, headers: map[string]string{"content-type": "application/json", "x-request-id": "rid-1"},
		body: text(string(body))}
}

// notAllowed is the refusal of a model.
func notAllowed(message string) answer {
	return refused(403, "permission_error", "model", "model_not_allowed", message)
}

// replaced is the request-body answer that sends body upstream instead.
func replaced(body string) answer {
	return answer{headers: map[string]string{"content-length": strconv.Itoa(len(body))}, body: text(body)}
}

// Every body that names a model is held to the allowlist; a route that runs
// a model must name one; a body of a route that runs none need not.
func TestModelAllowlist(t *testing.T) {
	rules := policy.Rules{Models: []string{"gpt-4o-mini*", "text-embedding-3-small", "dall-e-3", "omni-moderation-*"}}
	noModel := notAllowed("This proxy token may use only the models its rules allow: name one in `model`.")
	for _, tc := range []struct {
		name, path, body string
		want             answer
	}{
		{"chat, not listed", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}]}`,
			notAllowed("The model `gpt-4o` is not allowed for this proxy token.")},
		{"chat, by wildcard", "/v1/chat/completions", `{"model":"gpt-4o-mini-2024-07-18","messages":[{"role":"user","content":"Say hi"}]}`, answer{}},
		{"chat, the name escaped", "/v1/chat/completions", `{"model":"gpt\u002d4o","messages":[]}`,
			notAllowed("The model `gpt-4o` is not allowed for this proxy token.")},
		{"chat, no model", "/v1/chat/completions", `{"messages":[]}`, noModel},
		{"responses", "/v1/responses", `{"model":"o3","input":"Say hi"}`, notAllowed("The model `o3` is not allowed for this proxy token.")},
		{"responses: a stored prompt's model is not seen", "/v1/responses", `{"prompt":{"id":"pmpt_1"}}`, noModel},
		{"embeddings, exact", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"Say hi"}`, answer{}},
		{"embeddings, not listed", "/v1/embeddings", `{"model":"text-embedding-3-large","input":"Say hi"}`,
			notAllowed("The model `text-embedding-3-large` is not allowed for this proxy token.")},
		{"image generation, listed", "/v1/images/generations", `{"model":"dall-e-3","prompt":"a cat"}`, answer{}},
		{"image generation, OpenAI's default model", "/v1/images/generations", `{"prompt":"a cat"}`, noModel},
		{"speech", "/v1/audio/speech", `{"model":"tts-1","input":"Hi","voice":"alloy"}`,
			notAllowed("The model `tts-1` is not allowed for this proxy token.")},
		{"moderation, listed", "/v1/moderations", `{"model":"omni-moderation-latest","input":"Hi"}`, answer{}},
		{"moderation, OpenAI's default model", "/v1/moderations", `{"input":"Hi"}`, noModel},
		{"completions", "/v1/completions", `{"model":"gpt-3.5-turbo-instruct","prompt":"Hi"}`,
			notAllowed("The model `gpt-3.5-turbo-instruct` is not allowed for this proxy token.")},
		{"a conversation runs no model", "/v1/conversations", `{"items":[]}`, answer{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(tokMain, rules, policy.Rules{}))
			c := h.open()
			checkAnswer(t, 0, c.send(reqHeaders("POST", tc.path, tokRules)), answer{headers: swapped, mode: modeJSONRequest})
			checkAnswer(t, 1, c.send(reqBody(tc.body)), tc.want)
			c.end()
			if tc.want.status != 0 && len(h.limiter.calls()) != 0 {
				t.Errorf("a refused request reserved %v", h.limiter.calls())
			}
		})
	}
}

// A refused model is a security denial: audited with the model, and the
// request's event says it was denied and why.
func TestModelRefusalAuditedAndEvented(t *testing.T) {
	h := newHarness(t, withRules(tokMain, policy.Rules{Models: []string{"gpt-4o-mini"}}, policy.Rules{}))
	ev := h.do(
		exchange{reqHeaders("POST", "/v1/chat/completions", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
		exchange{reqBody(`{"model":"gpt-4o","messages":[]}`), notAllowed("The model `gpt-4o` is not allowed for this proxy token.")},
	)
	if ev.TokenId != "tok_rules" || ev.Model != "gpt-4o" || ev.Status != 403 || ev.Outcome != outcomeDenied || ev.ErrorCode != "model_not_allowed" ||
		ev.Usage.GetTotalTokens() != 0 || ev.CostMicroUsd != 0 {
		t.Errorf("event %v", ev)
	}
	want := []store.AuditEvent{{Time: testStart, Action: store.AuditAuthModelNotAllowed, Actor: "client", Outcome: store.AuditOutcomeDenied,
		TargetType: store.AuditTargetToken, TargetID: "tok_rules", ProjectID: "proj_1", RequestID: "rid-1",
		ClientAddress: "192.0.2.7", Detail: `POST /v1/chat/completions: model "gpt-4o"`}}
	if got := h.audit.events(); !reflect.DeepEqual(got, want) {
		t.Errorf("audited\n%+v\nwant\n%+v", got, want)
	}

	// The other rules refuse malformed requests, not security events.
	h = newHarness(t, withRules(tokMain, policy.Rules{NoTools: true}, policy.Rules{}))
	h.do(
		exchange{reqHeaders("POST", "/v1/chat/completions", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
		exchange{reqBody(`{"model":"gpt-4o","messages":[],"tools":[{"type":"function","function":{"name":"f"}}]}`),
			refused(400, "invalid_request_error", "tools", "tools_not_allowed", "This proxy token may not offer the model tools: remove `tools`.")},
	)
	if got := h.audit.events(); len(got) != 0 {
		t.Errorf("audited %+v", got)
	}
}

// A token's list narrows its project's: a model must be on both.
func TestModelAllowlistTokenNarrows(t *testing.T) {
	for _, tc := range []struct {
		name           string
		project, token []string
		model          string
		allowed        bool
	}{
		{"on both", []string{"gpt-4o*"}, []string{"gpt-4o-mini"}, "gpt-4o-mini", true},
		{"project's only", []string{"gpt-4o*"}, []string{"gpt-4o-mini"}, "gpt-4o", false},
		{"token's only: a token cannot widen", []string{"gpt-4o*"}, []string{"gpt-4o-mini", "o3"}, "o3", false},
		{"a token's list alone", nil, []string{"o3"}, "gpt-4o", false},
		{"a project's list alone", []string{"o3"}, nil, "o3", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(tokFree, policy.Rules{Models: tc.project}, policy.Rules{Models: tc.token}))
			want := answer{}
			if !tc.allowed {
				want = notAllowed("The model `" + tc.model + "` is not allowed for this proxy token.")
			}
			h.do(
				exchange{reqHeaders("POST", "/v1/chat/completions", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
				exchange{reqBody(`{"model":"` + tc.model + `","messages":[]}`), want},
			)
		})
	}
}

// GET /v1/models/{model} is checked by its path, decoded, before the cache
// or the upstream.
func TestModelPathAllowlist(t *testing.T) {
	h := newHarness(t, withRules(tokFree, policy.Rules{Models: []string{"gpt-4o-mini", "ft:gpt-4o-mini:acme:*"}}, policy.Rules{}))
	for _, tc := range []struct {
		path string
		want answer
	}{
		{"/v1/models/gpt-4o-mini", answer{headers: swapped, mode: modeHeadersOnly}},
		{"/v1/models/ft%3Agpt-4o-mini%3Aacme%3A%3Aabc123", answer{headers: swapped, mode: modeHeadersOnly}},
		{"/v1/models/gpt-4o", notAllowed("The model `gpt-4o` is not allowed for this proxy token.")},
		{"/v1/models/ft%3Agpt-4o-mini%3Aother%3A%3Aabc123", notAllowed("The model `ft:gpt-4o-mini:other::abc123` is not allowed for this proxy token.")},
	} {
		c := h.open()
		checkAnswer(t, 0, c.send(reqHeaders("GET", tc.path, tokRules)), tc.want)
		c.end()
	}
}

// The models list a restricted token gets names only its models, each
// object and every other member as the upstream wrote them (the kept
// objects joined by a comma). The list is
// not taken from, nor put in, the project's cache: a token without rules
// stores and reads the upstream's whole list.
func TestModelListFiltered(t *testing.T) {
	const (
		upstreamList = `{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},` +
			`{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},` + "\n" +
			` {"id":"o3","object":"model","created":1744225308,"owned_by":"system"}], "has_more": false}`
		filtered = `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"},` +
			`{"id":"o3","object":"model","created":1744225308,"owned_by":"system"}], "has_more": false}`
	)
	listHeaders := func(body string, kv ...string) exchange {
		return exchange{respHeaders(200, append([]string{"content-type", "application/json", "content-length", strconv.Itoa(len(body)),
			"cache-control", "public, max-age=60"}, kv...)...), answer{}}
	}
	h := newHarness(t, withRules(tokFree, policy.Rules{Models: []string{"gpt-4o-mini*", "o3"}}, policy.Rules{}))

	// A token without rules fills the cache with the upstream's list.
	hdrs := listHeaders(upstreamList)
	hdrs.want = answer{headers: map[string]string{"x-request-id": "rid-1", "cache-status": "llm-proxy; fwd=miss"}, mode: modeBufferedBody}
	h.do(exchange{reqHeaders("GET", "/v1/models", tokFree), answer{headers: swapped, mode: modeHeadersOnly}},
		hdrs, exchange{respBody(upstreamList, true), answer{}})

	// The restricted token goes upstream, and reads its own list.
	hdrs.want = answer{headers: map[string]string{"x-request-id": "rid-1"}, mode: modeBufferedBody}
	ev := h.do(exchange{reqHeaders("GET", "/v1/models", tokRules), answer{headers: swapped, mode: modeHeadersOnly}},
		hdrs, exchange{respBody(upstreamList, true), replaced(filtered)})
	if ev.CacheStatus != cacheBypass || ev.Outcome != outcomeForwarded {
		t.Errorf("cache status %q, outcome %q", ev.CacheStatus, ev.Outcome)
	}

	// The cache still holds the upstream's list for the others.
	c := h.open()
	if status, _, _ := immediate(c.send(reqHeaders("GET", "/v1/models", tokFree))); status != 200 {
		t.Fatalf("no cache hit: %d", status)
	}
	c.end()

	// A compressed list is decoded, filtered and sent identity.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(upstreamList))
	zw.Close()
	c = h.open()
	c.send(reqHeaders("GET", "/v1/models", tokRules))
	c.send(listHeaders(gz.String(), "content-encoding", "gzip").send)
	want := replaced(filtered)
	want.removed = []string{"content-encoding"}
	checkAnswer(t, 2, c.send(respBody(gz.String(), true)), want)
	c.end()

	// One message more than a GET whose answer is not read: its body.
	if n := exchangeAsEnvoy(t, h, reqHeaders("GET", "/v1/models", tokRules), "", listHeaders(upstreamList).send, upstreamList); n != 3 {
		t.Errorf("%d messages, want 3", n)
	}

	// A list that cannot be read shows nothing; an error passes as it is.
	h.do(exchange{reqHeaders("GET", "/v1/models", tokRules), answer{headers: swapped, mode: modeHeadersOnly}},
		exchange{listHeaders(`{"data":"oops"}`).send, answer{headers: map[string]string{"x-request-id": "rid-1"}, mode: modeBufferedBody}},
		exchange{respBody(`{"data":"oops"}`, true), replaced(`{"object":"list","data":[]}`)})
	h.do(exchange{reqHeaders("GET", "/v1/models", tokRules), answer{headers: swapped, mode: modeHeadersOnly}},
		exchange{respHeaders(500, "content-type", "application/json"), answer{headers: map[string]string{"x-request-id": "rid-1"}}})
}

// A batch names its models in its input file: each line is checked, when
// the file is read for the reservation and, with nothing to reserve, for
// the check alone.
func TestBatchModelAllowlist(t *testing.T) {
	line := func(model string) string {
		return `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"` + model + `","messages":[],"max_tokens":100}}` + "\n"
	}
	files := func(content string) fileServer {
		return fileServer{files: map[string]string{"/v1/files/file-1/content": content}}
	}
	rules := policy.Rules{Models: []string{"gpt-4o-mini"}}
	for _, tc := range []struct {
		name, base, content string
		want                answer
		reserved            []reserveCall
	}{
		{"reserved, all allowed", tokBackground, line("gpt-4o-mini") + line("gpt-4o-mini"), answer{}, []reserveCall{{0, 60}}},
		{"reserved, line 2 refused", tokBackground, line("gpt-4o-mini") + line("gpt-4o"),
			refused(403, "permission_error", "input_file_id", "model_not_allowed",
				"Line 2 of the batch's input file names the model `gpt-4o`, which is not allowed for this proxy token."), nil},
		{"nothing to reserve, read for the check", "llmp_batches_free", line("gpt-4o-mini") + `{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":{"input":"x"}}`,
			refused(403, "permission_error", "input_file_id", "model_not_allowed",
				"Line 2 of the batch's input file names no model, which is not allowed for this proxy token."), nil},
		{"nothing to reserve, all allowed", "llmp_batches_free", line("gpt-4o-mini"), answer{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withFiles(files(tc.content)), func(h *harness, _ *Options) {
				p := h.auth.principals[tokFree]
				p.AllowBatches = true
				h.auth.principals["llmp_batches_free"] = p
			}, withRules(tc.base, rules, policy.Rules{}))
			h.do(exchange{reqHeaders("POST", "/v1/batches", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
				exchange{reqBody(batchBody), tc.want})
			if got := h.limiter.calls(); !slices.Equal(got, tc.reserved) {
				t.Errorf("reserved %v, want %v", got, tc.reserved)
			}
		})
	}
}

// The output ceiling: refused above it, or clamped; a body naming none gets
// the route's field set to it in both modes. The edit keeps everything else
// as the client wrote it, composes with include_usage, and the reservation
// counts the ceiling.
func TestOutputCeiling(t *testing.T) {
	const (
		chat     = `{"model":"gpt-4o-mini", "messages":[{"role":"user","content":"Say hi"}], "temperature":1.0E0, "max_completion_tokens": 5000, "n":1}`
		chatLow  = `{"model":"gpt-4o-mini", "messages":[{"role":"user","content":"Say hi"}], "temperature":1.0E0, "max_completion_tokens": 2000, "n":1}`
		chatNone = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}]}`
	)
	refuse := policy.Rules{MaxOutputTokens: 2000}
	clamp := policy.Rules{MaxOutputTokens: 2000, OverMax: policy.OverMaxClamp}
	for _, tc := range []struct {
		name           string
		project, token policy.Rules
		path, body     string
		want           answer
		maxOutput      int64 // what the reservation counts (its n included); 0: refused
	}{
		{"refuse: above", refuse, policy.Rules{}, "/v1/chat/completions", chat,
			refused(400, "invalid_request_error", "max_completion_tokens", "max_tokens_exceeded",
				"max_completion_tokens is 5000, over this proxy token's limit of 2000 output tokens."), 0},
		{"refuse: at the ceiling", refuse, policy.Rules{}, "/v1/chat/completions", chatLow, answer{}, 2000},
		{"refuse: none named, the ceiling set", refuse, policy.Rules{}, "/v1/chat/completions", chatNone,
			replaced(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_completion_tokens":2000}`), 2000},
		{"clamp: lowered in place", clamp, policy.Rules{}, "/v1/chat/completions", chat, replaced(chatLow), 2000},
		{"clamp: below passes", clamp, policy.Rules{}, "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[],"max_tokens":10,"n":3}`, answer{}, 30},
		{"clamp: each field, the largest counted", clamp, policy.Rules{}, "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[],"max_tokens":3000,"max_completion_tokens":1000}`,
			replaced(`{"model":"gpt-4o-mini","messages":[],"max_tokens":2000,"max_completion_tokens":1000}`), 2000},
		{"clamp: responses", clamp, policy.Rules{}, "/v1/responses", `{"model":"o3","input":"Say hi","max_output_tokens":4096}`,
			replaced(`{"model":"o3","input":"Say hi","max_output_tokens":2000}`), 2000},
		{"clamp: completions, none named", clamp, policy.Rules{}, "/v1/completions", "{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"Say hi\"\n}",
			replaced("{\"model\":\"gpt-3.5-turbo-instruct\",\"prompt\":\"Say hi\"\n,\"max_tokens\":2000}"), 2000},
		{"null is none: replaced in place", refuse, policy.Rules{}, "/v1/chat/completions",
			`{"model":"gpt-4o-mini","max_completion_tokens":null,"messages":[]}`,
			replaced(`{"model":"gpt-4o-mini","max_completion_tokens":2000,"messages":[]}`), 2000},
		{"a repeated key: OpenAI reads the last, every one is held", clamp, policy.Rules{}, "/v1/chat/completions",
			`{"model":"gpt-4o-mini","max_tokens":5000,"messages":[],"max_tokens":null}`,
			replaced(`{"model":"gpt-4o-mini","max_tokens":2000,"messages":[],"max_tokens":null,"max_completion_tokens":2000}`), 2000},
		{"a route without an output field", clamp, policy.Rules{}, "/v1/embeddings", `{"model":"text-embedding-3-small","input":"Hi"}`, answer{}, 0},
		{"streamed: one body with include_usage", clamp, policy.Rules{}, "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"stream":true}`,
			replaced(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"stream":true,"max_completion_tokens":2000,"stream_options":{"include_usage":true}}`), 2000},
		{"the lower ceiling; a refusing token's refuses", clamp, policy.Rules{MaxOutputTokens: 500}, "/v1/chat/completions", chat,
			refused(400, "invalid_request_error", "max_completion_tokens", "max_tokens_exceeded",
				"max_completion_tokens is 5000, over this proxy token's limit of 500 output tokens."), 0},
		{"the lower ceiling, both clamping", clamp, policy.Rules{MaxOutputTokens: 500, OverMax: policy.OverMaxClamp}, "/v1/chat/completions", chat,
			replaced(`{"model":"gpt-4o-mini", "messages":[{"role":"user","content":"Say hi"}], "temperature":1.0E0, "max_completion_tokens": 500, "n":1}`), 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(tokMain, tc.project, tc.token))
			h.do(
				exchange{reqHeaders("POST", tc.path, tokRules), answer{headers: swapped, mode: modeJSONRequest}},
				exchange{reqBody(tc.body), tc.want},
			)
			calls := h.limiter.calls()
			if tc.want.status != 0 {
				if len(calls) != 0 {
					t.Errorf("a refused request reserved %v", calls)
				}
				return
			}
			var req struct{ Model string }
			json.Unmarshal([]byte(tc.body), &req)
			out := tc.maxOutput
			if tc.path == "/v1/embeddings" {
				out = 0
			}
			prompt := sharedTokenizer(t).CountPrompt(req.Model, []byte(tc.body))
			if len(calls) != 1 || calls[0].tokens != prompt+out {
				t.Errorf("reserved %v, want %d tokens (prompt %d + output %d)", calls, prompt+out, prompt, out)
			}
		})
	}
}

// Restricted parameters take only the values both rules allow; a body that
// leaves one out (or sets it to null) passes.
func TestParamRules(t *testing.T) {
	project := policy.Rules{Params: map[string][]json.RawMessage{
		"n": {json.RawMessage(`1`), json.RawMessage(`2`)}, "service_tier": {json.RawMessage(`"auto"`), json.RawMessage(`"default"`)},
		"reasoning_effort": {json.RawMessage(`"low"`)},
	}}
	token := policy.Rules{Params: map[string][]json.RawMessage{"n": {json.RawMessage(`1`)}, "reasoning_effort": {json.RawMessage(`"high"`)}}}
	for _, tc := range []struct {
		name, body string
		want       answer
	}{
		{"allowed values", `{"model":"o3","messages":[],"n":1,"service_tier":"default"}`, answer{}},
		{"equal as JSON", `{"model":"o3","messages":[],"service_tier":"def\u0061ult"}`, answer{}},
		{"left out or null", `{"model":"o3","messages":[],"service_tier":null}`, answer{}},
		{"the project's, not the token's", `{"model":"o3","messages":[],"n":2}`,
			refused(400, "invalid_request_error", "n", "parameter_not_allowed", "The value 2 of `n` is not allowed for this proxy token; allowed: 1.")},
		{"a string", `{"model":"o3","messages":[],"service_tier":"flex"}`,
			refused(400, "invalid_request_error", "service_tier", "parameter_not_allowed",
				`The value "flex" of `+"`service_tier`"+` is not allowed for this proxy token; allowed: "auto", "default".`)},
		{"no value both allow", `{"model":"o3","messages":[],"reasoning_effort":"low"}`,
			refused(400, "invalid_request_error", "reasoning_effort", "parameter_not_allowed",
				`The value "low" of `+"`reasoning_effort`"+` is not allowed for this proxy token; allowed: none: leave it out.`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(tokFree, project, token))
			h.do(exchange{reqHeaders("POST", "/v1/chat/completions", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
				exchange{reqBody(tc.body), tc.want})
		})
	}
}

// No tools: a non-empty tools or functions list is refused, naming it.
func TestNoToolsRule(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       answer
	}{
		{"tools", `{"model":"gpt-4o","input":"Hi","tools":[{"type":"web_search"}]}`,
			refused(400, "invalid_request_error", "tools", "tools_not_allowed", "This proxy token may not offer the model tools: remove `tools`.")},
		{"functions", `{"model":"gpt-4o","input":"Hi","functions":[{"name":"f"}]}`,
			refused(400, "invalid_request_error", "functions", "tools_not_allowed", "This proxy token may not offer the model tools: remove `functions`.")},
		{"an empty list", `{"model":"gpt-4o","input":"Hi","tools":[ ]}`, answer{}},
		{"null", `{"model":"gpt-4o","input":"Hi","tools":null}`, answer{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withRules(tokFree, policy.Rules{}, policy.Rules{NoTools: true}))
			h.do(exchange{reqHeaders("POST", "/v1/responses", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
				exchange{reqBody(tc.body), tc.want})
		})
	}
}

// The body cap: by Content-Length before the body is buffered, by the
// body's length when none was sent, and an upload must say its length.
func TestBodyCapRule(t *testing.T) {
	const body = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}]}` // 66 bytes
	tooLarge := refused(413, "invalid_request_error", "", "request_too_large", "The request body is 66 bytes, over this proxy token's limit of 64 bytes.")
	h := newHarness(t, withRules(tokFree, policy.Rules{MaxBodyBytes: 100}, policy.Rules{MaxBodyBytes: 64}))

	h.do(exchange{reqHeaders("POST", "/v1/chat/completions", tokRules, "content-length", "66"), tooLarge})
	h.do(exchange{reqHeaders("POST", "/v1/chat/completions", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
		exchange{reqBody(body), tooLarge})
	h.do(exchange{reqHeaders("POST", "/v1/chat/completions", tokRules, "content-length", "14"), answer{headers: swapped, mode: modeJSONRequest}},
		exchange{reqBody(`{"model":"o3"}`), answer{}})

	upload := []string{"content-type", "multipart/form-data; boundary=x"}
	h.do(exchange{reqHeaders("POST", "/v1/audio/transcriptions", tokRules, upload...),
		refused(411, "invalid_request_error", "", "length_required",
			"This proxy token's request bodies are limited to 64 bytes: send the upload with a Content-Length header.")})
	h.do(exchange{reqHeaders("POST", "/v1/audio/transcriptions", tokRules, append(upload, "content-length", "65")...),
		refused(413, "invalid_request_error", "", "request_too_large", "The request body is 65 bytes, over this proxy token's limit of 64 bytes.")})
	h.do(exchange{reqHeaders("POST", "/v1/audio/transcriptions", tokRules, append(upload, "content-length", "64")...),
		answer{headers: swapped, mode: modeHeadersOnly}})
	// A bodiless POST is not an upload.
	h.do(exchange{reqHeaders("POST", "/v1/batches/batch_1/cancel", tokRules), answer{headers: swapped, mode: modeHeadersOnly}})
}

// Rules that do not restrict the body leave it alone: an allowed model's
// body passes unchanged, as does every body without rules.
func TestRulesLeaveBodyAlone(t *testing.T) {
	for _, rules := range []policy.Rules{{}, {Models: []string{"gpt-4o"}}, {MaxBodyBytes: 1 << 20}} {
		h := newHarness(t, withRules(tokFree, rules, policy.Rules{}))
		h.do(exchange{reqHeaders("POST", "/v1/chat/completions", tokRules), answer{headers: swapped, mode: modeJSONRequest}},
			exchange{reqBody(`{"model":"gpt-4o", "messages":[]}`), answer{}})
		if rules.Models != nil {
			continue // its model list is filtered (TestModelListFiltered)
		}
		h.do(exchange{reqHeaders("GET", "/v1/models", tokRules), answer{headers: swapped, mode: modeHeadersOnly}},
			exchange{respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(modelsJSON))),
				answer{headers: map[string]string{"x-request-id": "rid-1", "cache-status": "llm-proxy; fwd=miss"}, mode: modeBufferedBody}},
			exchange{respBody(modelsJSON, true), answer{}})
	}
}

// editBody and topMembers: members found past spaces and escapes, edits
// made in place, an addition to an empty object.
func TestEditBody(t *testing.T) {
	body := []byte("  { \"a\" : [1, {\"b\":2}] ,\n\"c\\u0064\":\t\"x\"}  ")
	ms, err := topMembers(body)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.key+"="+string(body[m.start:m.end]))
	}
	if want := []string{`a=[1, {"b":2}]`, `cd="x"`}; !slices.Equal(got, want) {
		t.Errorf("members %q, want %q", got, want)
	}
	out := editBody(body, []bodyEdit{{start: ms[1].start, end: ms[1].end, value: []byte(`7`)}, {start: -1, key: "z", value: []byte(`true`)}})
	if want := "  { \"a\" : [1, {\"b\":2}] ,\n\"c\\u0064\":\t7,\"z\":true}  "; string(out) != want {
		t.Errorf("edited %q, want %q", out, want)
	}
	if out := editBody([]byte(`{ }`), []bodyEdit{{start: -1, key: "z", value: []byte(`1`)}}); string(out) != `{ "z":1}` {
		t.Errorf("added to an empty object: %q", out)
	}
}
