package cli

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/tests/envoytest"
)

// A container renders Envoy's config from its environment alone; a flag
// beats the variable; the result passes envoy --mode validate.
func TestEnvoyConfigFromEnvironmentAndFlags(t *testing.T) {
	env := map[string]string{
		"LLM_PROXY_ENVOY_LISTENER":     "0.0.0.0:10000",
		"LLM_PROXY_ENVOY_ADMIN":        "127.0.0.1:9901",
		"LLM_PROXY_ENVOY_EXTPROC":      "llm-proxy:9002",
		"LLM_PROXY_ENVOY_MANAGE":       "llm-proxy:8081",
		"LLM_PROXY_ENVOY_UPSTREAM":     "upstream.internal:8443",
		"LLM_PROXY_ENVOY_UPSTREAM_SNI": "upstream.internal",
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"environment", nil, []string{
			`socket_address: { address: "0.0.0.0", port_value: 10000 }`,
			`socket_address: { address: "127.0.0.1", port_value: 9901 }`,
			`socket_address: { address: "llm-proxy", port_value: 9002 }`,
			`socket_address: { address: "llm-proxy", port_value: 8081 }`,
			`socket_address: { address: "upstream.internal", port_value: 8443 }`,
			`sni: "upstream.internal"`,
		}},
		{"flags beat it", []string{"--listener", "0.0.0.0:8080", "--extproc=127.0.0.1:19002", "-admin-port", "19901"}, []string{
			`socket_address: { address: "0.0.0.0", port_value: 8080 }`,
			`socket_address: { address: "127.0.0.1", port_value: 19901 }`,
			`socket_address: { address: "127.0.0.1", port_value: 19002 }`,
		}},
		{"a port replaces the variable's", []string{"-listener-port", "12345"}, []string{
			`socket_address: { address: "0.0.0.0", port_value: 12345 }`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := Run(context.Background(), append([]string{"envoy-config"}, tc.args...), func(k string) string { return env[k] }, &out, &errOut); err != nil {
				t.Fatalf("%v\n%s", err, errOut.String())
			}
			for _, w := range tc.want {
				if n := strings.Count(out.String(), w); n != 1 {
					t.Errorf("%d × %q, want 1", n, w)
				}
			}
			envoytest.Validate(t, out.Bytes())
		})
	}
	// --out writes the file an init container leaves for Envoy.
	out := t.TempDir() + "/envoy.yaml"
	var stdout bytes.Buffer
	if err := Run(context.Background(), []string{"envoy-config", "--out", out}, func(k string) string { return env[k] }, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || !strings.Contains(string(b), `address: "llm-proxy", port_value: 9002`) || stdout.Len() != 0 {
		t.Errorf("--out: %v, stdout %q", err, stdout.String())
	}
	for _, bad := range [][]string{{"--listener", "envoy:10000"}, {"--listener", "0.0.0.0"}, {"-listener-port", "70000"}} {
		if err := Run(context.Background(), append([]string{"envoy-config"}, bad...), func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("envoy-config %v succeeded", bad)
		}
	}
}
