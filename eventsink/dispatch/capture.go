package dispatch

import (
	"bytes"
	"encoding/json"
	"strings"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// api is the OpenAI API a request went to, as its path names it.
type api int

const (
	apiOther       api = iota
	apiChat            // /v1/chat/completions
	apiResponses       // /v1/responses
	apiCompletions     // /v1/completions (legacy text completions)
	apiEmbeddings      // /v1/embeddings
)

// apiOf names the API of a request path. Only the create calls count: a
// GET of /v1/responses/{id} is apiOther.
func apiOf(path string) api {
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return apiChat
	case strings.HasSuffix(path, "/responses"):
		return apiResponses
	case strings.HasSuffix(path, "/completions"):
		return apiCompletions
	case strings.HasSuffix(path, "/embeddings"):
		return apiEmbeddings
	}
	return apiOther
}

// exchange is an event's capture, decoded. request and response are the
// bodies as JSON objects (numbers kept as [json.Number]); each is nil when
// that body was not captured, is not JSON (multipart audio, images, files:
// the capture keeps only their type and size), or was cut at the cap in the
// middle of the document. rawRequest and rawResponse are the same bodies,
// compacted onto one line.
type exchange struct {
	api                     api
	request, response       map[string]any
	rawRequest, rawResponse json.RawMessage
}

// decodeCapture decodes ev's capture; the zero exchange (both bodies nil)
// when ev has none.
func decodeCapture(ev *llmproxyv1.UsageEvent) exchange {
	x := exchange{api: apiOf(ev.GetPath())}
	c := ev.GetCapture()
	if c == nil {
		return x
	}
	x.request, x.rawRequest = jsonObject(c.GetRequest())
	x.response, x.rawResponse = jsonObject(c.GetResponse())
	return x
}

// jsonObject decodes s when it is one JSON object, and returns it compacted
// too; nil, nil otherwise.
func jsonObject(s string) (map[string]any, json.RawMessage) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() {
		return nil, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return nil, nil
	}
	return m, b.Bytes()
}

// message is one turn of a conversation, in the form the Lunary and the
// OpenTelemetry mappings both start from: OpenAI's chat message, which the
// Responses API's items and the legacy completions are brought to.
type message struct {
	role string
	// content is a string, a list of content parts (OpenAI's chat shape:
	// {"type": "text", "text": …}, {"type": "image_url", …}), or nil.
	content    any
	toolCalls  []toolCall
	toolCallID string // role "tool": the call this answers
	name       string
	finish     string // output messages: why generation stopped
}

// toolCall is a function call the model asked for; arguments is the JSON
// text the model wrote.
type toolCall struct {
	id, name, arguments string
}

// instructions is the Responses API's separate system prompt, when the
// request has one as a string.
func (x exchange) instructions() string {
	if x.api != apiResponses {
		return ""
	}
	s, _ := x.request["instructions"].(string)
	return s
}

// inputMessages is the conversation the request sent, in order; nil when
// the request was not captured or its API has none (embeddings, others).
// Responses API input items other than messages, function calls and their
// outputs (reasoning, item references) are left out.
func (x exchange) inputMessages() []message {
	if x.request == nil {
		return nil
	}
	var out []message
	switch x.api {
	case apiChat:
		for _, v := range list(x.request["messages"]) {
			if m, ok := v.(map[string]any); ok {
				out = append(out, chatMessage(m))
			}
		}
	case apiResponses:
		switch in := x.request["input"].(type) {
		case string:
			out = append(out, message{role: "user", content: in})
		case []any:
			for _, v := range in {
				if m, ok := responsesItem(v); ok {
					out = append(out, m)
				}
			}
		}
	case apiCompletions:
		switch p := x.request["prompt"].(type) {
		case string:
			out = append(out, message{role: "user", content: p})
		case []any:
			for _, v := range p {
				if s, ok := v.(string); ok {
					out = append(out, message{role: "user", content: s})
				}
			}
		}
	}
	return out
}

// outputMessages is what the model answered, one message per choice; nil
// when the response was not captured or its API has none. finishReasons
// are the event's, used where the response names none.
func (x exchange) outputMessages(finishReasons []string) []message {
	if x.response == nil {
		return nil
	}
	var out []message
	switch x.api {
	case apiChat, apiCompletions:
		for i, v := range list(x.response["choices"]) {
			c, ok := v.(map[string]any)
			if !ok {
				continue
			}
			var m message
			if x.api == apiChat {
				msg, _ := c["message"].(map[string]any)
				if msg == nil {
					continue
				}
				m = chatMessage(msg)
				if m.role == "" {
					m.role = "assistant"
				}
			} else {
				text, _ := c["text"].(string)
				m = message{role: "assistant", content: text}
			}
			m.finish, _ = c["finish_reason"].(string)
			if m.finish == "" && i < len(finishReasons) {
				m.finish = finishReasons[i]
			}
			out = append(out, m)
		}
	case apiResponses:
		// The Responses API answers with one list of items: one choice.
		m := message{role: "assistant"}
		var parts []any
		for _, v := range list(x.response["output"]) {
			item, ok := v.(map[string]any)
			if !ok {
				continue
			}
			switch item["type"] {
			case "message":
				switch c := normalContent(item["content"]).(type) {
				case string:
					parts = append(parts, textPart(c))
				case []any:
					parts = append(parts, c...)
				}
			case "function_call":
				m.toolCalls = append(m.toolCalls, responsesCall(item))
			}
		}
		m.content = collapseText(parts)
		if m.content == nil && len(m.toolCalls) == 0 {
			return nil
		}
		m.finish, _ = x.response["status"].(string)
		if m.finish == "" && len(finishReasons) > 0 {
			m.finish = finishReasons[0]
		}
		out = append(out, m)
	}
	return out
}

// chatMessage reads a chat completions message.
func chatMessage(m map[string]any) message {
	out := message{content: normalContent(m["content"])}
	out.role, _ = m["role"].(string)
	out.name, _ = m["name"].(string)
	out.toolCallID, _ = m["tool_call_id"].(string)
	if r, _ := m["refusal"].(string); r != "" {
		parts, _ := out.content.([]any)
		if s, ok := out.content.(string); ok && s != "" {
			parts = []any{textPart(s)}
		}
		out.content = append(parts, map[string]any{"type": "refusal", "refusal": r})
	}
	for _, v := range list(m["tool_calls"]) {
		tc, _ := v.(map[string]any)
		fn, _ := tc["function"].(map[string]any)
		if fn == nil {
			continue
		}
		c := toolCall{}
		c.id, _ = tc["id"].(string)
		c.name, _ = fn["name"].(string)
		c.arguments, _ = fn["arguments"].(string)
		out.toolCalls = append(out.toolCalls, c)
	}
	return out
}

// responsesItem reads one Responses API input item.
func responsesItem(v any) (message, bool) {
	item, ok := v.(map[string]any)
	if !ok {
		return message{}, false
	}
	typ, _ := item["type"].(string)
	role, _ := item["role"].(string)
	switch {
	case typ == "message" || typ == "" && role != "":
		return message{role: role, content: normalContent(item["content"])}, true
	case typ == "function_call":
		return message{role: "assistant", toolCalls: []toolCall{responsesCall(item)}}, true
	case typ == "function_call_output":
		m := message{role: "tool", content: normalContent(item["output"])}
		m.toolCallID, _ = item["call_id"].(string)
		return m, true
	}
	return message{}, false
}

func responsesCall(item map[string]any) toolCall {
	c := toolCall{}
	c.id, _ = item["call_id"].(string)
	c.name, _ = item["name"].(string)
	c.arguments, _ = item["arguments"].(string)
	return c
}

// normalContent brings message content to the chat shape: a string stays;
// in a list of parts, the Responses API's input_text and output_text become
// {"type": "text", "text": …}; a list of text parts only becomes one string.
// Other parts are kept as they are.
func normalContent(v any) any {
	parts, ok := v.([]any)
	if !ok {
		if s, ok := v.(string); ok {
			return s
		}
		return nil
	}
	out := make([]any, 0, len(parts))
	for _, p := range parts {
		pm, ok := p.(map[string]any)
		if !ok {
			continue
		}
		switch pm["type"] {
		case "input_text", "output_text", "text":
			s, _ := pm["text"].(string)
			out = append(out, textPart(s))
		default:
			out = append(out, pm)
		}
	}
	return collapseText(out)
}

// collapseText joins a list of text parts into one string (lines); a list
// with other parts stays a list, an empty one is nil.
func collapseText(parts []any) any {
	if len(parts) == 0 {
		return nil
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		pm, _ := p.(map[string]any)
		if pm["type"] != "text" {
			return parts
		}
		s, _ := pm["text"].(string)
		texts = append(texts, s)
	}
	return strings.Join(texts, "\n")
}

func textPart(s string) map[string]any { return map[string]any{"type": "text", "text": s} }

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// requestParams are the request's settings: every field but the model, the
// content (messages, input, instructions, prompt), the end user and the
// stream flags, as the client sent them.
func (x exchange) requestParams() map[string]any {
	if x.request == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range x.request {
		switch k {
		case "model", "messages", "input", "instructions", "prompt", "user", "safety_identifier", "stream", "stream_options":
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// errorMessage is the message of an OpenAI error body ({"error": {"message"}}).
func (x exchange) errorMessage() string {
	e, _ := x.response["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}
