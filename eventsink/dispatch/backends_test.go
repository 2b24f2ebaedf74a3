package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func entry(id string) Entry { return Entry{ID: id, JSON: []byte(eventJSON(id))} }

// receiver is an httptest server whose handler checks each request and
// records the problems it found, for the test to report.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	problems []string
	bodies   [][]byte
	headers  []http.Header
}

func newReceiver(t *testing.T, handle func(r *http.Request, body []byte, problem func(string, ...any)) int) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		problem := func(format string, args ...any) {
			rc.mu.Lock()
			rc.problems = append(rc.problems, fmt.Sprintf(format, args...))
			rc.mu.Unlock()
		}
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, body)
		rc.headers = append(rc.headers, r.Header.Clone())
		rc.mu.Unlock()
		status := handle(r, body, problem)
		if status == 0 {
			status = 200
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(func() {
		rc.Close()
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, p := range rc.problems {
			t.Error("receiver: " + p)
		}
	})
	return rc
}

func (rc *receiver) requests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.bodies)
}

func TestWebhookSignsEachEventAndClassifiesAnswers(t *testing.T) {
	secret := []byte("0123456789abcdef-webhook-secret")
	now := time.Unix(1_750_000_000, 0)
	rc := newReceiver(t, func(r *http.Request, body []byte, problem func(string, ...any)) int {
		if r.Method != http.MethodPost || r.URL.Path != "/hook" {
			problem("%s %s, want POST /hook", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			problem("content-type %q", ct)
		}
		if err := VerifySignature(secret, r.Header.Get(SignatureHeader), r.Header.Get(TimestampHeader), body, now, 5*time.Minute); err != nil {
			problem("signature: %v", err)
		}
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			problem("body is not one JSON event: %v", err)
		}
		if got := r.Header.Get(IdempotencyHeader); got != ev.ID || got == "" {
			problem("Idempotency-Key %q, body id %q", got, ev.ID)
		}
		if !bytes.Equal(body, []byte(eventJSON(ev.ID))) {
			problem("body is not the event as produced: %s", body)
		}
		switch ev.ID {
		case "rejected":
			return 400
		case "throttled":
			return 429
		case "broken":
			return 503
		case "timeout":
			return 408
		}
		return 204
	})
	w, err := NewWebhook(WebhookOptions{URL: rc.URL + "/hook", Secret: secret, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Deliver(context.Background(), []Entry{entry("a"), entry("rejected"), entry("b"), entry("throttled"), entry("broken"), entry("timeout")})
	var be *BatchError
	if !errors.As(err, &be) || len(be.Failed) != 4 {
		t.Fatalf("Deliver = %v, want a BatchError for 4 entries", err)
	}
	for id, permanent := range map[string]bool{"rejected": true, "throttled": false, "broken": false, "timeout": false} {
		if got := IsPermanent(be.Failed[id]); got != permanent {
			t.Errorf("%s: permanent = %v, want %v (%v)", id, got, permanent, be.Failed[id])
		}
	}
	if rc.requests() != 6 {
		t.Errorf("%d requests, want one per event", rc.requests())
	}
	if err := w.Deliver(context.Background(), []Entry{entry("a")}); err != nil {
		t.Errorf("redelivery: %v", err)
	}
}

func TestVerifySignature(t *testing.T) {
	secret := []byte("0123456789abcdef")
	ts := time.Unix(1_750_000_000, 0)
	body := []byte(`{"id":"x"}`)
	sig := Sign(secret, ts, body)
	stamp := fmt.Sprint(ts.Unix())
	for _, tc := range []struct {
		name        string
		secret      []byte
		sig, ts     string
		body        []byte
		now         time.Time
		wantErr     error
		wantSuccess bool
	}{
		{name: "valid", secret: secret, sig: sig, ts: stamp, body: body, now: ts.Add(time.Minute), wantSuccess: true},
		{name: "other secret", secret: []byte("fedcba9876543210"), sig: sig, ts: stamp, body: body, now: ts, wantErr: ErrBadSignature},
		{name: "body changed", secret: secret, sig: sig, ts: stamp, body: []byte(`{"id":"y"}`), now: ts, wantErr: ErrBadSignature},
		{name: "timestamp changed", secret: secret, sig: sig, ts: fmt.Sprint(ts.Unix() + 1), body: body, now: ts, wantErr: ErrBadSignature},
		{name: "replayed later", secret: secret, sig: sig, ts: stamp, body: body, now: ts.Add(6 * time.Minute), wantErr: ErrStaleTimestamp},
		{name: "no prefix", secret: secret, sig: strings.TrimPrefix(sig, "sha256="), ts: stamp, body: body, now: ts, wantErr: ErrBadSignature},
		{name: "bad timestamp", secret: secret, sig: sig, ts: "yesterday", body: body, now: ts, wantErr: ErrStaleTimestamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySignature(tc.secret, tc.sig, tc.ts, tc.body, tc.now, 5*time.Minute)
			if tc.wantSuccess != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("VerifySignature = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Errorf("signature %q is not sha256=<64 hex>", sig)
	}
}

func TestWebhookOptionsAndSecretsInErrors(t *testing.T) {
	if _, err := NewWebhook(WebhookOptions{URL: "http://x", Secret: []byte("short")}); err == nil {
		t.Error("a short secret was accepted")
	}
	if _, err := NewWebhook(WebhookOptions{URL: "ftp://x", Secret: []byte("0123456789abcdef")}); err == nil {
		t.Error("a non-HTTP URL was accepted")
	}
	// A URL carrying a credential must not leak it into errors (and so logs
	// and dead letters).
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	w, err := NewWebhook(WebhookOptions{URL: srv.URL + "/hook?token=hunter2", Secret: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Deliver(context.Background(), []Entry{entry("a")})
	if err == nil || strings.Contains(err.Error(), "hunter2") || IsPermanent(err) {
		t.Errorf("Deliver to a closed server = %v: want a retryable error without the URL's query", err)
	}
}

// TestLunaryPayload checks the body against Lunary's ingest API
// (packages/backend/src/api/v1/runs/ingest.ts and utils/ingest.ts): POST
// /v1/runs/ingest, bearer project key, {"events": [Event]}, each Event with
// type, event, runId, timestamp (date-time), and for LLM runs name and
// tokensUsage {prompt, completion} on "end"; metadata values primitive.
func TestLunaryPayload(t *testing.T) {
	type run struct {
		start, last map[string]any
	}
	var mu sync.Mutex
	runs := map[string]*run{}
	startsSeen := map[string]bool{}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem := func(format string, args ...any) { t.Errorf("lunary receiver: "+format, args...) }
		if r.Method != http.MethodPost || r.URL.Path != "/v1/runs/ingest" {
			problem("%s %s, want POST /v1/runs/ingest", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer lunary-project-key" {
			w.WriteHeader(401)
			return
		}
		var body struct {
			Events []map[string]any `json:"events"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || len(body.Events) == 0 {
			problem("body is not {\"events\": [...]}: %v", err)
			w.WriteHeader(400)
			return
		}
		type result struct {
			ID      string `json:"id"`
			Success bool   `json:"success"`
			Error   string `json:"error,omitempty"`
		}
		var results []result
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range body.Events {
			checkLunaryEvent(t, ev)
			id, _ := ev["runId"].(string)
			rn := runs[id]
			if rn == nil {
				rn = &run{}
				runs[id] = rn
			}
			res := result{ID: id, Success: true}
			switch ev["event"] {
			case "start":
				if startsSeen[id] {
					res = result{ID: id, Error: "Run with this ID already exists in the database."}
				}
				startsSeen[id] = true
				rn.start = ev
			default:
				rn.last = ev
				if md, _ := ev["name"].(string); md == "fail-on-server" {
					res = result{ID: id, Error: "database is on fire"}
				}
			}
			results = append(results, res)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
	}))
	defer rc.Close()
	l, err := NewLunary(LunaryOptions{URL: rc.URL + "/", APIKey: "lunary-project-key"})
	if err != nil {
		t.Fatal(err)
	}
	denied := testEvent("denied")
	denied.Status, denied.Outcome, denied.ErrorCode, denied.Usage = 429, "denied", "rate_limit_exceeded", nil
	failed := Entry{ID: "denied", JSON: []byte(marshal(denied))}
	// A UUIDv7 id, as eventsink.NewEventID makes, is used as the runId itself.
	v7 := eventsink.NewEventID()
	big := testEvent(v7)
	big.Usage = &llmproxyv1.Usage{PromptTokens: 1000, CompletionTokens: 20, TotalTokens: 1020}
	protoJSON := Entry{ID: v7, JSON: []byte(marshal(big))}
	if !strings.Contains(string(protoJSON.JSON), `"1000"`) {
		t.Fatalf("expected int64 as JSON strings in %s", protoJSON.JSON)
	}
	batch := []Entry{entry("ok-1"), failed, protoJSON}
	if err := l.Deliver(context.Background(), batch); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	// Delivered again (at least once): Lunary refuses the repeated start as
	// a duplicate, which is success for us.
	if err := l.Deliver(context.Background(), batch); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	mu.Lock()
	if len(runs) != 3 {
		t.Fatalf("%d runs, want 3 (runIds stable across deliveries)", len(runs))
	}
	rn := runs[RunID("ok-1")]
	if rn == nil || rn.start == nil || rn.last == nil {
		t.Fatalf("run of ok-1 = %+v", rn)
	}
	// Without a capture: usage, metadata and tags, no content.
	sameJSON(t, "ok-1 start", rn.start, `{
	  "type": "llm", "event": "start", "runId": "`+RunID("ok-1")+`", "timestamp": "2025-01-02T03:04:05.678Z",
	  "name": "gpt-4.1-mini", "userId": "tok_pub", "runtime": "llm-proxy-dispatch", "tags": ["project:p1", "token:tok_pub"],
	  "metadata": {"event_id": "ok-1", "request_id": "req-ok-1", "project_id": "p1", "token_id": "tok_pub",
	    "method": "POST", "path": "/v1/chat/completions", "status": 200, "stream": false, "cache_status": "miss",
	    "outcome": "forwarded", "usage_source": "provider", "cost_usd": 0.0001, "price_version": "2025-01"}
	}`)
	sameJSON(t, "ok-1 end", rn.last, `{
	  "type": "llm", "event": "end", "runId": "`+RunID("ok-1")+`", "timestamp": "2025-01-02T03:04:05.928Z",
	  "name": "gpt-4.1-mini", "tokensUsage": {"prompt": 12, "completion": 5, "promptCached": 4}
	}`)
	if d := runs[RunID("denied")]; d.last["event"] != "error" || obj(d.last["error"])["message"] != "HTTP 429: rate_limit_exceeded" {
		t.Errorf("denied request: %v, want an error event", d.last)
	}
	if p := runs[RunID(protoJSON.ID)]; obj(p.last["tokensUsage"])["prompt"] != 1000.0 {
		t.Errorf("string-encoded usage: %v", p.last)
	}
	mu.Unlock()

	// A failure Lunary reports for one run is retried for that entry only.
	badEv := testEvent("bad")
	badEv.Model = "fail-on-server"
	bad := Entry{ID: "bad", JSON: []byte(marshal(badEv))}
	err = l.Deliver(context.Background(), []Entry{entry("ok-2"), bad, {ID: "junk", JSON: []byte(`{"id":`)}})
	var be *BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed["bad"] == nil || IsPermanent(be.Failed["bad"]) || !IsPermanent(be.Failed["junk"]) {
		t.Errorf("Deliver = %v, want bad retryable and junk permanent", err)
	}

	wrongKey, _ := NewLunary(LunaryOptions{URL: rc.URL, APIKey: "wrong"})
	if err := wrongKey.Deliver(context.Background(), []Entry{entry("x")}); !IsPermanent(err) {
		t.Errorf("401: %v, want a permanent error", err)
	}
	if l, _ := NewLunary(LunaryOptions{APIKey: "k"}); l.url != DefaultLunaryURL+"/v1/runs/ingest" {
		t.Errorf("default URL %s", l.url)
	}
}

// obj returns v as a JSON object, or an empty one.
func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func checkLunaryEvent(t *testing.T, ev map[string]any) {
	t.Helper()
	str := func(k string) string {
		s, ok := ev[k].(string)
		if !ok {
			t.Errorf("lunary event %s = %#v, want a string: %v", k, ev[k], ev)
		}
		return s
	}
	if str("type") != "llm" {
		t.Errorf("type %v", ev["type"])
	}
	kind := str("event")
	if kind != "start" && kind != "end" && kind != "error" {
		t.Errorf("event %q", kind)
	}
	if !uuidRE.MatchString(str("runId")) {
		t.Errorf("runId %q is not a UUID", ev["runId"])
	}
	if _, err := time.Parse(time.RFC3339Nano, str("timestamp")); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	for k, v := range ev {
		switch k {
		case "type", "event", "runId", "timestamp", "name", "userId", "runtime":
			if _, ok := v.(string); !ok {
				t.Errorf("%s = %#v, want a string", k, v)
			}
		case "tags":
			tags, ok := v.([]any)
			for _, tag := range tags {
				if _, s := tag.(string); !s {
					ok = false
				}
			}
			if !ok || kind != "start" {
				t.Errorf("tags = %#v on %s, want strings on start", v, kind)
			}
		case "input", "params":
			if kind != "start" {
				t.Errorf("%s on %s, want it on start", k, kind)
			}
		case "output":
			if kind != "end" {
				t.Errorf("output on %s, want it on end", kind)
			}
		case "metadata":
			for mk, mv := range obj(v) {
				switch mv := mv.(type) {
				case string, float64, bool:
				case []any:
					for _, e := range mv {
						if _, ok := e.(string); !ok {
							t.Errorf("metadata %s = %#v: Lunary keeps only primitives and lists of them", mk, mv)
						}
					}
				default:
					t.Errorf("metadata %s = %#v: Lunary keeps only primitive values", mk, mv)
				}
			}
		case "tokensUsage":
			tu, ok := v.(map[string]any)
			_, p := tu["prompt"].(float64)
			_, c := tu["completion"].(float64)
			_, pc := tu["promptCached"].(float64)
			if !ok || !p || !c || len(tu) != 2 && !(len(tu) == 3 && pc) || kind != "end" {
				t.Errorf("tokensUsage = %#v on %s, want {prompt, completion[, promptCached]} numbers on end", v, kind)
			}
		case "error":
			e, ok := v.(map[string]any)
			if _, s := e["message"].(string); !ok || !s || kind != "error" {
				t.Errorf("error = %#v on %s", v, kind)
			}
		default:
			t.Errorf("field %q is not in Lunary's Event schema", k)
		}
	}
	if kind == "end" && ev["tokensUsage"] == nil {
		t.Error("end event without tokensUsage")
	}
}

// heliconeAsyncLogRequest mirrors the TypeScript type of Helicone's manual
// logger documentation (HeliconeAsyncLogRequest); decoding with unknown
// fields disallowed checks we send nothing else at those levels.
type heliconeAsyncLogRequest struct {
	ProviderRequest *struct {
		URL  *string           `json:"url"`
		JSON map[string]any    `json:"json"`
		Meta map[string]string `json:"meta"`
	} `json:"providerRequest"`
	ProviderResponse *struct {
		Headers  map[string]string `json:"headers"`
		Status   *int              `json:"status"`
		JSON     map[string]any    `json:"json"`
		TextBody *string           `json:"textBody"`
	} `json:"providerResponse"`
	Timing *struct {
		StartTime        *struct{ Seconds, Milliseconds *int64 } `json:"startTime"`
		EndTime          *struct{ Seconds, Milliseconds *int64 } `json:"endTime"`
		TimeToFirstToken *float64                                `json:"timeToFirstToken"`
	} `json:"timing"`
}

func TestHeliconePayload(t *testing.T) {
	var mu sync.Mutex
	got := map[string]heliconeAsyncLogRequest{}
	requestIDs := map[string][]string{}
	rc := newReceiver(t, func(r *http.Request, body []byte, problem func(string, ...any)) int {
		if r.Method != http.MethodPost || r.URL.Path != "/custom/v1/log" {
			problem("%s %s, want POST /custom/v1/log", r.Method, r.URL.Path)
		}
		if a := r.Header.Get("Authorization"); a != "Bearer sk-helicone-test" {
			return 401
		}
		var req heliconeAsyncLogRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			problem("body does not match HeliconeAsyncLogRequest: %v: %s", err, body)
			return 400
		}
		pr, ps, tm := req.ProviderRequest, req.ProviderResponse, req.Timing
		switch {
		case pr == nil || pr.URL == nil || *pr.URL != "custom-model-nopath" || pr.JSON == nil || pr.Meta == nil:
			problem("providerRequest %+v: want url custom-model-nopath, json and meta", pr)
		case ps == nil || ps.Status == nil || ps.Headers == nil:
			problem("providerResponse %+v: want status and headers", ps)
		case tm == nil || tm.StartTime == nil || tm.EndTime == nil || tm.StartTime.Seconds == nil || tm.StartTime.Milliseconds == nil ||
			tm.EndTime.Seconds == nil || tm.EndTime.Milliseconds == nil:
			problem("timing %+v: want startTime and endTime with seconds and milliseconds", tm)
		default:
			for _, ms := range []int64{*tm.StartTime.Milliseconds, *tm.EndTime.Milliseconds} {
				if ms < 0 || ms > 999 {
					problem("milliseconds %d out of 0..999", ms)
				}
			}
		}
		id := r.Header.Get(IdempotencyHeader)
		rid := r.Header.Get("Helicone-Request-Id")
		if !uuidRE.MatchString(rid) || rid != RunID(id) {
			problem("Helicone-Request-Id %q for event %q", rid, id)
		}
		mu.Lock()
		got[id] = req
		requestIDs[id] = append(requestIDs[id], rid)
		mu.Unlock()
		if id == "bad" {
			return 400
		}
		return 200
	})
	h, err := NewHelicone(HeliconeOptions{URL: rc.URL, APIKey: "sk-helicone-test"})
	if err != nil {
		t.Fatal(err)
	}
	aborted := testEvent("aborted")
	aborted.Stream, aborted.Status, aborted.Outcome, aborted.TtfbMs, aborted.UsageSource = true, 0, "aborted", 80, "tokenizer"
	batch := []Entry{entry("e1"), entry("e2"), entry("bad"), {ID: "aborted", JSON: []byte(marshal(aborted))}}
	err = h.Deliver(context.Background(), batch)
	var be *BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !IsPermanent(be.Failed["bad"]) {
		t.Fatalf("Deliver = %v, want only bad failing, permanently", err)
	}
	if err := h.Deliver(context.Background(), batch[:1]); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ids := requestIDs["e1"]; len(ids) != 2 || ids[0] != ids[1] {
		t.Errorf("redelivered e1 got request ids %v, want the same one twice", ids)
	}
	req := got["e1"]
	if req.ProviderRequest.JSON["model"] != "gpt-4.1-mini" || *req.ProviderResponse.Status != 200 {
		t.Errorf("model / status: %+v %+v", req.ProviderRequest.JSON, *req.ProviderResponse.Status)
	}
	u := obj(req.ProviderResponse.JSON["usage"])
	if u["prompt_tokens"] != 12.0 || u["completion_tokens"] != 5.0 || u["total_tokens"] != 17.0 || obj(u["prompt_tokens_details"])["cached_tokens"] != 4.0 {
		t.Errorf("usage = %v, want OpenAI-style 12/5/17 with 4 cached", u)
	}
	if req.Timing.TimeToFirstToken != nil {
		t.Errorf("timeToFirstToken on a non-streamed request")
	}
	ab := got["aborted"]
	if *ab.ProviderResponse.Status != 499 || ab.Timing.TimeToFirstToken == nil || *ab.Timing.TimeToFirstToken != 80 ||
		ab.ProviderRequest.JSON["stream"] != true || ab.ProviderRequest.Meta["Helicone-Property-Outcome"] != "aborted" {
		t.Errorf("aborted stream: status %d, ttft %v, request %v, meta %v", *ab.ProviderResponse.Status, ab.Timing.TimeToFirstToken,
			ab.ProviderRequest.JSON, ab.ProviderRequest.Meta)
	}
	// Without a capture: the custom route, usage only, every property.
	rc.mu.Lock()
	var e1 map[string]any
	for i, b := range rc.bodies {
		if rc.headers[i].Get(IdempotencyHeader) == "e1" {
			_ = json.Unmarshal(b, &e1)
		}
	}
	rc.mu.Unlock()
	sameJSON(t, "e1 log", e1, `{
	  "providerRequest": {"url": "custom-model-nopath", "json": {"model": "gpt-4.1-mini", "stream": false},
	    "meta": {"Helicone-User-Id": "tok_pub", "Helicone-Property-Project-Id": "p1", "Helicone-Property-Token-Id": "tok_pub",
	      "Helicone-Property-Request-Id": "req-e1", "Helicone-Property-Method": "POST", "Helicone-Property-Path": "/v1/chat/completions",
	      "Helicone-Property-Usage-Source": "provider", "Helicone-Property-Cache-Status": "miss", "Helicone-Property-Outcome": "forwarded",
	      "Helicone-Property-Price-Version": "2025-01", "Helicone-Property-Event-Id": "e1", "Helicone-Property-Cost-Usd": "0.0001"}},
	  "providerResponse": {"headers": {"content-type": "application/json", "x-request-id": "req-e1"}, "status": 200,
	    "json": {"model": "gpt-4.1-mini", "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
	      "prompt_tokens_details": {"cached_tokens": 4}}}},
	  "timing": {"startTime": {"seconds": 1735787045, "milliseconds": 678}, "endTime": {"seconds": 1735787045, "milliseconds": 928}}
	}`)
	st, en := req.Timing.StartTime, req.Timing.EndTime
	start := *st.Seconds*1000 + *st.Milliseconds
	end := *en.Seconds*1000 + *en.Milliseconds
	if want := time.Date(2025, 1, 2, 3, 4, 5, 678e6, time.UTC).UnixMilli(); start != want || end-start != 250 {
		t.Errorf("timing %d → %d, want %d and 250ms latency", start, end, want)
	}
	if h, _ := NewHelicone(HeliconeOptions{APIKey: "k"}); h.customURL != DefaultHeliconeURL+"/custom/v1/log" ||
		h.openaiURL != DefaultHeliconeURL+"/oai/v1/log" || h.upstream != DefaultUpstreamURL {
		t.Errorf("default URLs %s, %s, upstream %s", h.customURL, h.openaiURL, h.upstream)
	}
	if _, err := NewHelicone(HeliconeOptions{URL: rc.URL}); err == nil {
		t.Error("no API key accepted")
	}
}

func TestFileAppendsOneLinePerEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "events.jsonl")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pretty := Entry{ID: "pretty", JSON: []byte("{\n  \"id\": \"pretty\",\n  \"model\": \"gpt-4o\"\n}")}
	err = f.Deliver(context.Background(), []Entry{entry("a"), pretty, {ID: "junk", JSON: []byte("{")}})
	var be *BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !IsPermanent(be.Failed["junk"]) {
		t.Fatalf("Deliver = %v, want junk refused permanently", err)
	}
	if err := f.Deliver(context.Background(), []Entry{entry("a")}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Deliver(context.Background(), []Entry{entry("b")}); err == nil {
		t.Error("Deliver after Close succeeded")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	want := []string{"a", "pretty", "a"}
	if len(lines) != len(want) {
		t.Fatalf("file:\n%s", b)
	}
	for i, line := range lines {
		var rec struct {
			ID    string          `json:"id"`
			Event json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.ID != want[i] || len(rec.Event) == 0 {
			t.Errorf("line %d = %s (%v), want id %s with the event", i, line, err, want[i])
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
}

func TestRunID(t *testing.T) {
	u := "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
	if RunID(u) != strings.ToLower(u) {
		t.Errorf("a UUID id must be kept: %s", RunID(u))
	}
	a, b := RunID("evt_123"), RunID("evt_124")
	if a == b || a != RunID("evt_123") || !uuidRE.MatchString(a) || a[14] != '5' {
		t.Errorf("RunID = %s, %s: want distinct, stable, version-5 UUIDs", a, b)
	}
}

func TestStatusErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		code      int
		permanent bool
	}{
		{400, true}, {401, true}, {403, true}, {404, true}, {413, true}, {422, true},
		{408, false}, {429, false}, {500, false}, {502, false}, {503, false},
	} {
		err := fmt.Errorf("wrapped: %w", &StatusError{Code: tc.code})
		if IsPermanent(err) != tc.permanent {
			t.Errorf("status %d: permanent = %v", tc.code, !tc.permanent)
		}
	}
	if IsPermanent(errors.New("connection refused")) || IsPermanent(context.DeadlineExceeded) {
		t.Error("network errors must be retried")
	}
	if !IsPermanent(fmt.Errorf("x: %w", Permanent(errors.New("bad")))) || Permanent(nil) != nil {
		t.Error("Permanent")
	}
	if d := retryAfter(&StatusError{Code: 429, After: 3 * time.Second}); d != 3*time.Second {
		t.Errorf("retryAfter = %s", d)
	}
	if d := parseRetryAfter("7", time.Now()); d != 7*time.Second {
		t.Errorf("Retry-After 7 = %s", d)
	}
}
