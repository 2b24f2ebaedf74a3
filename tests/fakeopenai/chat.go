package fakeopenai

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type chatRequest struct {
	Model               string        `json:"model"`
	Messages            []chatMessage `json:"messages"`
	Stream              bool          `json:"stream"`
	StreamOptions       *streamOpts   `json:"stream_options"`
	MaxTokens           *int          `json:"max_tokens"`
	MaxCompletionTokens *int          `json:"max_completion_tokens"`
	N                   *int          `json:"n"`
}

type streamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role    string         `json:"role"`
	Content messageContent `json:"content"`
}

// maxChoices bounds chat's n, as OpenAI does.
const maxChoices = 128

// messageContent is a message's text: a JSON string, or the text parts of an
// array of content parts joined with spaces.
type messageContent struct{ text string }

func (m *messageContent) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		m.text = ""
		return nil
	}
	switch data[0] {
	case '"':
		return json.Unmarshal(data, &m.text)
	case '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(data, &parts); err != nil {
			return err
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type != "text" && p.Type != "input_text" {
				continue
			}
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(p.Text)
		}
		m.text = sb.String()
		return nil
	default:
		return errors.New("message content must be a string or an array of content parts")
	}
}

// CountWords is the fake's token count: the number of whitespace-separated
// words in s.
func CountWords(s string) int {
	n, in := 0, false
	for i := 0; i < len(s); i++ {
		sp := isSpace(s[i])
		if !sp && !in {
			n++
		}
		in = !sp
	}
	return n
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// EchoReply is the reply content for a last user message text: EchoPrefix
// followed by the words of text joined by single spaces ("echo:" alone when
// text has no words).
func EchoReply(text string) string {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return strings.TrimSpace(EchoPrefix)
	}
	return EchoPrefix + strings.Join(fields, " ")
}

var loremWords = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do
eiusmod tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis
nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat`)

// WordsReply is the reply content for x-fake-words: n: n words cycling
// through a lorem ipsum list, joined by single spaces.
func WordsReply(n int) string {
	var sb strings.Builder
	sb.Grow(n * 7)
	for i := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(loremWords[i%len(loremWords)])
	}
	return sb.String()
}

// PromptTokens is the prompt_tokens the fake reports for messages with the
// given texts: Σ (CountWords(text) + 3).
func PromptTokens(texts ...string) int {
	n := 0
	for _, t := range texts {
		n += CountWords(t) + 3
	}
	return n
}

// truncateWords returns the first n words of a single-spaced reply.
func truncateWords(s string, n int) string {
	if n <= 0 {
		return ""
	}
	seen := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			seen++
			if seen == n {
				return s[:i]
			}
		}
	}
	return s
}

// limitReply applies an output token limit (max_tokens,
// max_completion_tokens, max_output_tokens; -1 for none) to a reply and the
// x-fake-reasoning-tokens count. Like OpenAI, the limit bounds reasoning
// and visible tokens together: reasoning is capped at limit, and the
// visible words at what is left. truncated reports that the visible reply
// was cut.
func limitReply(reply string, limit, reasoning int) (out string, reasoningOut int, truncated bool) {
	if limit < 0 {
		return reply, reasoning, false
	}
	reasoning = min(reasoning, limit)
	if visible := limit - reasoning; CountWords(reply) > visible {
		return truncateWords(reply, visible), reasoning, true
	}
	return reply, reasoning, false
}

// usage is a chat usage object's counts. completion includes reasoning.
type usage struct{ prompt, completion, cached, reasoning int }

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeBadRequest(w, c, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	if req.Model == "" {
		writeBadRequest(w, c, "you must provide a model parameter")
		return
	}
	if len(req.Messages) == 0 {
		writeBadRequest(w, c, "[] is too short - 'messages'")
		return
	}
	n := 1
	if req.N != nil {
		if *req.N < 1 || *req.N > maxChoices {
			writeBadRequest(w, c, strconv.Itoa(*req.N)+" is not in [1, 128] - 'n'")
			return
		}
		n = *req.N
	}
	if c.batch {
		req.Stream = false
	}

	var u usage
	last := ""
	for i := range req.Messages {
		m := &req.Messages[i]
		u.prompt += CountWords(m.Content.text) + 3
		if m.Role == "user" {
			last = m.Content.text
		}
	}
	var reply string
	if c.words >= 0 {
		reply = WordsReply(c.words)
	} else {
		reply = EchoReply(last)
	}
	limit := -1
	if req.MaxCompletionTokens != nil {
		limit = *req.MaxCompletionTokens
	}
	if req.MaxTokens != nil {
		limit = *req.MaxTokens
	}
	finish := "stop"
	var truncated bool
	reply, u.reasoning, truncated = limitReply(reply, limit, c.reasoning)
	if truncated {
		finish = "length"
	}
	u.completion = n*CountWords(reply) + u.reasoning
	u.cached = min(c.cached, u.prompt)

	var idb [32]byte
	id := s.appendID(idb[:0], "chatcmpl-")
	created := time.Now().Unix()
	if req.Stream {
		s.stream(w, r, c, &req, id, created, reply, finish, n, u)
		return
	}

	out := getBuf()
	defer putBuf(out)
	b := out.AvailableBuffer()
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, req.Model)
	b = append(b, `,"choices":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"message":{"role":"assistant","content":`...)
		b = appendJSONString(b, reply)
		b = append(b, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
		b = append(b, finish...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"usage":`...)
	b = appendUsage(b, u)
	b = append(b, `,"service_tier":"default","system_fingerprint":"fp_fake"}`...)
	b = append(b, '\n')
	out.Write(b)
	w.Header()["X-Request-Id"] = []string{"req_" + string(id[len("chatcmpl-"):])}
	ch := u.charge(req.Model, false)
	s.writeBody(w, r, c, "application/json", out.Bytes(), true, &ch)
}

// charge is what OpenAI bills for a chat answer with usage u.
func (u usage) charge(model string, stream bool) Charge {
	return Charge{
		Family:           FamilyChat,
		Model:            model,
		Stream:           stream,
		PromptTokens:     int64(u.prompt),
		CachedTokens:     int64(u.cached),
		CompletionTokens: int64(u.completion),
		ReasoningTokens:  int64(u.reasoning),
	}
}

func appendUsage(b []byte, u usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.completion), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt+u.completion), 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, int64(u.cached), 10)
	b = append(b, `,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":`...)
	b = strconv.AppendInt(b, int64(u.reasoning), 10)
	b = append(b, `,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
	return b
}

// stream writes the SSE reply: a role chunk per choice, one chunk per word
// per choice, a finish chunk per choice, an optional usage chunk, then
// [DONE]. It bills when it ends, however it ends: the prompt in full and
// the words actually written.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, c *controls, req *chatRequest, id []byte, created int64, reply, finish string, n int, u usage) {
	ctx := r.Context()
	sent := 0 // word chunks written
	defer func() {
		ch := u.charge(req.Model, true)
		ch.CompletionTokens = int64(sent + u.reasoning)
		s.bill(r, c, ch)
	}()
	if c.breakAfter == 0 {
		panic(http.ErrAbortHandler)
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Request-Id"] = []string{"req_" + string(id[len("chatcmpl-"):])}
	var ew eventWriter
	ew.start(w, c.enc)

	buf := getBuf()
	defer putBuf(buf)
	// prefix is everything of a chunk before "choices".
	prefix := buf.AvailableBuffer()
	prefix = append(prefix, `data: {"id":"`...)
	prefix = append(prefix, id...)
	prefix = append(prefix, `","object":"chat.completion.chunk","created":`...)
	prefix = strconv.AppendInt(prefix, created, 10)
	prefix = append(prefix, `,"model":`...)
	prefix = appendJSONString(prefix, req.Model)
	prefix = append(prefix, `,"service_tier":"default","system_fingerprint":"fp_fake","choices":`...)
	usageNull := ""
	if includeUsage {
		usageNull = `,"usage":null`
	}

	events := 0
	send := func(b []byte) bool {
		if c.breakAfter >= 0 && events == c.breakAfter {
			ew.flush()
			panic(http.ErrAbortHandler)
		}
		if events > 0 && !sleep(ctx, c.chunkDelay) {
			return false
		}
		if err := ew.event(b); err != nil {
			return false
		}
		events++
		return true
	}
	// Every chunk is built in one reused scratch slice.
	scratch := make([]byte, 0, len(prefix)+256)
	begin := func(i int) []byte {
		b := append(scratch[:0], prefix...)
		b = append(b, `[{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		return append(b, `,"delta":`...)
	}
	end := func(b []byte, finishReason string) []byte {
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		if finishReason == "" {
			b = append(b, "null"...)
		} else {
			b = append(b, '"')
			b = append(b, finishReason...)
			b = append(b, '"')
		}
		b = append(b, "}]"...)
		b = append(b, usageNull...)
		b = append(b, "}\n\n"...)
		scratch = b
		return b
	}

	// The role chunks (the first is event 1).
	for i := range n {
		b := begin(i)
		b = append(b, `{"role":"assistant","content":"","refusal":null}`...)
		if !send(end(b, "")) {
			return
		}
	}
	if c.hold != "" && !s.waitHold(ctx, c.hold) {
		return
	}
	// One chunk per word: the first word, then " word", so that the deltas
	// concatenate to reply.
	for start := 0; start < len(reply); {
		stop := strings.IndexByte(reply[start+1:], ' ')
		if stop < 0 {
			stop = len(reply)
		} else {
			stop += start + 1
		}
		for i := range n {
			b := begin(i)
			b = append(b, `{"content":`...)
			b = appendJSONString(b, reply[start:stop])
			b = append(b, '}')
			if !send(end(b, "")) {
				return
			}
			sent++
		}
		start = stop
	}
	// The finish chunks.
	for i := range n {
		b := begin(i)
		b = append(b, "{}"...)
		if !send(end(b, finish)) {
			return
		}
	}
	if includeUsage {
		b := append(scratch[:0], prefix...)
		b = append(b, `[],"usage":`...)
		b = appendUsage(b, u)
		b = append(b, "}\n\n"...)
		scratch = b
		if !send(b) {
			return
		}
	}
	if !send(doneEvent) {
		return
	}
	if c.breakAfter >= 0 && events == c.breakAfter {
		panic(http.ErrAbortHandler)
	}
	ew.finish()
}

var doneEvent = []byte("data: [DONE]\n\n")
