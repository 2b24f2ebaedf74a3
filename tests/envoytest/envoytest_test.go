package envoytest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestStartServesAndStops(t *testing.T) {
	port := FreePort(t)
	cfg := fmt.Sprintf(`admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
static_resources:
  listeners:
  - address:
      socket_address: { address: 127.0.0.1, port_value: %d }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "hello" } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, port)
	Validate(t, []byte(cfg))
	e := Start(t, []byte(cfg))
	if e.AdminAddr() == "" || strings.HasSuffix(e.AdminAddr(), ":0") {
		t.Fatalf("admin address %q", e.AdminAddr())
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("got %q", b)
	}
	if s, err := e.Admin("/server_info"); err != nil || !strings.Contains(s, "LIVE") {
		t.Fatalf("admin /server_info: %v %q", err, s)
	}
	e.Stop()
	e.Stop() // idempotent
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Fatal("envoy still serving after Stop")
	}
}

func TestValidateRejects(t *testing.T) {
	out, err := ValidateErr(t, []byte("static_resources: { clusters: [ { name: x, no_such_field: 1 } ] }\n"))
	if err == nil {
		t.Fatalf("bad config validated:\n%s", out)
	}
	if !strings.Contains(out, "no_such_field") {
		t.Errorf("output does not name the bad field:\n%s", out)
	}
}
