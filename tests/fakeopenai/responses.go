package fakeopenai

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Responses API statuses.
const (
	statusQueued     = "queued"
	statusInProgress = "in_progress"
	statusCompleted  = "completed"
	statusIncomplete = "incomplete"
	statusCancelled  = "cancelled"
)

type responsesRequest struct {
	Model              string            `json:"model"`
	Input              *responsesInput   `json:"input"`
	Instructions       *string           `json:"instructions"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	Stream             bool              `json:"stream"`
	Background         bool              `json:"background"`
	Store              *bool             `json:"store"`
	Metadata           map[string]string `json:"metadata"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Temperature        *float64          `json:"temperature"`
	TopP               *float64          `json:"top_p"`
	User               *string           `json:"user"`
}

// inputMessage is one message of a Responses input, as text.
type inputMessage struct{ role, text string }

// responsesInput is a Responses "input": a string (one user message) or an
// array of input items, of which the messages count (their content a
// string or content parts, of which the input_text parts count).
type responsesInput struct{ msgs []inputMessage }

func (in *responsesInput) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return errors.New("empty input")
	}
	switch data[0] {
	case '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		in.msgs = []inputMessage{{role: "user", text: s}}
		return nil
	case '[':
		var items []struct {
			Type    string         `json:"type"`
			Role    string         `json:"role"`
			Content messageContent `json:"content"`
		}
		if err := json.Unmarshal(data, &items); err != nil {
			return err
		}
		in.msgs = make([]inputMessage, 0, len(items))
		for _, it := range items {
			if (it.Type != "" && it.Type != "message") || it.Role == "" {
				continue
			}
			in.msgs = append(in.msgs, inputMessage{role: it.Role, text: it.Content.text})
		}
		return nil
	}
	return errors.New("input must be a string or an array of input items")
}

// responseObject is OpenAI's Response object, fields in OpenAI's order.
type responseObject struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Background         bool               `json:"background"`
	Error              *struct{}          `json:"error"`
	IncompleteDetails  *incompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []outputItem       `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Reasoning          reasoningConfig    `json:"reasoning"`
	ServiceTier        string             `json:"service_tier"`
	Store              bool               `json:"store"`
	Temperature        float64            `json:"temperature"`
	Text               textConfig         `json:"text"`
	ToolChoice         string             `json:"tool_choice"`
	Tools              []struct{}         `json:"tools"`
	TopP               float64            `json:"top_p"`
	Truncation         string             `json:"truncation"`
	Usage              *responseUsage     `json:"usage"`
	User               *string            `json:"user"`
	Metadata           map[string]string  `json:"metadata"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

type reasoningConfig struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

type textConfig struct {
	Format struct {
		Type string `json:"type"`
	} `json:"format"`
}

type outputItem struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Status  string          `json:"status"`
	Content []outputContent `json:"content"`
	Role    string          `json:"role"`
}

type outputContent struct {
	Type        string     `json:"type"`
	Annotations []struct{} `json:"annotations"`
	Logprobs    []struct{} `json:"logprobs"`
	Text        string     `json:"text"`
}

type responseUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

// pending is o as it looks before it is done: status st, no output, no
// usage.
func (o responseObject) pending(st string) responseObject {
	o.Status = st
	o.Output = []outputItem{}
	o.Usage = nil
	o.IncompleteDetails = nil
	return o
}

// storedResponse is a response kept for GET, cancel and delete.
type storedResponse struct {
	final      responseObject // as it is once done
	status     string         // now
	background bool
	pollsLeft  int64  // GETs still needed to finish a background response
	charge     Charge // billed when a background response finishes
	input      []inputMessage
	inputIDs   []string
}

func (sr *storedResponse) render() responseObject {
	if sr.status == sr.final.Status {
		return sr.final
	}
	return sr.final.pending(sr.status)
}

func (sr *storedResponse) unfinished() bool {
	return sr.status == statusQueued || sr.status == statusInProgress
}

func (s *Server) routeResponses(w http.ResponseWriter, r *http.Request, body []byte, c *controls, rest string) {
	if rest == "" {
		if allow(w, r, c, http.MethodPost) {
			s.createResponse(w, r, body, c)
		}
		return
	}
	id, sub, ok := cutID(rest)
	if !ok {
		writeNotFound(w, r, c)
		return
	}
	switch {
	case sub == "" && r.Method == http.MethodGet:
		s.getResponse(w, r, c, id)
	case sub == "" && r.Method == http.MethodDelete:
		s.deleteResponse(w, r, c, id)
	case sub == "cancel" && r.Method == http.MethodPost:
		s.cancelResponse(w, r, c, id)
	case sub == "input_items" && r.Method == http.MethodGet:
		s.responseInputItems(w, r, c, id)
	case sub == "" || sub == "cancel" || sub == "input_items":
		writeMethodError(w, r, c)
	default:
		writeNotFound(w, r, c)
	}
}

func (s *Server) createResponse(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeBadRequest(w, c, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	if req.Model == "" {
		writeBadRequest(w, c, "Missing required parameter: 'model'.")
		return
	}
	if req.Input == nil {
		writeBadRequest(w, c, "Missing required parameter: 'input'.")
		return
	}
	store := req.Store == nil || *req.Store
	if c.batch {
		req.Stream, req.Background, store = false, false, false
	}
	if req.Background && !store {
		writeBadRequest(w, c, "Background mode requires store=true.")
		return
	}

	// Tokens: like chat, every message (and the instructions) is its words
	// plus 3.
	in := 0
	last := ""
	if req.Instructions != nil {
		in += CountWords(*req.Instructions) + 3
	}
	for _, m := range req.Input.msgs {
		in += CountWords(m.text) + 3
		if m.role == "user" {
			last = m.text
		}
	}
	reply := EchoReply(last)
	if c.words >= 0 {
		reply = WordsReply(c.words)
	}
	limit := -1
	if req.MaxOutputTokens != nil {
		limit = *req.MaxOutputTokens
	}
	reply, reasoning, truncated := limitReply(reply, limit, c.reasoning)

	u := &responseUsage{InputTokens: in, OutputTokens: CountWords(reply) + reasoning}
	u.InputTokensDetails.CachedTokens = min(c.cached, in)
	u.OutputTokensDetails.ReasoningTokens = reasoning
	u.TotalTokens = u.InputTokens + u.OutputTokens

	obj := responseObject{
		ID:                 s.newID("resp_"),
		Object:             "response",
		CreatedAt:          time.Now().Unix(),
		Status:             statusCompleted,
		Background:         req.Background,
		Instructions:       req.Instructions,
		MaxOutputTokens:    req.MaxOutputTokens,
		Model:              req.Model,
		ParallelToolCalls:  true,
		PreviousResponseID: req.PreviousResponseID,
		ServiceTier:        "default",
		Store:              store,
		Temperature:        1,
		ToolChoice:         "auto",
		Tools:              []struct{}{},
		TopP:               1,
		Truncation:         "disabled",
		Usage:              u,
		User:               req.User,
		Metadata:           req.Metadata,
	}
	obj.Text.Format.Type = "text"
	if req.Temperature != nil {
		obj.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		obj.TopP = *req.TopP
	}
	if obj.Metadata == nil {
		obj.Metadata = map[string]string{}
	}
	msg := outputItem{
		ID:      s.newID("msg_"),
		Type:    "message",
		Status:  statusCompleted,
		Content: []outputContent{newOutputText(reply)},
		Role:    "assistant",
	}
	if truncated {
		obj.Status = statusIncomplete
		obj.IncompleteDetails = &incompleteDetails{Reason: "max_output_tokens"}
		msg.Status = statusIncomplete
	}
	obj.Output = []outputItem{msg}

	ch := Charge{
		Family:           FamilyResponses,
		Model:            req.Model,
		Background:       req.Background,
		Stream:           req.Stream,
		PromptTokens:     int64(u.InputTokens),
		CachedTokens:     int64(u.InputTokensDetails.CachedTokens),
		CompletionTokens: int64(u.OutputTokens),
		ReasoningTokens:  int64(reasoning),
	}
	sr := &storedResponse{final: obj, status: obj.Status, background: req.Background, input: req.Input.msgs}
	w.Header()["X-Request-Id"] = []string{"req_" + strings.TrimPrefix(obj.ID, "resp_")}

	switch {
	case req.Stream:
		s.streamResponse(w, r, c, sr, ch, store)
	case req.Background:
		// Answered at once, queued; billed when a GET completes it.
		ch.Key = bearer(r)
		sr.charge = ch
		sr.status = statusQueued
		sr.pollsLeft = s.bgPolls.Load()
		s.storeResponse(sr)
		s.writeRaw(w, r, c, marshalLine(sr.render()))
	default:
		if store {
			s.storeResponse(sr)
		}
		s.writeBody(w, r, c, "application/json", marshalLine(obj), true, &ch)
	}
}

func newOutputText(text string) outputContent {
	return outputContent{Type: "output_text", Annotations: []struct{}{}, Logprobs: []struct{}{}, Text: text}
}

func (s *Server) storeResponse(sr *storedResponse) {
	sr.inputIDs = make([]string, len(sr.input))
	for i := range sr.inputIDs {
		sr.inputIDs[i] = s.newID("msg_")
	}
	s.omu.Lock()
	s.responses[sr.final.ID] = sr
	s.omu.Unlock()
}

// marshalLine is json.Marshal plus a newline; the fake's own values always
// marshal.
func marshalLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fakeopenai: marshal: " + err.Error())
	}
	return append(b, '\n')
}

func writeResponseNotFound(w http.ResponseWriter, c *controls, id string) {
	writeError(w, c.enc, http.StatusNotFound, "Response with id '"+id+"' not found.", "invalid_request_error", "")
}

// getResponse answers GET /v1/responses/{id}. Each GET of an unfinished
// background response advances it one step; the step that completes it bills
// it.
func (s *Server) getResponse(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	s.omu.Lock()
	sr := s.responses[id]
	if sr == nil {
		s.omu.Unlock()
		writeResponseNotFound(w, c, id)
		return
	}
	var done bool
	if sr.background && sr.unfinished() {
		sr.pollsLeft--
		if sr.pollsLeft <= 0 {
			sr.status = sr.final.Status
			done = true
		} else {
			sr.status = statusInProgress
		}
	}
	obj, ch := sr.render(), sr.charge
	s.omu.Unlock()
	if done {
		s.addCharge(ch)
	}
	s.writeRaw(w, r, c, marshalLine(obj))
}

// cancelResponse answers POST /v1/responses/{id}/cancel: an unfinished
// background response becomes "cancelled" and is never billed; a finished
// one is answered unchanged. Like OpenAI, only background responses can be
// cancelled.
func (s *Server) cancelResponse(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	s.omu.Lock()
	sr := s.responses[id]
	if sr == nil {
		s.omu.Unlock()
		writeResponseNotFound(w, c, id)
		return
	}
	if !sr.background {
		s.omu.Unlock()
		writeBadRequest(w, c, "Only responses created with background=true can be cancelled.")
		return
	}
	if sr.unfinished() {
		sr.status = statusCancelled
	}
	obj := sr.render()
	s.omu.Unlock()
	s.writeRaw(w, r, c, marshalLine(obj))
}

// deleteResponse answers DELETE /v1/responses/{id}. A deleted unfinished
// background response is never billed.
func (s *Server) deleteResponse(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	s.omu.Lock()
	_, ok := s.responses[id]
	delete(s.responses, id)
	s.omu.Unlock()
	if !ok {
		writeResponseNotFound(w, c, id)
		return
	}
	s.writeRaw(w, r, c, marshalLine(deletedObject{ID: id, Object: "response", Deleted: true}))
}

// deletedObject answers a DELETE.
type deletedObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}

// listObject is OpenAI's cursor page of objects.
type listObject[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func newList[T any](data []T, id func(*T) string) listObject[T] {
	l := listObject[T]{Object: "list", Data: data}
	if l.Data == nil {
		l.Data = []T{}
	}
	if len(data) > 0 {
		first, last := id(&data[0]), id(&data[len(data)-1])
		l.FirstID, l.LastID = &first, &last
	}
	return l
}

type inputItem struct {
	ID      string         `json:"id"`
	Type    string         `json:"type"`
	Role    string         `json:"role"`
	Status  string         `json:"status"`
	Content []inputContent `json:"content"`
}

type inputContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// responseInputItems answers GET /v1/responses/{id}/input_items: the input
// messages, newest first (order=asc for oldest first), all on one page.
func (s *Server) responseInputItems(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	s.omu.Lock()
	sr := s.responses[id]
	var items []inputItem
	if sr != nil {
		for i, m := range sr.input {
			items = append(items, inputItem{
				ID: sr.inputIDs[i], Type: "message", Role: m.role, Status: statusCompleted,
				Content: []inputContent{{Type: "input_text", Text: m.text}},
			})
		}
	}
	s.omu.Unlock()
	if sr == nil {
		writeResponseNotFound(w, c, id)
		return
	}
	if r.URL.Query().Get("order") != "asc" {
		slices.Reverse(items)
	}
	s.writeRaw(w, r, c, marshalLine(newList(items, func(it *inputItem) string { return it.ID })))
}

// streamEvent is one Responses streaming event; unused fields are omitted.
type streamEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *responseObject `json:"response,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	Item           *outputItem     `json:"item,omitempty"`
	Part           *outputContent  `json:"part,omitempty"`
	Delta          *string         `json:"delta,omitempty"`
	Text           *string         `json:"text,omitempty"`
	Logprobs       *[]struct{}     `json:"logprobs,omitempty"`
}

// streamResponse writes OpenAI's Responses event sequence: response.created,
// response.in_progress, response.output_item.added,
// response.content_part.added, one response.output_text.delta per word,
// response.output_text.done, response.content_part.done,
// response.output_item.done, then response.completed (response.incomplete
// when max_output_tokens cut it). Every event has an "event:" line and a
// sequence_number from 0. Hold, break and chunk delay work as for chat; it
// bills when it ends, however it ends.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, c *controls, sr *storedResponse, ch Charge, store bool) {
	ctx := r.Context()
	final := &sr.final
	sent := 0 // delta events written
	defer func() {
		ch.CompletionTokens = int64(sent) + ch.ReasoningTokens
		s.bill(r, c, ch)
	}()
	if c.breakAfter == 0 {
		panic(http.ErrAbortHandler)
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache"}
	var ew eventWriter
	ew.start(w, c.enc)

	events := 0
	var b []byte
	send := func(ev *streamEvent) bool {
		if c.breakAfter >= 0 && events == c.breakAfter {
			ew.flush()
			panic(http.ErrAbortHandler)
		}
		if events > 0 && !sleep(ctx, c.chunkDelay) {
			return false
		}
		ev.SequenceNumber = events
		data, err := json.Marshal(ev)
		if err != nil {
			panic("fakeopenai: marshal: " + err.Error())
		}
		b = append(b[:0], "event: "...)
		b = append(b, ev.Type...)
		b = append(b, "\ndata: "...)
		b = append(b, data...)
		b = append(b, "\n\n"...)
		if err := ew.event(b); err != nil {
			return false
		}
		events++
		return true
	}

	zero := 0
	noLogprobs := []struct{}{}
	msg := final.Output[0]
	text := msg.Content[0].Text
	pending := final.pending(statusInProgress)
	if !send(&streamEvent{Type: "response.created", Response: &pending}) {
		return
	}
	if c.hold != "" && !s.waitHold(ctx, c.hold) {
		return
	}
	if !send(&streamEvent{Type: "response.in_progress", Response: &pending}) {
		return
	}
	item := msg
	item.Status = statusInProgress
	item.Content = []outputContent{}
	if !send(&streamEvent{Type: "response.output_item.added", OutputIndex: &zero, Item: &item}) {
		return
	}
	part := newOutputText("")
	if !send(&streamEvent{Type: "response.content_part.added", ItemID: msg.ID, OutputIndex: &zero, ContentIndex: &zero, Part: &part}) {
		return
	}
	for start := 0; start < len(text); {
		stop := strings.IndexByte(text[start+1:], ' ')
		if stop < 0 {
			stop = len(text)
		} else {
			stop += start + 1
		}
		delta := text[start:stop]
		if !send(&streamEvent{Type: "response.output_text.delta", ItemID: msg.ID, OutputIndex: &zero, ContentIndex: &zero, Delta: &delta, Logprobs: &noLogprobs}) {
			return
		}
		sent++
		start = stop
	}
	if !send(&streamEvent{Type: "response.output_text.done", ItemID: msg.ID, OutputIndex: &zero, ContentIndex: &zero, Text: &text, Logprobs: &noLogprobs}) {
		return
	}
	part = msg.Content[0]
	if !send(&streamEvent{Type: "response.content_part.done", ItemID: msg.ID, OutputIndex: &zero, ContentIndex: &zero, Part: &part}) {
		return
	}
	if !send(&streamEvent{Type: "response.output_item.done", OutputIndex: &zero, Item: &msg}) {
		return
	}
	last := "response.completed"
	if final.Status == statusIncomplete {
		last = "response.incomplete"
	}
	if !send(&streamEvent{Type: last, Response: final}) {
		return
	}
	if c.breakAfter >= 0 && events == c.breakAfter {
		panic(http.ErrAbortHandler)
	}
	ew.finish()
	if store {
		s.storeResponse(sr)
	}
}
