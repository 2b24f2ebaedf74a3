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
// its backend (api/v1/runs/ingest.ts) documents.
//
// Each usage event becomes one LLM run of two run events sharing a runId
// (see [RunID]): "start" at the request's start (name = model, userId = the
// token's public id, metadata = request id, project, token, method, path,
// status, stream, cache status, outcome, usage source, cost, price version),
// then "end" latency_ms later with tokensUsage {prompt, completion, and
// promptCached when some were cached} — or "error" with the HTTP status (and
// error code) when the client got a status ≥ 400. Prompts, completions and
// the client address are not sent.
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
	Metadata    map[string]any `json:"metadata,omitempty"`
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
	md := map[string]any{"event_id": id, "status": int64(ev.GetStatus()), "stream": ev.GetStream()}
	for k, v := range map[string]string{
		"request_id": ev.GetRequestId(), "project_id": ev.GetProjectId(), "token_id": ev.GetTokenId(),
		"method": ev.GetMethod(), "path": ev.GetPath(), "usage_source": ev.GetUsageSource(),
		"cache_status": ev.GetCacheStatus(), "outcome": ev.GetOutcome(), "price_version": ev.GetPriceVersion(),
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
	first := lunaryEvent{
		Type: "llm", Event: "start", RunID: runID, Timestamp: start.Format(lunaryTime),
		Name: ev.GetModel(), UserID: ev.GetTokenId(), Runtime: userAgent, Metadata: md,
	}
	last := lunaryEvent{Type: "llm", RunID: runID, Timestamp: end.Format(lunaryTime), Name: ev.GetModel()}
	if ev.GetStatus() >= 400 {
		last.Event = "error"
		last.Error = &lunaryError{Message: "HTTP " + strconv.Itoa(int(ev.GetStatus()))}
		if code := ev.GetErrorCode(); code != "" {
			last.Error.Message += ": " + code
		}
	} else {
		u := ev.GetUsage()
		last.Event = "end"
		last.TokensUsage = &lunaryTokens{Prompt: u.GetPromptTokens(), Completion: u.GetCompletionTokens(), PromptCached: u.GetCachedTokens()}
	}
	return []lunaryEvent{first, last}
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
