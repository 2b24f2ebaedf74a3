package eventsink

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
