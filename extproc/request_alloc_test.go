package extproc

import (
	"bytes"
	"context"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// chatAnswer is a non-streamed chat completion as OpenAI sends it.
const chatAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1764633600,"model":"gpt-4o-2024-08-06",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello, benchmark!","refusal":null,"annotations":[]},` +
	`"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":4,"total_tokens":18,` +
	`"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,` +
	`"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}`

// discardEvents takes usage events and keeps none, as a sink that is not
// part of what is measured.
type discardEvents struct{}

func (discardEvents) Emit(*llmproxyv1.UsageEvent) {}

// chatRequest is one non-streamed chat completion as Envoy relays it: the
// four messages, in order, and their answers' checks.
type chatRequest struct {
	headers, body, respHeaders, respBody *extprocv3.ProcessingRequest
}

func newChatRequest() chatRequest {
	return chatRequest{
		headers: requestHeaders(":method", "POST", ":path", "/v1/chat/completions", "x-request-id", "rid-1",
			"authorization", "Bearer "+goodToken, "content-type", "application/json", "user-agent", "wrk", "content-length", "87"),
		body:        reqBody(`{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello to the benchmark."}]}`),
		respHeaders: respHeaders(200, "content-type", "application/json", "content-length", "580", "openai-processing-ms", "120"),
		respBody:    respBody(chatAnswer, true),
	}
}

// run plays the request on a new stream of srv and finishes it, as Process
// does; it reports whether every phase was answered as a charged request's.
func (r chatRequest) run(srv *Server) bool {
	st := srv.newStream(context.Background())
	ok := st.handle(r.headers).GetRequestHeaders() != nil &&
		st.handle(r.body).GetRequestBody() != nil &&
		st.handle(r.respHeaders).GetResponseHeaders() != nil &&
		st.handle(r.respBody).GetResponseBody() != nil
	st.finish()
	return ok
}

func chatServer(tb testing.TB) *Server {
	tb.Helper()
	o := testOptions(tb, fakeAuth{goodToken: nil}, &bytes.Buffer{})
	reg := prometheus.NewRegistry()
	o.Registerer, o.Metrics, o.Events = reg, NewMetrics(reg), discardEvents{}
	return NewServer(o)
}

// BenchmarkChatRequest is the sidecar's own work for one non-streamed chat
// completion, all four phases and finish, without gRPC: what a pool or a
// precomputed value can still save shows in its allocations.
func BenchmarkChatRequest(b *testing.B) {
	srv := chatServer(b)
	r := newChatRequest()
	if !r.run(srv) {
		b.Fatal("the request was not answered as a charged chat completion")
	}
	b.ReportAllocs()
	for b.Loop() {
		r.run(srv)
	}
}
