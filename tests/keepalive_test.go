package tests

import (
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// A request whose upstream stays silent for many of Envoy's keepalive
// intervals (a reasoning model thinking before its first byte) completes and
// is charged: the sidecar's gRPC server accepts Envoy's pings instead of
// closing the connection, and the stream on it, with GOAWAY too_many_pings.
// The ping interval is shortened to 1s here, the server's accepted minimum
// with it, in the ratio the shipped values have.
func TestQuietUpstreamKeepsSidecarConnection(t *testing.T) {
	s := startStack(t, stackOptions{
		sidecarKeepalive: time.Second,
		env:              map[string]string{"LLM_PROXY_GRPC_KEEPALIVE_MIN_TIME": "300ms"},
	})
	since := time.Now()
	p := s.createProject("quiet", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	const msg = "think about it for a while"
	resp, err := s.client(tok.Token).Chat.Completions.New(t.Context(), chatParams(msg),
		option.WithHeader(fakeopenai.HeaderDelay, "6s")) // six ping intervals of silence
	if err != nil {
		t.Fatalf("a request with a quiet upstream failed: %v", err)
	}
	if resp.Choices[0].Message.Content != fakeopenai.EchoReply(msg) {
		t.Fatalf("reply %q", resp.Choices[0].Message.Content)
	}
	s.waitUsage(t, p.ID, since, charged(t, string(resp.Model), 1, pyUsage{
		PromptTokens: int64(fakeopenai.PromptTokens(msg)), CompletionTokens: int64(fakeopenai.CountWords(fakeopenai.EchoReply(msg))),
	}))
}
