package cachefilter_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

// counterValue is the value of counter series name (with result label
// result, unless "") gathered from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := result == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{result=%q}", name, result)
	return 0
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := cachefilter.NewMemory(cachefilter.Options{MaxBytes: 1 << 20, Registerer: reg})
	// A second cache on the same registry shares the series.
	_ = cachefilter.NewMemory(cachefilter.Options{MaxBytes: 1 << 20, Registerer: reg})
	ctx := context.Background()
	c.Get(ctx, "p", "k")
	if err := c.Set(ctx, "p", "k", &cachefilter.Entry{Status: 200, Body: []byte("x"), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	c.Get(ctx, "p", "k")
	c.Get(ctx, "p", "k")
	for result, want := range map[string]float64{"hit": 2, "miss": 1, "error": 0} {
		if got := counterValue(t, reg, "llm_proxy_cache_requests_total", result); got != want {
			t.Errorf("requests{result=%s} = %v, want %v", result, got, want)
		}
	}
}
