package transcript

import (
	"encoding/json"
	"strconv"

	"github.com/llm-proxy/llm-proxy/jsonstr"
)

// What each piece of a chat or completions result costs besides its texts
// and index (charged apart): its members' names and punctuation, written
// even when empty, and a comma. The charges are exact (a null that becomes
// a string is refunded the difference), so a result is cut only when it
// would not fit. A tool call is written without its stream index, as in a
// non-stream response, in index order.
var (
	choiceCost = len(`{"index":,"message":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null},`)
	textCost   = len(`{"text":"","index":,"logprobs":null,"finish_reason":null},`)
	refusalKey = len(`,"refusal":""`)
	toolsKey   = len(`,"tool_calls":[]`)
	toolCost   = len(`{"id":"","type":"function","function":{"name":"","arguments":""}},`)
	funcCost   = len(`,"function_call":{"name":"","arguments":""}`)
)

// chatState is what a chat or completions stream has said so far, within
// the cap.
type chatState struct {
	id, model, fingerprint, tier string
	created                      string // a number literal
	choices                      map[int]*choice
	usage, err                   []byte // compact JSON
}

type choice struct {
	content    []byte // text, for completions
	hasContent bool
	refusal    []byte
	hasRefusal bool
	tools      map[int]*toolCall
	fn         *functionCall
	finish     string
}

type toolCall struct {
	id, name string
	args     []byte
}

type functionCall struct {
	name string
	args []byte
}

// chunk is a chat.completion.chunk or text_completion chunk: what the merge
// reads of it.
type chunk struct {
	ID                string          `json:"id"`
	Created           json.Number     `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint"`
	ServiceTier       string          `json:"service_tier"`
	Choices           []chunkChoice   `json:"choices"`
	Usage             json.RawMessage `json:"usage"`
	Error             json.RawMessage `json:"error"`
}

type chunkChoice struct {
	Index int     `json:"index"`
	Text  *string `json:"text"` // completions
	Delta struct {
		Content   *string `json:"content"`
		Refusal   *string `json:"refusal"`
		ToolCalls []struct {
			Index    int    `json:"index"`
			ID       string `json:"id"`
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
		FunctionCall *struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function_call"`
	} `json:"delta"`
	FinishReason string `json:"finish_reason"`
}

// chatChunk merges one chunk. The id, model, created, fingerprint and tier
// of the first chunk that has them stay (every chunk repeats them); usage
// and error, the last.
func (m *Merger) chatChunk(data []byte) {
	var c chunk
	if !unmarshal(data, &c) {
		return
	}
	m.seen = true
	st := &m.chat
	if st.id == "" {
		m.setString(&st.id, c.ID)
	}
	if st.created == "" {
		st.created = number(c.Created)
	}
	if st.model == "" {
		m.setString(&st.model, c.Model)
		m.setModel(c.Model)
	}
	if st.fingerprint == "" {
		m.setString(&st.fingerprint, c.SystemFingerprint)
	}
	if st.tier == "" {
		m.setString(&st.tier, c.ServiceTier)
	}
	m.setRaw(&st.usage, compact(c.Usage))
	m.setRaw(&st.err, compact(c.Error))
	for i := range c.Choices {
		m.chatChoice(&c.Choices[i])
	}
}

func (m *Merger) chatChoice(cc *chunkChoice) {
	if cc.FinishReason != "" {
		if _, ok := m.reasons[cc.Index]; ok || len(m.reasons) < maxReasons {
			if m.reasons == nil {
				m.reasons = make(map[int]string)
			}
			m.reasons[cc.Index] = cc.FinishReason[:min(len(cc.FinishReason), maxSummaryText)]
		}
	}
	ch := m.choice(cc.Index)
	if ch == nil {
		return
	}
	if cc.FinishReason != "" {
		if ch.finish == "" {
			m.setString(&ch.finish, cc.FinishReason)
			if ch.finish != "" {
				m.used -= len(`null`) - len(`""`)
			}
		} else {
			m.setString(&ch.finish, cc.FinishReason)
		}
	}
	if m.kind == Completions {
		if cc.Text != nil {
			ch.hasContent = true
			m.appendText(&ch.content, *cc.Text)
		}
		return
	}
	d := &cc.Delta
	if d.Content != nil {
		if !ch.hasContent {
			ch.hasContent = true
			m.used -= len(`null`) - len(`""`)
		}
		m.appendText(&ch.content, *d.Content)
	}
	if d.Refusal != nil && (ch.hasRefusal || m.charge(refusalKey)) {
		ch.hasRefusal = true
		m.appendText(&ch.refusal, *d.Refusal)
	}
	for _, tc := range d.ToolCalls {
		t := m.toolCall(ch, tc.Index)
		if t == nil {
			continue
		}
		if t.id == "" {
			m.setString(&t.id, tc.ID)
		}
		if t.name == "" {
			m.setString(&t.name, tc.Function.Name)
		}
		m.appendText(&t.args, tc.Function.Arguments)
	}
	if fc := d.FunctionCall; fc != nil {
		if ch.fn == nil {
			if !m.charge(funcCost) {
				return
			}
			ch.fn = &functionCall{}
		}
		if ch.fn.name == "" {
			m.setString(&ch.fn.name, fc.Name)
		}
		m.appendText(&ch.fn.args, fc.Arguments)
	}
}

// choice returns the choice of index, made if the cap has room for it.
func (m *Merger) choice(index int) *choice {
	st := &m.chat
	if ch, ok := st.choices[index]; ok {
		return ch
	}
	cost := choiceCost
	if m.kind == Completions {
		cost = textCost
	}
	if len(st.choices) == 0 {
		cost-- // no comma before the first
	}
	if !m.charge(cost + len(strconv.Itoa(index))) {
		return nil
	}
	if st.choices == nil {
		st.choices = make(map[int]*choice)
	}
	ch := &choice{}
	st.choices[index] = ch
	return ch
}

// toolCall returns the tool call of index in ch, made if the cap has room
// for it.
func (m *Merger) toolCall(ch *choice, index int) *toolCall {
	if t, ok := ch.tools[index]; ok {
		return t
	}
	cost := toolCost
	if ch.tools == nil {
		cost += toolsKey - 1 // and no comma before the first
	}
	if !m.charge(cost) {
		return nil
	}
	if ch.tools == nil {
		ch.tools = make(map[int]*toolCall)
	}
	t := &toolCall{}
	ch.tools[index] = t
	return t
}

func (m *Merger) chatResult() []byte {
	st := &m.chat
	object := "chat.completion"
	if m.kind == Completions {
		object = "text_completion"
	}
	b := make([]byte, 0, m.used+Overhead)
	b = append(b, `{"id":`...)
	b = jsonstr.Append(b, st.id)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = appendNumber(b, st.created)
	b = append(b, `,"model":`...)
	b = jsonstr.Append(b, st.model)
	b = append(b, `,"choices":[`...)
	for i, index := range sortedKeys(st.choices) {
		if i > 0 {
			b = append(b, ',')
		}
		ch := st.choices[index]
		if m.kind == Completions {
			b = append(b, `{"text":`...)
			b = jsonstr.Append(b, string(ch.content))
			b = append(b, `,"index":`...)
			b = appendInt(b, index)
		} else {
			b = append(b, `{"index":`...)
			b = appendInt(b, index)
			b = m.appendMessage(b, ch)
		}
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		b = appendStringOrNull(b, ch.finish, ch.finish != "")
		b = append(b, '}')
	}
	b = append(b, ']')
	if st.usage != nil {
		b = append(b, `,"usage":`...)
		b = append(b, st.usage...)
	}
	b = appendMember(b, "service_tier", st.tier)
	b = appendMember(b, "system_fingerprint", st.fingerprint)
	if st.err != nil {
		b = append(b, `,"error":`...)
		b = append(b, st.err...)
	}
	return append(b, '}')
}

func (m *Merger) appendMessage(b []byte, ch *choice) []byte {
	b = append(b, `,"message":{"role":"assistant","content":`...)
	b = appendStringOrNull(b, string(ch.content), ch.hasContent)
	if ch.hasRefusal {
		b = append(b, `,"refusal":`...)
		b = jsonstr.Append(b, string(ch.refusal))
	}
	if ch.tools != nil {
		b = append(b, `,"tool_calls":[`...)
		for i, index := range sortedKeys(ch.tools) {
			if i > 0 {
				b = append(b, ',')
			}
			t := ch.tools[index]
			b = append(b, `{"id":`...)
			b = jsonstr.Append(b, t.id)
			b = append(b, `,"type":"function","function":{"name":`...)
			b = jsonstr.Append(b, t.name)
			b = append(b, `,"arguments":`...)
			b = jsonstr.Append(b, string(t.args))
			b = append(b, "}}"...)
		}
		b = append(b, ']')
	}
	if ch.fn != nil {
		b = append(b, `,"function_call":{"name":`...)
		b = jsonstr.Append(b, ch.fn.name)
		b = append(b, `,"arguments":`...)
		b = jsonstr.Append(b, string(ch.fn.args))
		b = append(b, '}')
	}
	return append(b, '}')
}
