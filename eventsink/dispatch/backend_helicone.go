package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// DefaultHeliconeURL is the base URL of Helicone's hosted logging API, as its
// manual-logger documentation gives it.
const DefaultHeliconeURL = "https://api.worker.helicone.ai"

// Helicone sends each event to Helicone's custom-model logging API, one POST
// per event to {base}/custom/v1/log with "Authorization: Bearer <API key>",
// as its manual logger documentation describes:
//
//	{"providerRequest":  {"url": "custom-model-nopath", "json": {...}, "meta": {...}},
//	 "providerResponse": {"headers": {...}, "status": 200, "json": {...}},
//	 "timing": {"startTime": {"seconds": …, "milliseconds": …}, "endTime": {…}}}
//
// providerRequest.json holds the model and the stream flag (no prompt);
// providerRequest.meta holds Helicone-User-Id (the token's public id) and
// Helicone-Property-* values (project, token, request id, method, path,
// usage source, cache status, outcome, cost, price version, event id);
// providerResponse.json holds the model and the usage in OpenAI's form
// ({"usage": {"prompt_tokens", "completion_tokens", "total_tokens", and the
// cached/reasoning details when non-zero}}), which Helicone reads for token
// counts; providerResponse.status is the status the client got (499 when it
// went away before any); timing spans time to time + latency_ms, with
// timeToFirstToken (ttfb_ms) for streams.
//
// The request carries Helicone-Request-Id (a UUID derived from the event id,
// see [RunID]), so a redelivered event names the same Helicone request, and
// the event id as [IdempotencyHeader].
type Helicone struct {
	url         string
	key         string
	client      *http.Client
	concurrency int
	now         func() time.Time
}

// HeliconeOptions configure [NewHelicone].
type HeliconeOptions struct {
	// URL is the API base (empty: [DefaultHeliconeURL]).
	URL string
	// APIKey is the Helicone API key, sent as a bearer token.
	APIKey string
	HTTPOptions
	// Now places events that carry no time (nil: time.Now).
	Now func() time.Time
}

// NewHelicone checks the options and returns the backend.
func NewHelicone(o HeliconeOptions) (*Helicone, error) {
	endpoint, err := vendorEndpoint("helicone", o.URL, DefaultHeliconeURL, "/custom/v1/log", o.APIKey)
	if err != nil {
		return nil, err
	}
	return &Helicone{url: endpoint, key: o.APIKey, client: o.client(), concurrency: o.concurrency(), now: orNow(o.Now)}, nil
}

// Name returns "helicone".
func (h *Helicone) Name() string { return "helicone" }

// Deliver POSTs every entry, [HTTPOptions.Concurrency] at a time.
func (h *Helicone) Deliver(ctx context.Context, entries []Entry) error {
	return deliverEach(ctx, entries, h.concurrency, h.send)
}

type heliconeLog struct {
	ProviderRequest  heliconeRequest  `json:"providerRequest"`
	ProviderResponse heliconeResponse `json:"providerResponse"`
	Timing           heliconeTiming   `json:"timing"`
}

type heliconeRequest struct {
	URL  string            `json:"url"`
	JSON map[string]any    `json:"json"`
	Meta map[string]string `json:"meta"`
}

type heliconeResponse struct {
	Headers map[string]string `json:"headers"`
	Status  int64             `json:"status"`
	JSON    map[string]any    `json:"json"`
}

type heliconeTiming struct {
	StartTime        heliconeTime `json:"startTime"`
	EndTime          heliconeTime `json:"endTime"`
	TimeToFirstToken *float64     `json:"timeToFirstToken,omitempty"`
}

// statusClientClosed stands in for status 0 (the client went away before
// any status): Helicone wants a number, and 499 is the usual name for it.
const statusClientClosed = 499

type heliconeTime struct {
	Seconds      int64 `json:"seconds"`
	Milliseconds int64 `json:"milliseconds"`
}

func toHeliconeTime(t time.Time) heliconeTime {
	ms := t.UnixMilli()
	return heliconeTime{Seconds: ms / 1000, Milliseconds: ms % 1000}
}

// heliconeLogFor maps one usage event, delivered under entry id id, to
// Helicone's log request.
func heliconeLogFor(id string, ev *llmproxyv1.UsageEvent, now time.Time) heliconeLog {
	start, end := span(ev, now)
	meta := map[string]string{}
	for k, v := range map[string]string{
		"Helicone-User-Id":                ev.GetTokenId(),
		"Helicone-Property-Project-Id":    ev.GetProjectId(),
		"Helicone-Property-Token-Id":      ev.GetTokenId(),
		"Helicone-Property-Request-Id":    ev.GetRequestId(),
		"Helicone-Property-Method":        ev.GetMethod(),
		"Helicone-Property-Path":          ev.GetPath(),
		"Helicone-Property-Usage-Source":  ev.GetUsageSource(),
		"Helicone-Property-Cache-Status":  ev.GetCacheStatus(),
		"Helicone-Property-Outcome":       ev.GetOutcome(),
		"Helicone-Property-Price-Version": ev.GetPriceVersion(),
		"Helicone-Property-Event-Id":      id,
	} {
		if v != "" {
			meta[k] = v
		}
	}
	if c := ev.GetCostUsd(); c != 0 {
		meta["Helicone-Property-Cost-Usd"] = strconv.FormatFloat(c, 'f', -1, 64)
	}
	respHeaders := map[string]string{"content-type": "application/json"}
	if rid := ev.GetRequestId(); rid != "" {
		respHeaders["x-request-id"] = rid
	}
	status := int64(ev.GetStatus())
	if status == 0 {
		status = statusClientClosed
	}
	u := ev.GetUsage()
	usage := map[string]any{
		"prompt_tokens":     u.GetPromptTokens(),
		"completion_tokens": u.GetCompletionTokens(),
		"total_tokens":      totalTokens(ev),
	}
	if c := u.GetCachedTokens(); c > 0 {
		usage["prompt_tokens_details"] = map[string]int64{"cached_tokens": c}
	}
	if r := u.GetReasoningTokens(); r > 0 {
		usage["completion_tokens_details"] = map[string]int64{"reasoning_tokens": r}
	}
	timing := heliconeTiming{StartTime: toHeliconeTime(start), EndTime: toHeliconeTime(end)}
	if t := ev.GetTtfbMs(); t > 0 && ev.GetStream() {
		timing.TimeToFirstToken = &t
	}
	return heliconeLog{
		ProviderRequest: heliconeRequest{
			URL:  "custom-model-nopath",
			JSON: map[string]any{"model": ev.GetModel(), "stream": ev.GetStream()},
			Meta: meta,
		},
		ProviderResponse: heliconeResponse{
			Headers: respHeaders,
			Status:  status,
			JSON:    map[string]any{"model": ev.GetModel(), "usage": usage},
		},
		Timing: timing,
	}
}

func (h *Helicone) send(ctx context.Context, e Entry) error {
	ev, err := decodeEvent(e)
	if err != nil {
		return err
	}
	body, err := json.Marshal(heliconeLogFor(e.ID, ev, h.now()))
	if err != nil {
		return fmt.Errorf("encode helicone log: %w", err)
	}
	hd := http.Header{}
	hd.Set("Authorization", "Bearer "+h.key)
	hd.Set("Helicone-Request-Id", RunID(e.ID))
	hd.Set(IdempotencyHeader, e.ID)
	_, err = postJSON(ctx, h.client, h.url, body, hd)
	return err
}
