package extproc

import (
	"mime"
	"strconv"
	"strings"
	"sync"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/redact"
	"github.com/llm-proxy/llm-proxy/transcript"
)

// captureState is what the capture feature keeps of one stream whose project
// captures bodies (policy.Capture): a copy of the JSON request body and of
// the response as the client received it — a stream merged as it passes —
// each within the project's cap. Nothing is redacted or encoded until the
// event is built, after the response has reached the client.
type captureState struct {
	on bool

	reqType      string
	reqBytes     int64
	req          []byte
	reqTruncated bool

	respType      string
	respBytes     int64
	readResp      bool               // the response is JSON or SSE, and read
	merger        *transcript.Merger // a stream's events, merged
	resp          []byte             // a JSON response (or any compressed one), up to the cap
	respTruncated bool
	encoding      string
}

// startCapture turns capture on for an authenticated request of a project
// that captures, when events are emitted at all (the capture travels in the
// event).
func (st *stream) startCapture(h headers) {
	c := st.principal.Capture
	if !c.Enabled || st.srv.events == nil {
		return
	}
	st.capture.on = true
	st.capture.reqType = h.get("content-type")
	st.capture.reqBytes, _ = strconv.ParseInt(h.get("content-length"), 10, 64)
}

// keepRequest copies the JSON request body, up to the cap: Envoy's message,
// and the body in it, is gone once it is answered.
func (st *stream) keepRequest(body []byte) {
	if !st.capture.on {
		return
	}
	st.capture.reqBytes = int64(len(body))
	limit := st.principal.Capture.RequestCap()
	if len(body) > limit {
		body, st.capture.reqTruncated = body[:limit], true
	}
	st.capture.req = append([]byte(nil), body...)
}

// watchCapture decides from the response headers whether the body is worth
// reading: JSON and event streams are; audio, images and files are recorded
// by type and size only.
func (st *stream) watchCapture(h headers) {
	if !st.capture.on {
		return
	}
	st.capture.respType = h.get("content-type")
	st.capture.respBytes, _ = strconv.ParseInt(h.get("content-length"), 10, 64)
	media, _, _ := mime.ParseMediaType(st.capture.respType)
	sse := media == "text/event-stream"
	if !sse && media != "application/json" {
		return
	}
	st.capture.readResp = true
	st.capture.respBytes = 0 // counted as the body passes
	if enc := strings.ToLower(strings.TrimSpace(h.get("content-encoding"))); enc != "" && enc != "identity" {
		st.capture.encoding = enc // kept raw, decoded at the end
		return
	}
	if kind, ok := transcript.KindOf(st.path); ok && sse {
		st.capture.merger = transcript.NewMerger(kind, st.principal.Capture.ResponseCap())
	}
}

// captureResponse takes one response chunk as the client receives it.
func (st *stream) captureResponse(chunk []byte) {
	c := &st.capture
	if !c.readResp {
		return
	}
	c.respBytes += int64(len(chunk))
	if c.merger != nil {
		c.merger.Write(chunk)
		return
	}
	limit := st.principal.Capture.ResponseCap()
	if c.encoding != "" {
		limit = maxJSONResponse // compressed: the cap applies once decoded
	}
	if room := limit - len(c.resp); len(chunk) > room {
		chunk, c.respTruncated = chunk[:max(room, 0)], true
	}
	c.resp = append(c.resp, chunk...)
}

// captured is the request's capture for its event, redacted: the secrets
// every capture loses and the project's patterns. It runs from finish, after
// the client has its response.
func (st *stream) captured() *llmproxyv1.Capture {
	c := &st.capture
	if !c.on {
		return nil
	}
	r := st.srv.redactors.get(st.principal.Capture.Redact)
	out := &llmproxyv1.Capture{
		RequestTruncated: c.reqTruncated, RequestContentType: c.reqType, RequestBytes: c.reqBytes,
		ResponseContentType: c.respType, ResponseBytes: c.respBytes,
	}
	if len(c.req) > 0 {
		out.Request = string(r.JSON(c.req))
	}
	resp, truncated := st.capturedResponse()
	if len(resp) > 0 {
		out.Response = string(r.JSON(resp))
	}
	out.ResponseTruncated = truncated
	return out
}

// capturedResponse is the response body as captured: a stream merged, a
// compressed body decoded, both within the cap.
func (st *stream) capturedResponse() ([]byte, bool) {
	c := &st.capture
	switch {
	case c.merger != nil:
		return c.merger.Result()
	case c.encoding != "" && c.respTruncated:
		return nil, true // part of a compressed body says nothing
	case c.encoding != "":
		limit := st.principal.Capture.ResponseCap()
		b, err := decode(c.encoding, c.resp, maxJSONResponse)
		if err != nil {
			return nil, true
		}
		if kind, ok := transcript.KindOf(st.path); ok && strings.HasPrefix(c.respType, "text/event-stream") {
			m := transcript.NewMerger(kind, limit)
			m.Write(b)
			return m.Result()
		}
		if len(b) > limit {
			return b[:limit], true
		}
		return b, false
	}
	return c.resp, c.respTruncated
}

// summary is what the response says about itself beyond usage: the model
// that answered and why it stopped. It is read only when something shows it
// (capture, or traces), since a stream is otherwise never decoded.
func (st *stream) summary() transcript.Summary {
	kind, ok := transcript.KindOf(st.path)
	if !ok || st.status != 200 {
		return transcript.Summary{}
	}
	if st.capture.merger != nil {
		return st.capture.merger.Summary()
	}
	if st.capture.readResp && st.capture.encoding == "" && !st.capture.respTruncated {
		return transcript.Summarize(kind, st.capture.resp)
	}
	if st.usage.read && !st.usage.sse && !st.usage.truncated {
		return transcript.Summarize(kind, st.usage.body)
	}
	return transcript.Summary{}
}

// redactorCache keeps one compiled [redact.Redactor] per list of patterns:
// projects share few lists, and compiling regexps per request would cost
// more than redacting.
type redactorCache struct {
	mu sync.Mutex
	m  map[string]*redact.Redactor
}

// maxRedactors bounds the cache; past it the cache starts again (lists are
// few, so this happens only if projects change their patterns very often).
const maxRedactors = 1024

// get returns the redactor of patterns. A list that does not compile (the
// management API refuses such lists, so only a store edited by hand holds
// one) redacts the secrets every capture loses, and nothing else.
func (c *redactorCache) get(patterns []string) *redact.Redactor {
	key := strings.Join(patterns, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[key]; ok {
		return r
	}
	r, err := redact.New(patterns)
	if err != nil {
		r, _ = redact.New(nil)
	}
	if c.m == nil || len(c.m) >= maxRedactors {
		c.m = make(map[string]*redact.Redactor)
	}
	c.m[key] = r
	return r
}
