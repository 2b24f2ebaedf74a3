package extproc

import (
	"bytes"
	"context"
	"testing"
)

// sseChunk is one content chunk of a chat completion stream, as OpenAI sends
// it once include_usage is on.
const sseChunk = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764633600,"model":"gpt-4o","service_tier":"default",` +
	`"system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"

// streamInFlight is a stream past its response headers: an SSE answer whose
// usage llm-proxy asked for, each chunk read for usage and filtered.
func streamInFlight(tb testing.TB) *stream {
	tb.Helper()
	srv := NewServer(testOptions(tb, fakeAuth{goodToken: nil}, &bytes.Buffer{}))
	st := srv.newStream(context.Background())
	st.handle(requestHeaders(":method", "POST", ":path", "/v1/chat/completions", "x-request-id", "rid-1",
		"authorization", "Bearer "+goodToken, "content-type", "application/json"))
	if body := st.handle(reqBody(`{"model":"gpt-4o","messages":[{"role":"user","content":"Say hi"}],"stream":true}`)); !st.includeUsage.injected {
		tb.Fatalf("the stream is not the one measured: %v", body)
	}
	st.handle(respHeaders(200, "content-type", "text/event-stream"))
	if !st.usage.read || !st.usage.sse {
		tb.Fatal("the response is not read as SSE")
	}
	return st
}

// In the steady state a stream's chunk costs the sidecar no allocation of its
// own: not in the phase machine, the usage filter, the usage parser, nor the
// answer (gRPC's decoding and encoding of the messages are not counted).
func TestStreamChunkAllocs(t *testing.T) {
	st := streamInFlight(t)
	msg := respBody(sseChunk, false)
	for range 100 { // past the growth of the reply text's buffer
		st.handle(msg)
	}
	if n := testing.AllocsPerRun(1000, func() { st.handle(msg) }); n != 0 {
		t.Errorf("%v allocations per chunk", n)
	}
}

func BenchmarkStreamChunk(b *testing.B) {
	st := streamInFlight(b)
	msg := respBody(sseChunk, false)
	b.ReportAllocs()
	b.SetBytes(int64(len(sseChunk)))
	for b.Loop() {
		st.handle(msg)
	}
}
