package cli

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/envoy"
)

// Envoy pings the sidecar cluster every connection_keepalive interval, less
// up to its jitter (15% unless interval_jitter says otherwise); the gRPC
// server must accept pings at least that often, or it closes the connection
// (GOAWAY too_many_pings) and fails the streams on it. This ties the two
// shipped values together.
func TestKeepaliveAcceptsEnvoysPings(t *testing.T) {
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string][]byte{"envoy.yaml": envoy.Bootstrap(), "filter-snippet.yaml": envoy.FilterSnippet()} {
		m := regexp.MustCompile(`connection_keepalive:\s*\n\s*interval: (\d+(?:\.\d+)?)s`).FindSubmatch(doc)
		if m == nil {
			t.Fatalf("%s: no connection_keepalive interval on the sidecar cluster", name)
		}
		secs, _ := strconv.ParseFloat(string(m[1]), 64)
		jitter := 0.15
		if j := regexp.MustCompile(`interval_jitter:\s*\{\s*value:\s*(\d+(?:\.\d+)?)`).FindSubmatch(doc); j != nil {
			pct, _ := strconv.ParseFloat(string(j[1]), 64)
			jitter = pct / 100
		}
		shortest := time.Duration(secs * (1 - jitter) * float64(time.Second))
		if cfg.GRPCKeepaliveMinTime > shortest {
			t.Errorf("%s: Envoy may ping every %s, but the gRPC server accepts pings only every %s (LLM_PROXY_GRPC_KEEPALIVE_MIN_TIME)",
				name, shortest, cfg.GRPCKeepaliveMinTime)
		}
	}
}

// A concurrency slot must outlive the longest request Envoy lets through
// (the /v1/ routes' timeout), or a long stream loses its slot and the limit
// is exceeded; streams renew it too.
func TestLeaseOutlivesRouteTimeout(t *testing.T) {
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ms := regexp.MustCompile(`cluster: openai\n(?:.*\n){0,3}?\s*timeout: (\d+)s`).FindAllSubmatch(envoy.Bootstrap(), -1)
	if len(ms) == 0 {
		t.Fatal("envoy.yaml: no timeout on the /v1/ routes")
	}
	for _, m := range ms {
		secs, _ := strconv.Atoi(string(m[1]))
		if route := time.Duration(secs) * time.Second; cfg.ConcurrencyLease <= route {
			t.Errorf("LLM_PROXY_CONCURRENCY_LEASE %s does not outlive the route timeout %s", cfg.ConcurrencyLease, route)
		}
	}
}
