package extproc

import (
	"encoding/hex"
	"math/rand/v2"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// traceState is the request's place in a W3C trace, when tracing is on
// (Options.Tracing): the trace it joins, the span llm-proxy gives it, and the
// client's span, its parent. The span itself is exported later, from the
// usage event (eventsink/dispatch), never on the request path; here the
// ids are only chosen and sent upstream, so that OpenAI's side of the call
// (and any proxy before it) nests under the gateway's span.
type traceState struct {
	traceID, spanID, parentID string
	flags                     string
}

// startTrace chooses the request's span, under the client's traceparent
// when it sent a valid one; otherwise the request starts a new, sampled
// trace. Every request gets one, denials and cache hits included: their
// spans show what the gateway decided.
func (st *stream) startTrace(h headers) {
	if !st.srv.tracing {
		return
	}
	t := &st.trace
	if tid, pid, flags, ok := parseTraceparent(h.get("traceparent")); ok {
		t.traceID, t.parentID, t.flags = tid, pid, flags
	} else {
		t.traceID, t.flags = randomHex(16), "01"
	}
	t.spanID = randomHex(8)
}

// traceHeader is the traceparent sent upstream in place of the client's:
// the same trace, our span as the parent. tracestate passes through
// untouched, as the W3C spec asks of a participant that adds nothing to it.
func (st *stream) traceHeader() *corev3.HeaderValueOption {
	t := &st.trace
	return setHeader("traceparent", "00-"+t.traceID+"-"+t.spanID+"-"+t.flags)
}

// parseTraceparent reads a version-00 traceparent header
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"). An all-zero id,
// upper-case hex or any other shape is invalid, and the trace starts anew.
// Later versions may append fields after the flags; their first four are
// read the same way, as the spec says.
func parseTraceparent(v string) (traceID, parentID, flags string, ok bool) {
	v = strings.TrimSpace(v)
	if len(v) < 55 || (len(v) > 55 && (v[:2] == "00" || v[55] != '-')) {
		return "", "", "", false
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' || v[:2] == "ff" {
		return "", "", "", false
	}
	version, traceID, parentID, flags := v[:2], v[3:35], v[36:52], v[53:55]
	for _, f := range []string{version, traceID, parentID, flags} {
		if !lowerHex(f) {
			return "", "", "", false
		}
	}
	if allZero(traceID) || allZero(parentID) {
		return "", "", "", false
	}
	return traceID, parentID, flags, true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

// randomHex is n random bytes in lower-case hex, never all zero. Trace and
// span ids need to be unique, not secret (W3C trace context), so the
// runtime's fast generator does.
func randomHex(n int) string {
	b := make([]byte, n)
	for {
		for i := 0; i < n; i += 8 {
			v := rand.Uint64()
			for j := 0; j < 8 && i+j < n; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		if s := hex.EncodeToString(b); !allZero(s) {
			return s
		}
	}
}
