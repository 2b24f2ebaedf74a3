package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// /readyz and `llm-proxy healthcheck` report Redis: a cluster named rightly
// is ready, one of its nodes named as a single server is not (every call
// would answer MOVED), and an unreachable Redis is reported while the
// replica stays ready on its failure modes.
func TestReadinessReportsRedis(t *testing.T) {
	cluster := testenv.NewRedisCluster(t, 3)
	for _, tc := range []struct {
		name, url string
		status    int
		report    string
	}{
		{"cluster", cluster.URL(), 200, "ok\nstore: ok\nredis: ok (cluster)\n"},
		{"single", testenv.Redis(t), 200, "ok\nstore: ok\nredis: ok (single)\n"},
		{"cluster node as a single server", "redis://" + cluster.Nodes[0].Addr() + "/0", 503,
			"not ready\nstore: ok\nredis: redis is not the kind of deployment its URL names: " + cluster.Nodes[0].Addr() +
				" is a Redis Cluster node: name the cluster (?addr=host:port for each more seed node, or ?cluster=true)\n"},
		{"unreachable", "redis://127.0.0.1:1/0", 200,
			"ok\nstore: ok\nredis: unreachable (single; limits follow LLM_PROXY_LIMIT_FAILURE_MODES)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, env := startServeEnv(t, map[string]string{"LLM_PROXY_REDIS_URL": tc.url, "LLM_PROXY_REDIS_PREFIX": "ready-test:"})
			resp, err := http.Get("http://" + env["LLM_PROXY_HTTP_ADDR"] + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || string(body) != tc.report {
				t.Fatalf("/readyz: %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.report)
			}
			err = Run(context.Background(), []string{"healthcheck"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
			if tc.status == 200 {
				if err != nil {
					t.Fatalf("healthcheck: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "is a Redis Cluster node") {
				t.Fatalf("healthcheck: %v, want the report naming the cluster node", err)
			}
		})
	}
}
