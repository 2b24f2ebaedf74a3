package extproc

import (
	"regexp"
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
)

func withTracing(_ *harness, o *Options) { o.Tracing = true }

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

// With tracing on, the upstream gets a traceparent naming the client's trace
// and the gateway's own span; the event carries the three ids. Without a
// valid client traceparent the request starts a new sampled trace.
func TestTraceparentSentUpstream(t *testing.T) {
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		name       string
		header     []string
		wantTrace  string // "" = a new one
		wantParent string
		wantFlags  string
	}{
		{"client trace", []string{"traceparent", "00-" + clientTrace + "-" + clientSpan + "-00"}, clientTrace, clientSpan, "00"},
		{"none", nil, "", "", "01"},
		{"upper-case hex is invalid", []string{"traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"}, "", "", "01"},
		{"zero trace id is invalid", []string{"traceparent", "00-00000000000000000000000000000000-" + clientSpan + "-01"}, "", "", "01"},
		{"future version with more fields", []string{"traceparent", "cc-" + clientTrace + "-" + clientSpan + "-01-extra"}, clientTrace, clientSpan, "01"},
		{"version 00 with more fields is invalid", []string{"traceparent", "00-" + clientTrace + "-" + clientSpan + "-01-extra"}, "", "", "01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withTracing)
			c := h.open()
			resp := c.send(reqHeaders("GET", "/v1/models", tokFree, tc.header...))
			tp := setHeaders(resp)["traceparent"]
			m := traceparentRE.FindStringSubmatch(tp)
			if m == nil {
				t.Fatalf("traceparent sent upstream = %q", tp)
			}
			c.send(respHeaders(200, "content-type", "application/json"))
			ev := c.end()
			if ev.TraceId != m[1] || ev.SpanId != m[2] || m[3] != tc.wantFlags {
				t.Errorf("event trace %s span %s; header %q (want flags %s)", ev.TraceId, ev.SpanId, tp, tc.wantFlags)
			}
			if tc.wantTrace != "" && ev.TraceId != tc.wantTrace {
				t.Errorf("trace id %s, want the client's %s", ev.TraceId, tc.wantTrace)
			}
			if ev.SpanId == clientSpan || ev.ParentSpanId != tc.wantParent {
				t.Errorf("span %s parent %q, want a span of our own under %q", ev.SpanId, ev.ParentSpanId, tc.wantParent)
			}
		})
	}
}

// Tracing off (the default): no traceparent is touched and events carry no ids.
func TestTracingOff(t *testing.T) {
	h := newHarness(t)
	c := h.open()
	resp := c.send(reqHeaders("GET", "/v1/models", tokFree, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	if tp, ok := setHeaders(resp)["traceparent"]; ok {
		t.Errorf("traceparent set to %q with tracing off", tp)
	}
	c.send(respHeaders(200, "content-type", "application/json"))
	if ev := c.end(); ev.TraceId != "" || ev.SpanId != "" || ev.ParentSpanId != "" {
		t.Errorf("event ids %q %q %q with tracing off", ev.TraceId, ev.SpanId, ev.ParentSpanId)
	}
}

// The event says what the limiter decided: nothing when no limit applies,
// "allowed", and "limited" for the request a limit refused.
func TestLimitDecision(t *testing.T) {
	h := newHarness(t, func(h *harness, _ *Options) {
		p := h.auth.principals[tokFree]
		p.TokenID, p.TokenLimits = "tok_one_rpm", store.Limits{RequestsPerMinute: ptr(int64(1))}
		h.auth.principals["llmp_one_rpm"] = p
	})
	get := func(token string) string {
		c := h.open()
		if st, _, _ := immediate(c.send(reqHeaders("GET", "/v1/models", token))); st == 0 {
			c.send(respHeaders(200, "content-type", "application/json"))
		}
		return c.end().LimitDecision
	}
	for i, want := range []struct{ token, decision string }{
		{tokFree, ""}, {"llmp_one_rpm", "allowed"}, {"llmp_one_rpm", "limited"},
	} {
		if got := get(want.token); got != want.decision {
			t.Errorf("request %d (%s): limit_decision %q, want %q", i, want.token, got, want.decision)
		}
	}
}
