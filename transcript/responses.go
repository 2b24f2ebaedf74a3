package transcript

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/llm-proxy/llm-proxy/jsonstr"
)

// What each piece of a rebuilt Responses API result costs besides its texts
// and ids (charged apart), a comma included.
var (
	messageCost     = len(`{"id":"","type":"message","status":"","role":"assistant","content":[]},`)
	textPartCost    = len(`{"type":"output_text","text":"","annotations":[]},`)
	refusalPartCost = len(`{"type":"refusal","refusal":""},`)
	callCost        = len(`{"id":"","type":"function_call","status":"","arguments":"","call_id":"","name":""},`)
)

// Kinds of output item rebuilt.
const (
	otherItem = iota // kept as its last event showed it
	messageItem
	callItem // a function call
)

// respState is what a Responses API stream has said so far, within the cap.
type respState struct {
	id, status, model string
	created           string // a number literal
	items             map[int]*item
	usage, incomplete []byte // compact JSON
	err               []byte
	terminal          string // the status of a terminal event read
	asIs              []byte // the terminal event's response, if it fits
}

// item is one output item, by output_index.
type item struct {
	kind       int
	id, status string
	parts      map[int]*part // a message's content, by content_index
	callID     string
	name       string
	args       []byte
	raw        []byte // another item's JSON
}

type part struct {
	refusal bool // a refusal part, else output_text
	text    []byte
}

// respEventJSON is a Responses API streaming event: what the merge reads of
// any of the kinds it handles.
type respEventJSON struct {
	Type         string          `json:"type"`
	Response     json.RawMessage `json:"response"`
	OutputIndex  int             `json:"output_index"`
	ContentIndex int             `json:"content_index"`
	ItemID       string          `json:"item_id"`
	Item         json.RawMessage `json:"item"`
	Part         json.RawMessage `json:"part"`
	Delta        string          `json:"delta"`
	Text         string          `json:"text"`      // response.output_text.done
	Refusal      string          `json:"refusal"`   // response.refusal.done
	Arguments    string          `json:"arguments"` // response.function_call_arguments.done
}

// terminalStatus is the status a terminal event type gives a response, ""
// for other types.
func terminalStatus(typ string) string {
	switch typ {
	case "response.completed":
		return "completed"
	case "response.incomplete":
		return "incomplete"
	case "response.failed":
		return "failed"
	}
	return ""
}

// respEvent merges one event. The event's "type" decides; the SSE event
// name stands in for a payload without one.
func (m *Merger) respEvent(name, data []byte) {
	var e respEventJSON
	if !unmarshal(data, &e) {
		return
	}
	m.seen = true
	typ := e.Type
	if typ == "" {
		typ = string(name)
	}
	switch typ {
	case "response.created", "response.in_progress", "response.queued":
		m.respHeader(e.Response)
	case "response.completed", "response.incomplete", "response.failed":
		m.respTerminal(typ, e.Response)
	case "response.output_item.added", "response.output_item.done":
		m.respItem(e.OutputIndex, e.Item)
	case "response.content_part.added", "response.content_part.done":
		var p struct {
			Type string `json:"type"`
		}
		if unmarshal(e.Part, &p) && (p.Type == "output_text" || p.Type == "refusal") {
			m.respPart(e.OutputIndex, e.ContentIndex, e.ItemID, p.Type == "refusal")
		}
	case "response.output_text.delta", "response.refusal.delta":
		if p := m.respPart(e.OutputIndex, e.ContentIndex, e.ItemID, typ == "response.refusal.delta"); p != nil {
			m.appendText(&p.text, e.Delta)
		}
	case "response.output_text.done", "response.refusal.done":
		// The whole text again: kept only if no delta was read.
		refusal := typ == "response.refusal.done"
		if p := m.respPart(e.OutputIndex, e.ContentIndex, e.ItemID, refusal); p != nil && len(p.text) == 0 {
			m.appendText(&p.text, pick(refusal, e.Refusal, e.Text))
		}
	case "response.function_call_arguments.delta":
		if it := m.respCall(e.OutputIndex, e.ItemID); it != nil {
			m.appendText(&it.args, e.Delta)
		}
	case "response.function_call_arguments.done":
		if it := m.respCall(e.OutputIndex, e.ItemID); it != nil && len(it.args) == 0 {
			m.appendText(&it.args, e.Arguments)
		}
	case "error":
		m.setRaw(&m.resp.err, compact(data))
	}
}

func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}

// respHeader reads the members of a response object that a rebuilt result
// keeps: id, created_at, status, model, usage, incomplete_details, error.
func (m *Merger) respHeader(raw []byte) {
	var h struct {
		ID                string          `json:"id"`
		CreatedAt         json.Number     `json:"created_at"`
		Status            string          `json:"status"`
		Model             string          `json:"model"`
		Usage             json.RawMessage `json:"usage"`
		IncompleteDetails json.RawMessage `json:"incomplete_details"`
		Error             json.RawMessage `json:"error"`
	}
	if !unmarshal(raw, &h) {
		return
	}
	st := &m.resp
	if h.ID != "" {
		m.setString(&st.id, h.ID)
	}
	if n := number(h.CreatedAt); n != "" {
		st.created = n
	}
	if h.Status != "" {
		m.setString(&st.status, h.Status)
	}
	if h.Model != "" {
		m.setString(&st.model, h.Model)
		m.setModel(h.Model)
	}
	m.setRaw(&st.usage, compact(h.Usage))
	m.setRaw(&st.incomplete, compact(h.IncompleteDetails))
	m.setRaw(&st.err, compact(h.Error))
}

// respTerminal reads the event that ends the stream. Its response is the
// result as it came if it fits the cap (and what was rebuilt is let go);
// else the rebuilt result takes its status, usage and details.
func (m *Merger) respTerminal(typ string, raw []byte) {
	st := &m.resp
	m.done = true
	st.terminal = terminalStatus(typ)
	m.respHeader(raw)
	if st.status == "" || st.status == "in_progress" || st.status == "queued" {
		m.setString(&st.status, st.terminal)
	}
	if raw = bytes.TrimSpace(raw); len(raw) > 0 && len(raw) <= m.max && raw[0] == '{' {
		st.asIs = raw // a copy: Unmarshal copies a RawMessage
		st.items = nil
	}
}

// respDropped reads what it can of an event too large to keep: if its name
// or the type at the head of its data is terminal, the stream ended with that
// status.
func (m *Merger) respDropped(e event) {
	typ := string(e.name)
	if typ == "" {
		typ = sniffType(e.data)
	}
	if s := terminalStatus(typ); s != "" {
		m.done = true
		m.resp.terminal = s
		m.setString(&m.resp.status, s)
	}
}

// sniffType returns the string value of the first "type" member in head, the
// start of a JSON object, or "".
func sniffType(head []byte) string {
	i := bytes.Index(head, []byte(`"type"`))
	if i < 0 {
		return ""
	}
	rest := strings.TrimLeft(string(head[i+len(`"type"`):]), " \t\r\n")
	rest, ok := strings.CutPrefix(rest, ":")
	if !ok {
		return ""
	}
	rest, ok = strings.CutPrefix(strings.TrimLeft(rest, " \t\r\n"), `"`)
	if !ok {
		return ""
	}
	typ, _, ok := strings.Cut(rest, `"`)
	if !ok {
		return ""
	}
	return typ
}

// respItem merges an output_item.added or .done event: the item's id and
// status, a function call's name, call id and arguments, a message's parts
// if no delta filled them, another item as it is.
func (m *Merger) respItem(index int, raw []byte) {
	var v struct {
		ID        string `json:"id"`
		Type      string `json:"type"`
		Status    string `json:"status"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Content   []struct {
			Type    string `json:"type"`
			Text    string `json:"text"`
			Refusal string `json:"refusal"`
		} `json:"content"`
	}
	if !unmarshal(raw, &v) {
		return
	}
	it := m.item(index, itemKind(v.Type))
	if it == nil {
		return
	}
	if it.id == "" {
		m.setString(&it.id, v.ID)
	}
	if v.Status != "" && it.kind != otherItem {
		m.setString(&it.status, v.Status)
	}
	switch it.kind {
	case messageItem:
		if !it.hasText() {
			for ci, c := range v.Content {
				refusal := c.Type == "refusal"
				if !refusal && c.Type != "output_text" {
					continue
				}
				if p := m.part(it, ci, refusal); p != nil {
					m.appendText(&p.text, pick(refusal, c.Refusal, c.Text))
				}
			}
		}
	case callItem:
		if it.callID == "" {
			m.setString(&it.callID, v.CallID)
		}
		if it.name == "" {
			m.setString(&it.name, v.Name)
		}
		if len(it.args) == 0 {
			m.appendText(&it.args, v.Arguments)
		}
	default:
		m.setRaw(&it.raw, compact(raw))
	}
}

func itemKind(typ string) int {
	switch typ {
	case "message":
		return messageItem
	case "function_call":
		return callItem
	}
	return otherItem
}

func (it *item) hasText() bool {
	for _, p := range it.parts {
		if len(p.text) > 0 {
			return true
		}
	}
	return false
}

// item returns the output item at index, made of kind if the cap has room;
// nil if there is no room, or the item at index is of another kind.
func (m *Merger) item(index, kind int) *item {
	st := &m.resp
	if it, ok := st.items[index]; ok {
		if it.kind != kind {
			return nil
		}
		return it
	}
	cost := 1 // a comma; another item's JSON is charged apart
	switch kind {
	case messageItem:
		cost = messageCost
	case callItem:
		cost = callCost
	}
	if len(st.items) == 0 {
		cost-- // no comma before the first
	}
	if !m.charge(cost) {
		return nil
	}
	if st.items == nil {
		st.items = make(map[int]*item)
	}
	it := &item{kind: kind}
	st.items[index] = it
	return it
}

// respPart returns the content part at contentIndex of the message at
// outputIndex, made (with the message) if needed and the cap has room.
func (m *Merger) respPart(outputIndex, contentIndex int, itemID string, refusal bool) *part {
	it := m.item(outputIndex, messageItem)
	if it == nil {
		return nil
	}
	if it.id == "" {
		m.setString(&it.id, itemID)
	}
	return m.part(it, contentIndex, refusal)
}

func (m *Merger) part(it *item, index int, refusal bool) *part {
	if p, ok := it.parts[index]; ok {
		if p.refusal != refusal {
			return nil
		}
		return p
	}
	cost := pick(refusal, refusalPartCost, textPartCost)
	if len(it.parts) == 0 {
		cost-- // no comma before the first
	}
	if !m.charge(cost) {
		return nil
	}
	if it.parts == nil {
		it.parts = make(map[int]*part)
	}
	p := &part{refusal: refusal}
	it.parts[index] = p
	return p
}

// respCall returns the function call at outputIndex, made if needed and the
// cap has room.
func (m *Merger) respCall(outputIndex int, itemID string) *item {
	it := m.item(outputIndex, callItem)
	if it != nil && it.id == "" {
		m.setString(&it.id, itemID)
	}
	return it
}

func (m *Merger) respResult() []byte {
	st := &m.resp
	b := make([]byte, 0, m.used+Overhead)
	b = append(b, `{"id":`...)
	b = jsonstr.Append(b, st.id)
	b = append(b, `,"object":"response","created_at":`...)
	b = appendNumber(b, st.created)
	b = appendMember(b, "status", st.status)
	b = append(b, `,"model":`...)
	b = jsonstr.Append(b, st.model)
	b = append(b, `,"output":[`...)
	n := 0
	for _, index := range sortedKeys(st.items) {
		it := st.items[index]
		if it.kind == otherItem && it.raw == nil {
			continue // its JSON did not fit
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendItem(b, it)
	}
	b = append(b, ']')
	for _, member := range []struct {
		key string
		raw []byte
	}{{"usage", st.usage}, {"incomplete_details", st.incomplete}, {"error", st.err}} {
		if member.raw != nil {
			b = append(b, `,"`...)
			b = append(b, member.key...)
			b = append(b, `":`...)
			b = append(b, member.raw...)
		}
	}
	return append(b, '}')
}

func appendItem(b []byte, it *item) []byte {
	switch it.kind {
	case messageItem:
		b = append(b, `{"id":`...)
		b = jsonstr.Append(b, it.id)
		b = append(b, `,"type":"message","status":`...)
		b = jsonstr.Append(b, it.status)
		b = append(b, `,"role":"assistant","content":[`...)
		for i, ci := range sortedKeys(it.parts) {
			if i > 0 {
				b = append(b, ',')
			}
			p := it.parts[ci]
			if p.refusal {
				b = append(b, `{"type":"refusal","refusal":`...)
				b = jsonstr.Append(b, string(p.text))
				b = append(b, '}')
			} else {
				b = append(b, `{"type":"output_text","text":`...)
				b = jsonstr.Append(b, string(p.text))
				b = append(b, `,"annotations":[]}`...)
			}
		}
		return append(b, "]}"...)
	case callItem:
		b = append(b, `{"id":`...)
		b = jsonstr.Append(b, it.id)
		b = append(b, `,"type":"function_call","status":`...)
		b = jsonstr.Append(b, it.status)
		b = append(b, `,"arguments":`...)
		b = jsonstr.Append(b, string(it.args))
		b = append(b, `,"call_id":`...)
		b = jsonstr.Append(b, it.callID)
		b = append(b, `,"name":`...)
		b = jsonstr.Append(b, it.name)
		return append(b, '}')
	}
	return append(b, it.raw...)
}
