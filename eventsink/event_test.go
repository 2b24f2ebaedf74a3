package eventsink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// fullEvent has every field set to a value other than its zero.
func fullEvent() *llmproxyv1.UsageEvent {
	return &llmproxyv1.UsageEvent{
		Id:            "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b",
		Time:          timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC)),
		RequestId:     "req-1",
		ProjectId:     "proj-1",
		TokenId:       "tok_pub_1",
		Method:        "POST",
		Path:          "/v1/chat/completions",
		Model:         "gpt-4.1-mini",
		Status:        200,
		Stream:        true,
		CacheStatus:   "miss",
		Outcome:       "forwarded",
		LatencyMs:     250.5,
		TtfbMs:        80.25,
		Usage:         &llmproxyv1.Usage{PromptTokens: 12, CompletionTokens: 5, CachedTokens: 2, ReasoningTokens: 1, TotalTokens: 17},
		UsageSource:   "provider",
		CostUsd:       0.000123,
		CostMicroUsd:  123,
		PriceVersion:  "2025-01-01",
		ClientAddress: "203.0.113.7",
		Aborted:       true,
		ErrorCode:     "rate_limit_exceeded",
		ResponseModel: "gpt-4.1-mini-2025-04-14",
		FinishReasons: []string{"stop", "tool_calls"},
		EndUser:       "user-42",
		TraceId:       "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanId:        "00f067aa0ba902b7",
		ParentSpanId:  "b7ad6b7169203331",
		LimitDecision: "allowed",
		Capture: &llmproxyv1.Capture{Request: `{"model":"gpt-4.1-mini"}`, RequestTruncated: true, Response: `{"id":"c1"}`,
			RequestContentType: "application/json", RequestBytes: 70000, ResponseContentType: "text/event-stream", ResponseBytes: 900},
	}
}

func TestEventJSONRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   *llmproxyv1.UsageEvent
	}{
		{"full", fullEvent()},
		{"empty", &llmproxyv1.UsageEvent{}},
		{"denied", &llmproxyv1.UsageEvent{Id: NewEventID(), RequestId: "r", Status: 401, Outcome: "denied", ErrorCode: "invalid_api_key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := MarshalEvent(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.ContainsAny(b, "\r\n") {
				t.Fatalf("encoding spans lines: %s", b)
			}
			got, err := UnmarshalEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.ev) {
				t.Fatalf("round trip:\n got %v\nwant %v", got, tc.ev)
			}
		})
	}
}

// The JSON field names and value types are a contract with every reader of
// the sinks (the dispatcher, log pipelines): this test pins them.
func TestEventJSONShape(t *testing.T) {
	b, err := MarshalEvent(fullEvent())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id":             "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b",
		"time":           "2025-01-02T03:04:05.678Z",
		"request_id":     "req-1",
		"project_id":     "proj-1",
		"token_id":       "tok_pub_1",
		"method":         "POST",
		"path":           "/v1/chat/completions",
		"model":          "gpt-4.1-mini",
		"status":         float64(200),
		"stream":         true,
		"cache_status":   "miss",
		"outcome":        "forwarded",
		"latency_ms":     250.5,
		"ttfb_ms":        80.25,
		"usage_source":   "provider",
		"cost_usd":       0.000123,
		"cost_micro_usd": "123",
		"price_version":  "2025-01-01",
		"client_address": "203.0.113.7",
		"aborted":        true,
		"error_code":     "rate_limit_exceeded",
		"response_model": "gpt-4.1-mini-2025-04-14",
		"end_user":       "user-42",
		"trace_id":       "4bf92f3577b34da6a3ce929d0e0e4736",
		"span_id":        "00f067aa0ba902b7",
		"parent_span_id": "b7ad6b7169203331",
		"limit_decision": "allowed",
		"finish_reasons": []any{"stop", "tool_calls"},
		"capture": map[string]any{
			"request": `{"model":"gpt-4.1-mini"}`, "request_truncated": true, "response": `{"id":"c1"}`, "response_truncated": false,
			"request_content_type": "application/json", "request_bytes": "70000", "response_content_type": "text/event-stream", "response_bytes": "900",
		},
		"usage": map[string]any{
			"prompt_tokens":     "12",
			"completion_tokens": "5",
			"cached_tokens":     "2",
			"reasoning_tokens":  "1",
			"total_tokens":      "17",
		},
	}
	for k, v := range want {
		if sub, ok := v.(map[string]any); ok {
			gotSub, _ := m[k].(map[string]any)
			for sk, sv := range sub {
				if gotSub[sk] != sv {
					t.Errorf("%s.%s = %#v, want %#v", k, sk, gotSub[sk], sv)
				}
			}
			if len(gotSub) != len(sub) {
				t.Errorf("%s has keys %v", k, sortedKeys(gotSub))
			}
			continue
		}
		if l, ok := v.([]any); ok {
			if fmt.Sprint(m[k]) != fmt.Sprint(l) {
				t.Errorf("%s = %#v, want %#v", k, m[k], v)
			}
			continue
		}
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("keys %v, want %v", sortedKeys(m), sortedKeys(want))
	}
}

// Zero values are written, so every line has the same scalar keys; unset
// messages are left out rather than null.
func TestEventJSONZeroValues(t *testing.T) {
	b, err := MarshalEvent(&llmproxyv1.UsageEvent{Id: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"status": float64(0), "stream": false, "model": "", "cost_micro_usd": "0", "latency_ms": float64(0)} {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, v)
		}
	}
	for _, k := range []string{"usage", "time"} {
		if _, ok := m[k]; ok {
			t.Errorf("unset %s is written: %s", k, b)
		}
	}
}

func TestUnmarshalEventLenient(t *testing.T) {
	in := `{"id":"e1","request_id":"r1","status":200,"future_field":{"x":1},` +
		`"usage":{"prompt_tokens":12,"total_tokens":"17"},"costMicroUsd":5}`
	ev, err := UnmarshalEvent([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &llmproxyv1.UsageEvent{Id: "e1", RequestId: "r1", Status: 200, CostMicroUsd: 5,
		Usage: &llmproxyv1.Usage{PromptTokens: 12, TotalTokens: 17}}
	if !proto.Equal(ev, want) {
		t.Fatalf("got %v, want %v", ev, want)
	}
	for _, bad := range []string{``, `[]`, `{"status":"x"}`, `{"id":1}`} {
		if _, err := UnmarshalEvent([]byte(bad)); err == nil {
			t.Errorf("UnmarshalEvent(%q) succeeded", bad)
		}
	}
}

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewEventID(t *testing.T) {
	seen := make(map[string]bool)
	for range 10000 {
		id := NewEventID()
		if !uuidV7.MatchString(id) {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("%q made twice", id)
		}
		seen[id] = true
	}
}

func TestEventIDSortsByTime(t *testing.T) {
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var ids []string
	// Later times with ever smaller random bits: order must come from the
	// time alone, to sub-millisecond precision.
	for i, d := range []time.Duration{0, 300 * time.Nanosecond, 100 * time.Microsecond, 999 * time.Microsecond,
		time.Millisecond, time.Second, 48 * time.Hour, 200 * 24 * time.Hour * 365} {
		var r [8]byte
		for j := range r {
			r[j] = byte(255 - i)
		}
		id := newEventID(base.Add(d), r)
		if !uuidV7.MatchString(id) {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("ids out of time order:\n%s", strings.Join(ids, "\n"))
	}
	// The first 48 bits are the Unix time in milliseconds.
	id := newEventID(time.UnixMilli(0x0190a5b27c3d), [8]byte{})
	if want := "0190a5b2-7c3d-7000-8000-000000000000"; id != want {
		t.Fatalf("got %s, want %s", id, want)
	}
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func BenchmarkMarshalEvent(b *testing.B) {
	ev := fullEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalEvent(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewEventID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewEventID()
	}
}
