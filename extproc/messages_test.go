package extproc

import (
	"strconv"
	"testing"

	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// exchangeAsEnvoy plays one request the way Envoy does with the reference
// configuration: it sends a phase only when the mode the sidecar asked for
// (or the configuration's, until an answer overrides it) includes it, and
// stops at an immediate response. It returns how many messages were sent.
//
// body is the request's (none when empty); upstream is the upstream's
// response headers and chunks its body (one message each when STREAMED, joined into one
// when BUFFERED).
func exchangeAsEnvoy(t *testing.T, h *harness, headers *extprocv3.ProcessingRequest, body string, upstream *extprocv3.ProcessingRequest, chunks ...string) int {
	t.Helper()
	c := h.open()
	defer c.end()
	sent := 1
	ans := c.send(headers)
	if ans.GetImmediateResponse() != nil {
		return sent
	}
	mode := ans.GetModeOverride()
	if body != "" && mode.GetRequestBodyMode() != procv3.ProcessingMode_NONE {
		sent++
		if ans = c.send(reqBody(body)); ans.GetImmediateResponse() != nil {
			return sent
		}
	}
	if mode.GetResponseHeaderMode() != procv3.ProcessingMode_SEND {
		return sent // nor the body: every mode that asks for it asks for the headers too
	}
	sent++
	ans = c.send(upstream)
	switch ans.GetModeOverride().GetResponseBodyMode() {
	case procv3.ProcessingMode_BUFFERED:
		var whole string
		for _, ch := range chunks {
			whole += ch
		}
		c.send(respBody(whole, true))
		sent++
	case procv3.ProcessingMode_STREAMED:
		for i, ch := range chunks {
			c.send(respBody(ch, i == len(chunks)-1))
			sent++
		}
	}
	return sent
}

// The messages each kind of request costs, as extproc/doc.go lists them:
// each is a round trip on the request's path, for Envoy as for the sidecar.
func TestMessagesPerRequestKind(t *testing.T) {
	const chat = `{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}]}`
	answer := `{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`
	jsonHeaders := respHeaders(200, "content-type", "application/json", "content-length", strconv.Itoa(len(answer)))
	sse := []string{
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}\n\n",
		"data: [DONE]\n\n",
	}
	sseHeaders := respHeaders(200, "content-type", "text/event-stream")
	modelsHeaders := respHeaders(200, "content-type", "application/json", "cache-control", "public, max-age=60")

	h := newHarness(t)
	for _, tc := range []struct {
		name string
		want int
		play func() int
	}{
		{"refused at the gate (no such token)", 1, func() int {
			return exchangeAsEnvoy(t, h, reqHeaders("POST", "/v1/chat/completions", "llmp_nope"), chat, jsonHeaders, answer)
		}},
		{"GET answered by the upstream", 2, func() int {
			return exchangeAsEnvoy(t, h, reqHeaders("GET", "/v1/models", tokFree, "cache-control", "no-cache"), "", modelsHeaders, `{"data":[]}`)
		}},
		{"GET answered from the cache", 1, func() int {
			exchangeAsEnvoy(t, h, reqHeaders("GET", "/v1/models", tokFree), "", modelsHeaders, `{"data":[]}`) // stores it
			return exchangeAsEnvoy(t, h, reqHeaders("GET", "/v1/models", tokFree), "", modelsHeaders, `{"data":[]}`)
		}},
		{"JSON request, JSON answer", 4, func() int {
			return exchangeAsEnvoy(t, h, reqHeaders("POST", "/v1/chat/completions", tokMain), chat, jsonHeaders, answer)
		}},
		{"JSON request, SSE answer of 4 events in 4 chunks", 3 + 4, func() int {
			return exchangeAsEnvoy(t, h, reqHeaders("POST", "/v1/chat/completions", tokMain),
				`{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"stream":true}`, sseHeaders, sse...)
		}},
		{"opted-in POST answered from the cache", 2, func() int {
			exchangeAsEnvoy(t, h, reqHeaders("POST", "/v1/chat/completions", tokCachePOST), chat, jsonHeaders, answer) // stores it
			return exchangeAsEnvoy(t, h, reqHeaders("POST", "/v1/chat/completions", tokCachePOST), chat, jsonHeaders, answer)
		}},
		{"multipart upload (body not read)", 3, func() int {
			return exchangeAsEnvoy(t, h, reqHeaders("POST", "/v1/audio/transcriptions", tokMain, "content-type", "multipart/form-data; boundary=x"),
				"--x--", respHeaders(200, "content-type", "application/json", "content-length", "40"), `{"text":"hi","usage":{"type":"duration","seconds":3}}`)
		}},
	} {
		if got := tc.play(); got != tc.want {
			t.Errorf("%s: %d messages, want %d", tc.name, got, tc.want)
		}
	}
}
