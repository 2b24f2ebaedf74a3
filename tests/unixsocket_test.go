package tests

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// With the sidecar on a Unix socket shared with Envoy (LLM_PROXY_GRPC_ADDR
// and envoy-config's sidecar address set to unix:/path), requests go through
// and are charged exactly as over TCP, streams included; the socket is
// removed when the sidecar stops.
func TestSidecarOnUnixSocket(t *testing.T) {
	s := startStack(t, stackOptions{unixSocket: true})
	if !strings.HasPrefix(s.proxyEnv["LLM_PROXY_GRPC_ADDR"], "unix:/") {
		t.Fatalf("sidecar on %q", s.proxyEnv["LLM_PROXY_GRPC_ADDR"])
	}
	since := time.Now()
	p := s.createProject("uds", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	c := s.client(tok.Token)
	const model, msg = "gpt-4.1-mini", "hello over a unix socket"
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(msg)}}
	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != fakeopenai.EchoReply(msg) {
		t.Fatalf("reply %q", resp.Choices[0].Message.Content)
	}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var got strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			got.WriteString(ch.Delta.Content)
		}
	}
	if err := stream.Err(); err != nil || got.String() != fakeopenai.EchoReply(msg) {
		t.Fatalf("streamed %q, %v", got.String(), err)
	}
	// Each request is priced on its own: the roll-up is twice one.
	one := charged(t, model, 1, chatUsage(msg))
	s.waitUsage(t, p.ID, since, usageRollup{Model: model, Requests: 2, PromptTokens: 2 * one.PromptTokens,
		CompletionTokens: 2 * one.CompletionTokens, TotalTokens: 2 * one.TotalTokens, CostMicroUSD: 2 * one.CostMicroUSD})

	_, sock := config.ListenNetwork(s.proxyEnv["LLM_PROXY_GRPC_ADDR"])
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("socket: %v", err)
	}
	s.stop()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after stop: %v", err)
	}
}
