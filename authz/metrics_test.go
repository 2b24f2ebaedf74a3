package authz

import (
	"context"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsAreRegistered(t *testing.T) {
	f := newFixture(t, nil)
	reg := prometheus.NewRegistry()
	a := f.authorizer(f.s, Options{Registerer: reg})
	f.authorizer(f.s, Options{Registerer: reg}) // a second one shares the series
	unknown, _ := NewToken()
	for range 3 {
		a.AuthenticateFrom(context.Background(), sprayer, unknown)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	want := map[string]float64{
		"llm_proxy_authz_token_loads_total":              1,
		"llm_proxy_authz_negative_cache_hits_total":      2,
		"llm_proxy_authz_stale_loads_total":              0,
		"llm_proxy_authz_failures_gated_total":           0,
		"llm_proxy_authz_denials_audit_suppressed_total": 0,
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %t), want %v", name, g, ok, v)
		}
	}
	if len(got) != len(want) {
		names := make([]string, 0, len(got))
		for n := range got {
			names = append(names, n)
		}
		slices.Sort(names)
		t.Errorf("series %v, want exactly %d", names, len(want))
	}
}
