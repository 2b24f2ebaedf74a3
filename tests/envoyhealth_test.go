package tests

import (
	"net/http"
	"testing"
)

// Envoy answers GET /healthz itself (load balancer and kubelet probes): 200
// while the sidecar is healthy, 503 once Envoy's health check of it fails.
func TestEnvoyHealthz(t *testing.T) {
	s := startStack(t, stackOptions{})
	status := func() int {
		resp, err := http.Get(s.envoyURL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != 200 {
		t.Fatalf("/healthz with the sidecar up: %d", got)
	}
	s.stop()
	waitFor(t, "/healthz answering 503 with the sidecar down", func() bool { return status() == 503 })
}
