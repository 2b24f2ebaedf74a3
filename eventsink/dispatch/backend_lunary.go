package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// DefaultLunaryURL is the base URL of Lunary's hosted API, as its SDKs use it.
const DefaultLunaryURL = "https://api.lunary.ai"

// Lunary sends events to Lunary's run ingestion API: one POST of a whole
// batch to {base}/v1/runs/ingest, body {"events": [...]}, authorised with
// "Authorization: Bearer <project key>" — the shape Lunary's SDKs send and
// its custom-integration documentation gives (backend:
// api/v1/runs/ingest.ts).
//
// Each usage event becomes one LLM run of two run events sharing a runId
// (see [RunID]):
//
//   - "start" at the request's start: name (the model; the response's model
//     when the request named none), userId (the end user the request named,
//     else the token's public id), tags ["project:<id>", "token:<id>"],
//     metadata (request id, project, token, event id, method, path, status,
//     stream, cache status, outcome, usage source, cost, price version,
//     ttfb, response model, finish reasons, end user, trace and span id,
//     limiter decision, and the capture's content types, sizes and
//     truncation flags), runtime "llm-proxy-dispatch"; with a captured JSON
//     request also input and params (below);
//   - then, latency_ms later, "end" with tokensUsage {prompt, completion,
//     and promptCached when some were cached} and, with a captured JSON
//     response, output — or "error" with the HTTP status, the error code and
//     the error body's message when the client got a status ≥ 400.
//
// input is the conversation in Lunary's message format ({role, content,
// tool_calls, tool_call_id, name}, content a string or OpenAI's list of
// parts): chat completions' messages as sent; the Responses API's
// instructions (as a system message) and input (a string, or its message,
// function_call and function_call_output items); legacy completions' prompt
// as user messages; for embeddings and other APIs the request's "input", or
// the whole request. params are the request's other fields (temperature,
// max_tokens, tools, tool_choice, response_format, …) minus the model,
// content, user and stream flags. output is the assistant's message (an
// array of them when there are several choices); for the Responses API its
// output text, refusals and function calls as one message; for other APIs
// but embeddings the response body itself. A body the capture kept only as
// metadata (not JSON, or cut at the cap mid-document) is not sent; its
// metadata is. The client address is never sent.
//
// The runId is the idempotency key: Lunary refuses a second "start" for a
// run it has ("Run with this ID already exists"), and a repeated "end" sets
// the same values again. Lunary answers 200 with a result per run event;
// failures other than that duplicate are retried for their entry.
type Lunary struct {
	url    string
	key    string
	client *http.Client
	now    func() time.Time
}

// LunaryOptions configure [NewLunary].
type LunaryOptions struct {
	// URL is the API base (empty: [DefaultLunaryURL]).
	URL string
	// APIKey is the project's key, sent as a bearer token.
	APIKey string
	HTTPOptions
	// Now places events that carry no time (nil: time.Now).
	Now func() time.Time
}

// NewLunary checks the options and returns the backend.
func NewLunary(o LunaryOptions) (*Lunary, error) {
	endpoint, err := vendorEndpoint("lunary", o.URL, DefaultLunaryURL, "/v1/runs/ingest", o.APIKey)
	if err != nil {
		return nil, err
	}
	return &Lunary{url: endpoint, key: o.APIKey, client: o.client(), now: orNow(o.Now)}, nil
}

// Name returns "lunary".
func (l *Lunary) Name() string { return "lunary" }

type lunaryEvent struct {
	Type        string         `json:"type"`
	Event       string         `json:"event"`
	RunID       string         `json:"runId"`
	Timestamp   string         `json:"timestamp"`
	Name        string         `json:"name,omitempty"`
	UserID      string         `json:"userId,omitempty"`
	Runtime     string         `json:"runtime,omitempty"`
	Tags        []string       `json:"tags,omitempty"`
	Metadata    map[string]any `json:"metadata,omitempty"`
	Input       any            `json:"input,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
	Output      any            `json:"output,omitempty"`
	TokensUsage *lunaryTokens  `json:"tokensUsage,omitempty"`
	Error       *lunaryError   `json:"error,omitempty"`
}

type lunaryTokens struct {
	Prompt       int64 `json:"prompt"`
	Completion   int64 `json:"completion"`
	PromptCached int64 `json:"promptCached,omitempty"`
}

type lunaryError struct {
	Message string `json:"message"`
}

type lunaryResponse struct {
	Results []struct {
		ID      string `json:"id"`
		Success bool   `json:"success"`
		Error   string `json:"error"`
	} `json:"results"`
}

const lunaryTime = "2006-01-02T15:04:05.000Z07:00"

// lunaryEvents maps one usage event, delivered under entry id id, to its
// start and end (or error) events.
func lunaryEvents(id string, ev *llmproxyv1.UsageEvent, now time.Time) []lunaryEvent {
	start, end := span(ev, now)
	runID := RunID(id)
	x := decodeCapture(ev)
	name := ev.GetModel()
	if name == "" {
		name = ev.GetResponseModel()
	}
	first := lunaryEvent{
		Type: "llm", Event: "start", RunID: runID, Timestamp: start.Format(lunaryTime),
		Name: name, UserID: endUser(ev), Runtime: userAgent, Metadata: lunaryMetadata(id, ev),
		Tags: lunaryTags(ev),
	}
	first.Input, first.Params = lunaryInput(x)
	last := lunaryEvent{Type: "llm", RunID: runID, Timestamp: end.Format(lunaryTime), Name: name}
	if ev.GetStatus() >= 400 {
		last.Event = "error"
		last.Error = &lunaryError{Message: "HTTP " + strconv.Itoa(int(ev.GetStatus()))}
		if code := ev.GetErrorCode(); code != "" {
			last.Error.Message += ": " + code
		}
		if msg := x.errorMessage(); msg != "" {
			last.Error.Message += ": " + msg
		}
	} else {
		u := ev.GetUsage()
		last.Event = "end"
		last.TokensUsage = &lunaryTokens{Prompt: u.GetPromptTokens(), Completion: u.GetCompletionTokens(), PromptCached: u.GetCachedTokens()}
		last.Output = lunaryOutput(x, ev.GetFinishReasons())
	}
	return []lunaryEvent{first, last}
}

// endUser is who Lunary and Helicone count the request for: the end user
// the request body named, else the proxy token's public id.
func endUser(ev *llmproxyv1.UsageEvent) string {
	if u := ev.GetEndUser(); u != "" {
		return u
	}
	return ev.GetTokenId()
}

func lunaryTags(ev *llmproxyv1.UsageEvent) []string {
	var tags []string
	if p := ev.GetProjectId(); p != "" {
		tags = append(tags, "project:"+p)
	}
	if t := ev.GetTokenId(); t != "" {
		tags = append(tags, "token:"+t)
	}
	return tags
}

// lunaryMetadata is the start event's metadata: primitive values (and one
// list of strings), the only ones Lunary keeps.
func lunaryMetadata(id string, ev *llmproxyv1.UsageEvent) map[string]any {
	md := map[string]any{"event_id": id, "status": int64(ev.GetStatus()), "stream": ev.GetStream()}
	for k, v := range map[string]string{
		"request_id": ev.GetRequestId(), "project_id": ev.GetProjectId(), "token_id": ev.GetTokenId(),
		"method": ev.GetMethod(), "path": ev.GetPath(), "usage_source": ev.GetUsageSource(),
		"cache_status": ev.GetCacheStatus(), "outcome": ev.GetOutcome(), "price_version": ev.GetPriceVersion(),
		"response_model": ev.GetResponseModel(), "end_user": ev.GetEndUser(), "trace_id": ev.GetTraceId(),
		"span_id": ev.GetSpanId(), "limit_decision": ev.GetLimitDecision(),
	} {
		if v != "" {
			md[k] = v
		}
	}
	if c := ev.GetCostUsd(); c != 0 {
		md["cost_usd"] = c
	}
	if t := ev.GetTtfbMs(); t > 0 {
		md["ttfb_ms"] = t
	}
	if fr := ev.GetFinishReasons(); len(fr) > 0 {
		md["finish_reasons"] = fr
	}
	if c := ev.GetCapture(); c != nil {
		md["request_truncated"] = c.GetRequestTruncated()
		md["response_truncated"] = c.GetResponseTruncated()
		md["request_bytes"] = c.GetRequestBytes()
		md["response_bytes"] = c.GetResponseBytes()
		if ct := c.GetRequestContentType(); ct != "" {
			md["request_content_type"] = ct
		}
		if ct := c.GetResponseContentType(); ct != "" {
			md["response_content_type"] = ct
		}
	}
	return md
}

// lunaryInput is the run's input and params from the captured request; nil
// when none was captured as JSON.
func lunaryInput(x exchange) (input any, params map[string]any) {
	if x.request == nil {
		return nil, nil
	}
	switch x.api {
	case apiChat, apiResponses, apiCompletions:
		var msgs []map[string]any
		if s := x.instructions(); s != "" {
			msgs = append(msgs, map[string]any{"role": "system", "content": s})
		}
		for _, m := range x.inputMessages() {
			msgs = append(msgs, lunaryMessage(m))
		}
		if len(msgs) > 0 {
			input = msgs
		}
		return input, x.requestParams()
	case apiEmbeddings:
		return x.request["input"], x.requestParams()
	}
	return x.request, nil
}

// lunaryOutput is the run's output from the captured response; nil when
// none was captured as JSON, and for embeddings (vectors are no output to
// read).
func lunaryOutput(x exchange, finishReasons []string) any {
	if x.response == nil {
		return nil
	}
	switch x.api {
	case apiChat, apiResponses, apiCompletions:
		msgs := x.outputMessages(finishReasons)
		switch len(msgs) {
		case 0:
			return nil
		case 1:
			return lunaryMessage(msgs[0])
		}
		out := make([]map[string]any, len(msgs))
		for i, m := range msgs {
			out[i] = lunaryMessage(m)
		}
		return out
	case apiEmbeddings:
		return nil
	}
	return x.response
}

// lunaryMessage writes m in Lunary's message format (OpenAI's chat message).
func lunaryMessage(m message) map[string]any {
	out := map[string]any{"role": m.role}
	if m.content != nil {
		out["content"] = m.content
	}
	if len(m.toolCalls) > 0 {
		calls := make([]map[string]any, len(m.toolCalls))
		for i, c := range m.toolCalls {
			calls[i] = map[string]any{"id": c.id, "type": "function",
				"function": map[string]any{"name": c.name, "arguments": c.arguments}}
		}
		out["tool_calls"] = calls
	}
	if m.toolCallID != "" {
		out["tool_call_id"] = m.toolCallID
	}
	if m.name != "" {
		out["name"] = m.name
	}
	return out
}

// Deliver POSTs the batch in one request.
func (l *Lunary) Deliver(ctx context.Context, entries []Entry) error {
	failed := map[string]error{}
	events := make([]lunaryEvent, 0, 2*len(entries))
	byRun := map[string]string{} // runId → entry id
	now := l.now()
	for _, e := range entries {
		ev, err := decodeEvent(e)
		if err != nil {
			failed[e.ID] = err
			continue
		}
		evs := lunaryEvents(e.ID, ev, now)
		byRun[evs[0].RunID] = e.ID
		events = append(events, evs...)
	}
	if len(events) > 0 {
		body, err := json.Marshal(map[string]any{"events": events})
		if err != nil {
			return fmt.Errorf("encode lunary events: %w", err)
		}
		h := http.Header{}
		h.Set("Authorization", "Bearer "+l.key)
		resp, err := postJSON(ctx, l.client, l.url, body, h)
		if err != nil {
			return err
		}
		// Lunary reports per run event; an unreadable answer is a 2xx all the same.
		var r lunaryResponse
		if json.Unmarshal(resp, &r) == nil {
			for _, res := range r.Results {
				if res.Success || strings.Contains(res.Error, "already exists") {
					continue
				}
				if id, ok := byRun[res.ID]; ok {
					failed[id] = fmt.Errorf("lunary: %s", res.Error)
				}
			}
		}
	}
	if len(failed) > 0 {
		return &BatchError{Failed: failed}
	}
	return nil
}
