package envoy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/tests/envoytest"
)

func TestRenderZeroOptionsIsBootstrap(t *testing.T) {
	got, err := Render(RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Bootstrap()) {
		t.Fatal("Render(RenderOptions{}) differs from Bootstrap()")
	}
}

func TestRenderReplacesOnlyKnownValues(t *testing.T) {
	o := RenderOptions{
		ListenerPort:   20000,
		AdminPort:      20001,
		ExtProcAddr:    "127.0.0.1:20002",
		ManageAddr:     "localhost:20003",
		Upstream:       "127.0.0.1:20443",
		UpstreamCAFile: "/tmp/some dir/ca.pem",
	}
	got, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{
		`socket_address: { address: "127.0.0.1", port_value: 20000 }`,
		`socket_address: { address: "127.0.0.1", port_value: 20001 }`,
		`socket_address: { address: "127.0.0.1", port_value: 20002 }`,
		`socket_address: { address: "localhost", port_value: 20003 }`,
		`socket_address: { address: "127.0.0.1", port_value: 20443 }`,
		`filename: "/tmp/some dir/ca.pem"`,
		// TLS to the upstream is kept, with its name.
		"sni: api.openai.com",
		"exact: api.openai.com",
		"envoy.transport_sockets.tls",
	} {
		if strings.Count(s, want) != 1 {
			t.Errorf("rendered config has %d × %q, want 1", strings.Count(s, want), want)
		}
	}
	for _, a := range []anchor{anchorListener, anchorAdmin, anchorExtProc, anchorManage, anchorUpstream, anchorCAFile} {
		if strings.Contains(s, a.text) {
			t.Errorf("rendered config still has %s %q", a.name, a.text)
		}
	}
	if n := strings.Count(s, "host_rewrite_literal: api.openai.com"); n != 2 {
		t.Errorf("rendered config has %d Host rewrites to api.openai.com, want 2", n)
	}
	// Nothing else moved: same number of lines, and every line that is not
	// one of the replaced ones is identical.
	before := strings.Split(string(Bootstrap()), "\n")
	after := strings.Split(s, "\n")
	if len(before) != len(after) {
		t.Fatalf("line count changed: %d -> %d", len(before), len(after))
	}
	changed := 0
	for i := range before {
		if before[i] != after[i] {
			changed++
		}
	}
	if changed != 6 {
		t.Errorf("%d lines changed, want 6", changed)
	}
}

func TestRenderSNI(t *testing.T) {
	got, err := Render(RenderOptions{UpstreamSNI: "example.openai.azure.com"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{
		`sni: "example.openai.azure.com"`,
		`exact: "example.openai.azure.com"`,
	} {
		if strings.Count(s, want) != 1 {
			t.Errorf("missing %q", want)
		}
	}
	if n := strings.Count(s, `host_rewrite_literal: "example.openai.azure.com"`); n != 2 {
		t.Errorf("%d Host rewrites, want 2", n)
	}
	if strings.Contains(s, "api.openai.com") && strings.Contains(s, "sni: api.openai.com") {
		t.Error("old SNI still present")
	}
	// The endpoint address is Upstream's business, not UpstreamSNI's.
	if !strings.Contains(s, anchorUpstream.text) {
		t.Error("UpstreamSNI changed the endpoint address")
	}
}

func TestRenderRejectsBadOptions(t *testing.T) {
	for _, o := range []RenderOptions{
		{ListenerPort: -1},
		{AdminPort: 70000},
		{ExtProcAddr: "127.0.0.1"},
		{ManageAddr: ":8081"},
		{Upstream: "api.openai.com:https"},
		{Upstream: "host:0"},
		{UpstreamCAFile: "a\nb"},
		{UpstreamSNI: "a b"},
		{UpstreamSNI: "host:443"},
		{ListenerAddr: "0.0.0.0:10000", ListenerPort: 10000},
		{AdminAddr: "127.0.0.1:9901", AdminPort: 9901},
		{ListenerAddr: "envoy.local:10000"}, // Envoy binds it: an IP address
		{AdminAddr: "0.0.0.0"},
		{ListenerAddr: "0.0.0.0:-1"},
		{ManageAddr: "127.0.0.1:0"}, // dialed: port 0 only where Envoy binds
	} {
		if _, err := Render(o); err == nil {
			t.Errorf("Render(%+v) succeeded, want an error", o)
		}
	}
}

func TestRenderDetectsDrift(t *testing.T) {
	src := string(Bootstrap())
	for _, a := range allAnchors {
		missing := strings.Replace(src, a.text, "changed: by hand", 1)
		if _, err := render(missing, RenderOptions{}); err == nil || !strings.Contains(err.Error(), a.name) {
			t.Errorf("%s removed: err = %v, want an error naming it", a.name, err)
		}
		doubled := src + "\n# " + a.text + "\n"
		if _, err := render(doubled, RenderOptions{}); err == nil || !strings.Contains(err.Error(), a.name) {
			t.Errorf("%s doubled: err = %v, want an error", a.name, err)
		}
	}
}

func TestValidateBootstrapAsIs(t *testing.T) {
	out := envoytest.Validate(t, Bootstrap())
	if !strings.Contains(out, "OK") {
		t.Fatalf("unexpected validate output:\n%s", out)
	}
}

// A container's Envoy listens on every interface (ListenerAddr) and reaches
// a sidecar in another container by name; the admin address moves too.
func TestRenderContainerAddresses(t *testing.T) {
	got, err := Render(RenderOptions{ListenerAddr: "0.0.0.0:8080", AdminAddr: "[::1]:9000", ExtProcAddr: "llm-proxy:9002", ManageAddr: "llm-proxy:8081"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{
		`socket_address: { address: "0.0.0.0", port_value: 8080 }`,
		`socket_address: { address: "::1", port_value: 9000 }`,
		`socket_address: { address: "llm-proxy", port_value: 9002 }`,
		`socket_address: { address: "llm-proxy", port_value: 8081 }`,
	} {
		if strings.Count(s, want) != 1 {
			t.Errorf("rendered config has %d × %q, want 1", strings.Count(s, want), want)
		}
	}
	envoytest.Validate(t, got)
}

// A Unix socket shared with the sidecar: a pipe endpoint in a STATIC cluster.
func TestRenderExtProcUnixSocket(t *testing.T) {
	for _, addr := range []string{"unix:/run/llm-proxy/extproc.sock", "unix:///run/llm-proxy/extproc.sock"} {
		got, err := Render(RenderOptions{ExtProcAddr: addr})
		if err != nil {
			t.Fatal(err)
		}
		s := string(got)
		for want, n := range map[string]int{
			`pipe: { path: "/run/llm-proxy/extproc.sock" }`: 1,
			"name: llm_proxy_extproc\n    type: STATIC":     1,
			"port_value: 9002":                              0,
			"name: llm_proxy_extproc\n    type: STRICT_DNS": 0,
		} {
			if c := strings.Count(s, want); c != n {
				t.Errorf("%s: rendered config has %d × %q, want %d", addr, c, want, n)
			}
		}
		envoytest.Validate(t, got)
	}
	if _, err := Render(RenderOptions{ExtProcAddr: "unix:extproc.sock"}); err == nil {
		t.Error("a relative socket path was accepted")
	}
}

func TestValidateRendered(t *testing.T) {
	_, caFile := envoytest.UpstreamTLS(t, "api.openai.com")
	cfg, err := Render(RenderOptions{
		ListenerPort:   envoytest.FreePort(t),
		AdminPort:      envoytest.FreePort(t),
		ExtProcAddr:    "127.0.0.1:19002",
		ManageAddr:     "localhost:18081",
		Upstream:       "127.0.0.1:18443",
		UpstreamCAFile: caFile,
		UpstreamSNI:    "api.openai.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	envoytest.Validate(t, cfg)
}

// A bootstrap with nothing of llm-proxy's in it: the snippet's pieces are
// spliced in where its comments say they go.
const snippetHost = `admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 0 }
static_resources:
  listeners:
  - name: users_listener
    address:
      socket_address: { address: 127.0.0.1, port_value: 0 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: users
          route_config:
            virtual_hosts:
            - name: users_vhost
              domains: ["*"]
              routes:
              - match: { prefix: "/manage/" }
                route: { cluster: users_backend }
%[1]s
%[4]s
              - match: { prefix: "/" }
                route: { cluster: users_backend }
          http_filters:
%[2]s
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: users_backend
    type: STATIC
    load_assignment:
      cluster_name: users_backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: 8080 }
  - name: openai
    type: STATIC
    load_assignment:
      cluster_name: openai
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: 8443 }
%[3]s
`

func TestValidateFilterSnippet(t *testing.T) {
	snip := string(FilterSnippet())
	filters := sectionBody(t, snip, "http_filters")
	clusters := sectionBody(t, snip, "clusters")
	perRoute := "typed_per_filter_config:\n" + sectionBody(t, snip, "typed_per_filter_config")
	routes := sectionBody(t, snip, "routes")
	if !strings.Contains(filters, "envoy.filters.http.ext_proc") || !strings.Contains(filters, "remove_accept_encoding_header: true") ||
		!strings.Contains(clusters, "llm_proxy_extproc") ||
		!strings.Contains(perRoute, "disabled: true") ||
		!strings.Contains(routes, "request_body_mode: BUFFERED") {
		t.Fatalf("snippet sections look wrong:\n%s\n%s\n%s\n%s", filters, clusters, perRoute, routes)
	}
	cfg := fmt.Sprintf(snippetHost, indent(perRoute, 16), indent(filters, 10), indent(clusters, 2), indent(routes, 14))
	envoytest.Validate(t, []byte(cfg))
}

// The snippet repeats envoy.yaml's ext_proc filter and sidecar cluster: keep
// them the same (comments and indentation aside).
func TestFilterSnippetMatchesBootstrap(t *testing.T) {
	snip := string(FilterSnippet())
	boot := string(Bootstrap())
	for _, c := range []struct {
		name, snippet, bootstrap string
	}{
		{
			"compressors and ext_proc http filters",
			sectionBody(t, snip, "http_filters"),
			between(t, boot, "- name: llm_proxy.compressor.br\n", "- name: envoy.filters.http.router\n"),
		},
		{
			"llm_proxy_extproc cluster",
			sectionBody(t, snip, "clusters"),
			between(t, boot, "- name: llm_proxy_extproc\n", "- name: llm_proxy_manage\n"),
		},
		{
			"/v1/ routes",
			sectionBody(t, snip, "routes"),
			between(t, boot, "- match:\n                  prefix: \"/v1/\"\n", "# Everything else: 404"),
		},
		{
			"per-route opt-out",
			"typed_per_filter_config:\n" + sectionBody(t, snip, "typed_per_filter_config"),
			between(t, boot, "typed_per_filter_config:\n", "\n\n"),
		},
	} {
		got, want := normalise(c.snippet), normalise(c.bootstrap)
		if got != want {
			t.Errorf("%s differs between filter-snippet.yaml and envoy.yaml:\n--- snippet\n%s\n--- envoy.yaml\n%s", c.name, got, want)
		}
	}
}

// sectionBody returns the lines under the top-level key `key:` of a YAML
// document, up to the next top-level key.
func sectionBody(t *testing.T, doc, key string) string {
	t.Helper()
	lines := strings.Split(doc, "\n")
	start := -1
	for i, l := range lines {
		if l == key+":" {
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatalf("no top-level %q in snippet", key)
	}
	end := len(lines)
	for i := start; i < len(lines); i++ {
		l := lines[i]
		if l != "" && l[0] != ' ' && l[0] != '-' && l[0] != '#' {
			end = i
			break
		}
	}
	// Drop trailing comments and blank lines (they introduce the next key).
	for end > start && (strings.TrimSpace(lines[end-1]) == "" || strings.HasPrefix(lines[end-1], "#")) {
		end--
	}
	return strings.Join(lines[start:end], "\n")
}

// between returns the text of the line that contains from (from that line's
// start) up to the line holding to.
func between(t *testing.T, doc, from, to string) string {
	t.Helper()
	i := strings.Index(doc, from)
	if i < 0 {
		t.Fatalf("envoy.yaml has no %q", from)
	}
	i = strings.LastIndex(doc[:i], "\n") + 1
	j := strings.Index(doc[i+len(from):], to)
	if j < 0 {
		t.Fatalf("envoy.yaml has no %q after %q", to, from)
	}
	return doc[i : i+len(from)+j]
}

// normalise drops comments and blank lines and removes the common
// indentation, so that two copies of one YAML fragment compare equal.
func normalise(s string) string {
	var kept []string
	minIndent := -1
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		l = strings.TrimRight(l, " ")
		trimmed := strings.TrimLeft(l, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if n := len(l) - len(trimmed); minIndent < 0 || n < minIndent {
			minIndent = n
		}
		kept = append(kept, l)
	}
	for i := range kept {
		kept[i] = kept[i][minIndent:]
	}
	return strings.Join(kept, "\n")
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

func TestRenderSidecarKeepalive(t *testing.T) {
	out, err := Render(RenderOptions{SidecarKeepalive: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "connection_keepalive:\n              interval: 1.5s\n") {
		t.Fatal("keepalive interval not rendered")
	}
	if _, err := Render(RenderOptions{SidecarKeepalive: time.Microsecond}); err == nil {
		t.Error("a sub-millisecond keepalive was accepted")
	}
	envoytest.Validate(t, out)
}
