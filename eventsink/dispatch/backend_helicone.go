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

// DefaultHeliconeURL is the base URL of Helicone's hosted logging API, as its
// manual-logger documentation gives it.
const DefaultHeliconeURL = "https://api.worker.helicone.ai"

// DefaultUpstreamURL is the OpenAI API base the requests went to, as the
// Helicone and otlp backends name it when not told otherwise.
const DefaultUpstreamURL = "https://api.openai.com"

// Helicone sends each event to Helicone's asynchronous logging API, one
// POST per event with "Authorization: Bearer <API key>", as its manual
// logger documentation describes:
//
//	{"providerRequest":  {"url": …, "json": {...}, "meta": {...}},
//	 "providerResponse": {"headers": {...}, "status": 200, "json": {...}},
//	 "timing": {"startTime": {"seconds": …, "milliseconds": …}, "endTime": {…}}}
//
// An event whose request body was captured as JSON is logged as an OpenAI
// request, to {base}/oai/v1/log (the manual logger's provider "openai"), so
// Helicone renders the conversation and prices it as OpenAI's:
// providerRequest.url is the upstream URL of the request ({upstream}{path},
// e.g. https://api.openai.com/v1/chat/completions), providerRequest.json the
// captured request body, providerResponse.json the captured response body
// (for a stream, the events merged into the non-stream shape), compacted
// onto one line, with a "usage" object added in the API's shape when the
// body has none and the status is below 400. A response not captured as
// JSON is replaced by {"model", "usage"}.
//
// Any other event (no capture, or a body kept only as metadata: not JSON, or
// cut at the cap mid-document) goes to {base}/custom/v1/log with usage only:
// providerRequest {"url": "custom-model-nopath", "json": {"model", "stream"}},
// providerResponse.json {"model", "usage"} with the usage in OpenAI's form
// ({"prompt_tokens", "completion_tokens", "total_tokens", and the
// cached/reasoning details when non-zero}), which Helicone reads for token
// counts.
//
// In both, providerRequest.meta holds Helicone-User-Id (the end user the
// request named, else the token's public id) and Helicone-Property-* values
// (project, token, request id, method, path, usage source, cache status,
// outcome, cost, price version, event id, response model, finish reasons,
// end user, trace id, limiter decision, and the capture's content types,
// sizes and truncation flags); providerResponse.status is the status the
// client got (499 when it went away before any); timing spans time to time +
// latency_ms, with timeToFirstToken (ttfb_ms) for streams. The client
// address is never sent.
//
// The request carries Helicone-Request-Id (a UUID derived from the event id,
// see [RunID]), so a redelivered event names the same Helicone request, and
// the event id as [IdempotencyHeader].
type Helicone struct {
	customURL   string
	openaiURL   string
	upstream    string
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
	// UpstreamURL is the OpenAI API base the requests went to, which
	// providerRequest.url names (empty: [DefaultUpstreamURL]).
	UpstreamURL string
	HTTPOptions
	// Now places events that carry no time (nil: time.Now).
	Now func() time.Time
}

// NewHelicone checks the options and returns the backend.
func NewHelicone(o HeliconeOptions) (*Helicone, error) {
	custom, err := vendorEndpoint("helicone", o.URL, DefaultHeliconeURL, "/custom/v1/log", o.APIKey)
	if err != nil {
		return nil, err
	}
	openai, _ := vendorEndpoint("helicone", o.URL, DefaultHeliconeURL, "/oai/v1/log", o.APIKey)
	upstream := strings.TrimRight(o.UpstreamURL, "/")
	if upstream == "" {
		upstream = DefaultUpstreamURL
	}
	if err := checkURL(upstream); err != nil {
		return nil, fmt.Errorf("upstream URL: %w", err)
	}
	return &Helicone{customURL: custom, openaiURL: openai, upstream: upstream, key: o.APIKey,
		client: o.client(), concurrency: o.concurrency(), now: orNow(o.Now)}, nil
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
	JSON any               `json:"json"` // an object, or a json.RawMessage of one
	Meta map[string]string `json:"meta"`
}

type heliconeResponse struct {
	Headers map[string]string `json:"headers"`
	Status  int64             `json:"status"`
	JSON    any               `json:"json"` // an object, or a json.RawMessage of one
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
// Helicone's log request, and reports whether it is an OpenAI log (the
// request was captured as JSON).
func (h *Helicone) heliconeLogFor(id string, ev *llmproxyv1.UsageEvent, now time.Time) (heliconeLog, bool) {
	start, end := span(ev, now)
	respHeaders := map[string]string{"content-type": "application/json"}
	if rid := ev.GetRequestId(); rid != "" {
		respHeaders["x-request-id"] = rid
	}
	status := int64(ev.GetStatus())
	if status == 0 {
		status = statusClientClosed
	}
	timing := heliconeTiming{StartTime: toHeliconeTime(start), EndTime: toHeliconeTime(end)}
	if t := ev.GetTtfbMs(); t > 0 && ev.GetStream() {
		timing.TimeToFirstToken = &t
	}
	x := decodeCapture(ev)
	openai := x.rawRequest != nil
	req := heliconeRequest{URL: "custom-model-nopath", Meta: heliconeMeta(id, ev)}
	if openai {
		req.URL = h.upstream + ev.GetPath()
		req.JSON = x.rawRequest
	} else {
		req.JSON = map[string]any{"model": ev.GetModel(), "stream": ev.GetStream()}
	}
	resp := heliconeResponse{Headers: respHeaders, Status: status}
	if openai && x.rawResponse != nil {
		resp.JSON = withUsage(x, ev)
	} else {
		resp.JSON = map[string]any{"model": ev.GetModel(), "usage": openAIUsage(ev, apiChat)}
	}
	return heliconeLog{ProviderRequest: req, ProviderResponse: resp, Timing: timing}, openai
}

// heliconeMeta is the log's Helicone headers.
func heliconeMeta(id string, ev *llmproxyv1.UsageEvent) map[string]string {
	meta := map[string]string{}
	for k, v := range map[string]string{
		"Helicone-User-Id":                 endUser(ev),
		"Helicone-Property-Project-Id":     ev.GetProjectId(),
		"Helicone-Property-Token-Id":       ev.GetTokenId(),
		"Helicone-Property-Request-Id":     ev.GetRequestId(),
		"Helicone-Property-Method":         ev.GetMethod(),
		"Helicone-Property-Path":           ev.GetPath(),
		"Helicone-Property-Usage-Source":   ev.GetUsageSource(),
		"Helicone-Property-Cache-Status":   ev.GetCacheStatus(),
		"Helicone-Property-Outcome":        ev.GetOutcome(),
		"Helicone-Property-Price-Version":  ev.GetPriceVersion(),
		"Helicone-Property-Event-Id":       id,
		"Helicone-Property-Response-Model": ev.GetResponseModel(),
		"Helicone-Property-Finish-Reasons": strings.Join(ev.GetFinishReasons(), ","),
		"Helicone-Property-End-User":       ev.GetEndUser(),
		"Helicone-Property-Trace-Id":       ev.GetTraceId(),
		"Helicone-Property-Limit-Decision": ev.GetLimitDecision(),
	} {
		if v != "" {
			meta[k] = v
		}
	}
	if c := ev.GetCostUsd(); c != 0 {
		meta["Helicone-Property-Cost-Usd"] = strconv.FormatFloat(c, 'f', -1, 64)
	}
	if c := ev.GetCapture(); c != nil {
		meta["Helicone-Property-Request-Truncated"] = strconv.FormatBool(c.GetRequestTruncated())
		meta["Helicone-Property-Response-Truncated"] = strconv.FormatBool(c.GetResponseTruncated())
		meta["Helicone-Property-Request-Bytes"] = strconv.FormatInt(c.GetRequestBytes(), 10)
		meta["Helicone-Property-Response-Bytes"] = strconv.FormatInt(c.GetResponseBytes(), 10)
		if ct := c.GetRequestContentType(); ct != "" {
			meta["Helicone-Property-Request-Content-Type"] = ct
		}
		if ct := c.GetResponseContentType(); ct != "" {
			meta["Helicone-Property-Response-Content-Type"] = ct
		}
	}
	return meta
}

// withUsage is the captured response, compacted, with the event's usage
// added in the API's shape when the body has none and the status is below
// 400.
func withUsage(x exchange, ev *llmproxyv1.UsageEvent) any {
	if _, ok := x.response["usage"]; ok || ev.GetStatus() >= 400 || ev.GetUsage() == nil {
		return x.rawResponse
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(x.rawResponse, &fields) != nil {
		return x.rawResponse
	}
	out := make(map[string]any, len(fields)+1)
	for k, v := range fields {
		out[k] = v
	}
	out["usage"] = openAIUsage(ev, x.api)
	return out
}

// openAIUsage is the event's usage in OpenAI's shape for a: the Responses
// API's input/output tokens, or the chat shape.
func openAIUsage(ev *llmproxyv1.UsageEvent, a api) map[string]any {
	u := ev.GetUsage()
	if a == apiResponses {
		usage := map[string]any{
			"input_tokens":  u.GetPromptTokens(),
			"output_tokens": u.GetCompletionTokens(),
			"total_tokens":  totalTokens(ev),
		}
		if c := u.GetCachedTokens(); c > 0 {
			usage["input_tokens_details"] = map[string]int64{"cached_tokens": c}
		}
		if r := u.GetReasoningTokens(); r > 0 {
			usage["output_tokens_details"] = map[string]int64{"reasoning_tokens": r}
		}
		return usage
	}
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
	return usage
}

func (h *Helicone) send(ctx context.Context, e Entry) error {
	ev, err := decodeEvent(e)
	if err != nil {
		return err
	}
	log, openai := h.heliconeLogFor(e.ID, ev, h.now())
	body, err := json.Marshal(log)
	if err != nil {
		return fmt.Errorf("encode helicone log: %w", err)
	}
	hd := http.Header{}
	hd.Set("Authorization", "Bearer "+h.key)
	hd.Set("Helicone-Request-Id", RunID(e.ID))
	hd.Set(IdempotencyHeader, e.ID)
	target := h.customURL
	if openai {
		target = h.openaiURL
	}
	_, err = postJSON(ctx, h.client, target, body, hd)
	return err
}
