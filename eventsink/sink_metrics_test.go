package eventsink

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

func TestMetricsSink(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetricsSink(reg)
	usage := &llmproxyv1.Usage{PromptTokens: 10, CompletionTokens: 5, CachedTokens: 4}
	err := m.Write(context.Background(), []*llmproxyv1.UsageEvent{
		{ProjectId: "proj_a", Model: "gpt-4o", Status: 200, Outcome: "forwarded", Usage: usage, CostMicroUsd: 1500},
		{ProjectId: "proj_a", Model: "gpt-4o", Status: 200, Outcome: "forwarded", Usage: usage, CostMicroUsd: 500},
		{ProjectId: "proj_a", Status: 429, Outcome: "denied"},
		{Status: 401, Outcome: "denied"},
		// A settlement: its usage and cost count, it is no request.
		{Method: "SETTLE", ProjectId: "proj_b", Model: "gpt-4o-mini", Status: 200, Outcome: "settled",
			Usage: &llmproxyv1.Usage{PromptTokens: 100}, CostMicroUsd: 250},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.requests.WithLabelValues("200", "forwarded"), 2},
		{m.requests.WithLabelValues("429", "denied"), 1},
		{m.requests.WithLabelValues("401", "denied"), 1},
		{m.tokens.WithLabelValues("proj_a", "gpt-4o", "prompt"), 20},
		{m.tokens.WithLabelValues("proj_a", "gpt-4o", "completion"), 10},
		{m.tokens.WithLabelValues("proj_a", "gpt-4o", "cached"), 8},
		{m.tokens.WithLabelValues("proj_b", "gpt-4o-mini", "prompt"), 100},
		{m.cost.WithLabelValues("proj_a", "gpt-4o"), 0.002},
		{m.cost.WithLabelValues("proj_b", "gpt-4o-mini"), 0.00025},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%v = %v, want %v", tc.c, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.requests); n != 3 {
		t.Errorf("%d request series, want 3 (the settlement is none)", n)
	}
}

// The GenAI convention metrics: exact histogram contents for forwarded
// operations, streams' first chunk, failures by status, and no series for
// refusals, unauthenticated requests, non-GenAI paths or a model nobody
// accepted.
func TestMetricsSinkGenAI(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetricsSink(reg)
	err := m.Write(context.Background(), []*llmproxyv1.UsageEvent{
		{ProjectId: "p", Path: "/v1/chat/completions", Model: "gpt-4o", ResponseModel: "gpt-4o-2024-08-06", Status: 200, Outcome: "forwarded",
			LatencyMs: 1500, TtfbMs: 30, Stream: true, Usage: &llmproxyv1.Usage{PromptTokens: 10, CompletionTokens: 300}},
		{ProjectId: "p", Path: "/v1/chat/completions", Model: "gpt-4o", ResponseModel: "gpt-4o-2024-08-06", Status: 200, Outcome: "forwarded",
			LatencyMs: 100, TtfbMs: 100, Usage: &llmproxyv1.Usage{PromptTokens: 20, CompletionTokens: 2}},
		{ProjectId: "p", Path: "/v1/embeddings", Model: "text-embedding-3-small", Status: 200, Outcome: "forwarded", LatencyMs: 50,
			Usage: &llmproxyv1.Usage{PromptTokens: 8}},
		{ProjectId: "p", Path: "/v1/responses", Model: "no-such-model-123", Status: 404, Outcome: "forwarded", LatencyMs: 20},
		{ProjectId: "p", Path: "/v1/chat/completions", Model: "gpt-4o", Status: 429, Outcome: "denied"},
		{Path: "/v1/chat/completions", Status: 401, Outcome: "denied"},
		{ProjectId: "p", Path: "/v1/files", Status: 200, Outcome: "forwarded", LatencyMs: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	type obs struct {
		labels []string
		count  uint64
		sum    float64
	}
	check := func(name string, h *prometheus.HistogramVec, want []obs, series int) {
		t.Helper()
		for _, w := range want {
			o, err := h.GetMetricWithLabelValues(w.labels...)
			if err != nil {
				t.Fatal(err)
			}
			var pb dto.Metric
			if err := o.(prometheus.Metric).Write(&pb); err != nil {
				t.Fatal(err)
			}
			if got := pb.GetHistogram(); got.GetSampleCount() != w.count || got.GetSampleSum() != w.sum {
				t.Errorf("%s%v: count %d sum %v, want %d and %v", name, w.labels, got.GetSampleCount(), got.GetSampleSum(), w.count, w.sum)
			}
		}
		if n := testutil.CollectAndCount(h); n != series {
			t.Errorf("%s: %d series, want %d", name, n, series)
		}
	}
	chat := []string{"chat", "openai", "gpt-4o", "gpt-4o-2024-08-06"}
	emb := []string{"embeddings", "openai", "text-embedding-3-small", ""}
	check("gen_ai_client_token_usage", m.genAITokens, []obs{
		{append(chat, "input"), 2, 30}, {append(chat, "output"), 2, 302},
		{append(emb, "input"), 1, 8}, {append(emb, "output"), 1, 0},
	}, 4)
	check("gen_ai_client_operation_duration_seconds", m.genAIDuration, []obs{
		{append(chat, ""), 2, 1.6}, {append(emb, ""), 1, 0.05},
		{[]string{"chat", "openai", "_other", "", "404"}, 1, 0.02},
	}, 3)
	check("gen_ai_client_operation_time_to_first_chunk_seconds", m.genAIFirstChunk, []obs{{chat, 1, 0.03}}, 1)
}
