package envoy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/llm-proxy/llm-proxy/envoy"
	"github.com/llm-proxy/llm-proxy/tests/envoytest"
)

// notReady is the body of /healthz's 503, in the OpenAI error shape.
const notReady = `{"error":{"code":"proxy_unavailable","message":"Not ready: the llm-proxy sidecar is unhealthy or Envoy is draining.","param":null,"type":"server_error"}}` + "\n"

// GET /healthz on the public listener is Envoy's own answer, tied to its
// active gRPC health check of the sidecar cluster: 200 while the sidecar says
// SERVING, 503 once it says NOT_SERVING or is gone. The sidecar never sees
// the request (no ext_proc stream), whatever its state.
func TestHealthzFollowsSidecarHealth(t *testing.T) {
	envoytest.Binary(t)
	upstream, caFile, _ := startUpstream(t)
	sidecar, sidecarAddr, stopSidecar := startSidecar(t)
	manage := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(manage.Close)
	port := envoytest.FreePort(t)
	cfg, err := envoy.Render(envoy.RenderOptions{
		ListenerPort:   port,
		AdminPort:      envoytest.FreePort(t),
		ExtProcAddr:    sidecarAddr,
		ManageAddr:     manage.Listener.Addr().String(),
		Upstream:       upstream,
		UpstreamCAFile: caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := envoytest.Start(t, cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	healthFlags := func() string {
		flags, err := e.HealthFlags("llm_proxy_extproc")
		if err != nil {
			t.Fatal(err)
		}
		return flags
	}
	waitFlags := func(want string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second) // interval 5s, unhealthy_threshold 2
		for got := healthFlags(); got != want; got = healthFlags() {
			if time.Now().After(deadline) {
				t.Fatalf("sidecar health flags %q, want %q within 45s", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	healthz := func(want int, wantBody string) {
		t.Helper()
		n := len(sidecar.seen())
		for _, method := range []string{"GET", "HEAD"} {
			r := do(t, method, base+"/healthz", nil, nil)
			if r.status != want {
				t.Errorf("%s /healthz: %d %q, want %d", method, r.status, r.body, want)
			}
			if method == "GET" && r.body != wantBody {
				t.Errorf("GET /healthz body %q, want %q", r.body, wantBody)
			}
		}
		if got := sidecar.seen(); len(got) != n {
			t.Errorf("the sidecar saw /healthz: %q", got[n:])
		}
	}

	waitFlags("healthy")
	healthz(200, "")

	sidecar.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	waitFlags("/failed_active_hc")
	healthz(503, notReady)

	sidecar.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	waitFlags("healthy")
	healthz(200, "")

	stopSidecar()
	waitFlags("/failed_active_hc")
	healthz(503, notReady)
}
