package eventsink

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// protoJSON is the encoding appendEvent writes by hand.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// fill sets every field of m, recursively, to a random value of its kind. A
// field kind it does not know fails the test: event.proto gained something
// appendEvent must learn too.
func fill(t *testing.T, r *rand.Rand, m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if r.IntN(8) == 0 && fd.Kind() != protoreflect.MessageKind {
			continue // some zero values: they must be written too
		}
		if fd.IsList() {
			if fd.Kind() != protoreflect.StringKind {
				t.Fatalf("repeated field %s of kind %s: teach appendEvent and this test about it", fd.FullName(), fd.Kind())
			}
			l := m.Mutable(fd).List()
			for range r.IntN(4) {
				l.Append(protoreflect.ValueOfString(randomString(r)))
			}
			continue
		}
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString(randomString(r))
		case protoreflect.Int32Kind:
			v = protoreflect.ValueOfInt32(r.Int32N(600))
		case protoreflect.Int64Kind:
			v = protoreflect.ValueOfInt64(r.Int64() - math.MaxInt64/2)
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(r.IntN(2) == 0)
		case protoreflect.DoubleKind:
			v = protoreflect.ValueOfFloat64([]float64{0, r.Float64() * 1e4, r.ExpFloat64() * 1e-9, 1e21 * r.Float64(), -3.5}[r.IntN(5)])
		case protoreflect.MessageKind:
			if r.IntN(6) == 0 {
				continue // unset: left out
			}
			if fd.Message().FullName() == "google.protobuf.Timestamp" {
				nanos := []int32{0, 123_000_000, 123_456_000, 123_456_789}[r.IntN(4)]
				v = protoreflect.ValueOfMessage((&timestamppb.Timestamp{Seconds: r.Int64N(maxTimestampSeconds), Nanos: nanos}).ProtoReflect())
				break
			}
			sub := m.NewField(fd).Message()
			fill(t, r, sub)
			v = protoreflect.ValueOfMessage(sub)
		default:
			t.Fatalf("field %s has kind %s: teach appendEvent and this test about it", fd.FullName(), fd.Kind())
		}
		m.Set(fd, v)
	}
}

func randomString(r *rand.Rand) string {
	parts := []string{"", "gpt-4.1-mini", "/v1/chat/completions", `quote " backslash \ slash /`, "tab\tnew\nline\rcr\x00\x1f", "<html>&amp;", "héllo wörld", "日本語", "emoji 🎉", "\u2028\u2029"}
	var s strings.Builder
	for range r.IntN(3) + 1 {
		s.WriteString(parts[r.IntN(len(parts))])
	}
	return s.String()
}

// For events with every field set at random, appendEvent's JSON decodes to
// the same event, and to the same JSON document, as protojson's.
func TestAppendEventMatchesProtoJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		ev := &llmproxyv1.UsageEvent{}
		fill(t, r, ev.ProtoReflect())
		got, err := appendEvent(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		want, err := protoJSON.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalEvent(got)
		if err != nil {
			t.Fatalf("event %d: %v\n%s", i, err, got)
		}
		if !proto.Equal(back, ev) {
			t.Fatalf("event %d: decoded differs\n got %s\nwant %s", i, got, want)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("event %d: not JSON: %v\n%s", i, err, got)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		if !bytes.Equal(gj, wj) {
			t.Fatalf("event %d: documents differ\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestAppendEventExact(t *testing.T) {
	ev := &llmproxyv1.UsageEvent{Id: "e1", Time: &timestamppb.Timestamp{Seconds: 1764633600, Nanos: 5_000_000}, RequestId: "r1",
		Model: "gpt-\xff", Status: 200, LatencyMs: 12.5, Usage: &llmproxyv1.Usage{PromptTokens: 12, TotalTokens: 15}, CostMicroUsd: 60,
		FinishReasons: []string{"stop", "length"}, Capture: &llmproxyv1.Capture{Request: `{"a":1}`, ResponseTruncated: true, ResponseBytes: 300000}}
	got, err := MarshalEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"e1","time":"2025-12-02T00:00:00.005Z","request_id":"r1","project_id":"","token_id":"","method":"","path":"",` +
		`"model":"gpt-` + "\uFFFD" + `","status":200,"stream":false,"cache_status":"","outcome":"","latency_ms":12.5,"ttfb_ms":0,` +
		`"usage":{"prompt_tokens":"12","completion_tokens":"0","cached_tokens":"0","reasoning_tokens":"0","total_tokens":"15"},` +
		`"usage_source":"","cost_usd":0,"cost_micro_usd":"60","price_version":"","client_address":"","aborted":false,"error_code":"",` +
		`"response_model":"","finish_reasons":["stop","length"],"end_user":"","trace_id":"","span_id":"","parent_span_id":"","limit_decision":"",` +
		`"capture":{"request":"{\"a\":1}","request_truncated":false,"response":"","response_truncated":true,"request_content_type":"","request_bytes":"0",` +
		`"response_content_type":"","response_bytes":"300000"}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestAppendEventRefusesTimeOutOfRange(t *testing.T) {
	for _, ts := range []*timestamppb.Timestamp{{Seconds: maxTimestampSeconds + 1}, {Seconds: minTimestampSeconds - 1}, {Nanos: 1e9}, {Nanos: -1}} {
		b := []byte("kept")
		out, err := appendEvent(b, &llmproxyv1.UsageEvent{Time: ts})
		if err == nil || string(out) != "kept" {
			t.Errorf("%v: err %v, out %q", ts, err, out)
		}
	}
}

// Encoding an event allocates nothing beyond the buffer it appends to.
func TestAppendEventAllocs(t *testing.T) {
	ev := &llmproxyv1.UsageEvent{Id: "e1", Time: timestamppb.Now(), RequestId: "r1", Model: "gpt-4.1-mini", Path: "/v1/chat/completions",
		Status: 200, Usage: &llmproxyv1.Usage{PromptTokens: 12, TotalTokens: 15}, CostMicroUsd: 60, CostUsd: 0.00006}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf, _ = appendEvent(buf[:0], ev) }); n != 0 {
		t.Errorf("%v allocations per event", n)
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	ev := &llmproxyv1.UsageEvent{Id: "e1", Time: timestamppb.Now(), RequestId: "r1", Model: "gpt-4.1-mini", Path: "/v1/chat/completions",
		Status: 200, Usage: &llmproxyv1.Usage{PromptTokens: 12, TotalTokens: 15}, CostMicroUsd: 60, CostUsd: 0.00006}
	buf := make([]byte, 0, 4096)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = appendEvent(buf[:0], ev)
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = protoJSON.MarshalAppend(buf[:0], ev)
		}
	})
}
