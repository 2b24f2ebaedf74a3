package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestDispatchOTLP: the otlp target and its exporter settings come from the
// standard OpenTelemetry variables.
func TestDispatchOTLP(t *testing.T) {
	base := map[string]string{"LLM_PROXY_REDIS_URL": "redis://127.0.0.1:6379/0"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		targets []string
		otlp    OTLPExport
		wantErr []string
	}{
		{name: "an endpoint turns otlp on", env: with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
			targets: []string{"otlp"}, otlp: OTLPExport{Protocol: "http/protobuf", Endpoint: "http://collector:4318/v1/traces"}},
		{name: "beside the named targets", env: with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp",
			"LLM_PROXY_DISPATCH_TARGETS", "file", "LLM_PROXY_DISPATCH_FILE", "/tmp/x.jsonl"),
			targets: []string{"file", "otlp"}, otlp: OTLPExport{Protocol: "http/protobuf", Endpoint: "http://collector:4318/otlp/v1/traces"}},
		{name: "grpc takes the endpoint as given", env: with("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
			targets: []string{"otlp"}, otlp: OTLPExport{Protocol: "grpc", Endpoint: "https://collector:4317"}},
		{name: "the traces variables win", env: with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom/path", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_HEADERS", "x-general=1",
			"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Bearer%20abc, x-team = llm ",
			"OTEL_SERVICE_NAME", "gateway", "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,k8s.namespace.name=ai"),
			targets: []string{"otlp"}, otlp: OTLPExport{Protocol: "http/protobuf", Endpoint: "http://traces:4318/custom/path",
				Headers: map[string]string{"authorization": "Bearer abc", "x-team": "llm"}, ServiceName: "gateway",
				ResourceAttributes: map[string]string{"deployment.environment.name": "prod", "k8s.namespace.name": "ai"}}},
		{name: "named without an endpoint: the exporter's default", env: with("LLM_PROXY_DISPATCH_TARGETS", "otlp"),
			targets: []string{"otlp"}, otlp: OTLPExport{Protocol: "http/protobuf"}},
		{name: "OTEL_SDK_DISABLED keeps it off", env: with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_SDK_DISABLED", "TRUE"),
			wantErr: []string{"LLM_PROXY_DISPATCH_TARGETS is required"}},
		{name: "OTEL_TRACES_EXPORTER=none keeps it off", env: with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "OTEL_TRACES_EXPORTER", "none",
			"LLM_PROXY_DISPATCH_TARGETS", "file", "LLM_PROXY_DISPATCH_FILE", "/tmp/x.jsonl"),
			targets: []string{"file"}},
		{name: "named but turned off", env: with("LLM_PROXY_DISPATCH_TARGETS", "otlp", "OTEL_TRACES_EXPORTER", "none"),
			wantErr: []string{"LLM_PROXY_DISPATCH_TARGETS names otlp, but OTEL_TRACES_EXPORTER=none turns OpenTelemetry export off"}},
		{name: "bad settings", env: with("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json",
			"OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%zzsecret", "LLM_PROXY_UPSTREAM_URL", "api.openai.com"),
			wantErr: []string{"OTEL_EXPORTER_OTLP_PROTOCOL must be grpc or http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL",
				`OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas with URL-encoded values; the entry for key "authorization" is not`,
				"LLM_PROXY_UPSTREAM_URL must be an http:// or https:// URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadDispatch(func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "zzsecret") {
					t.Errorf("error %q shows a header value", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Targets, tc.targets) || !reflect.DeepEqual(c.OTLP, tc.otlp) {
				t.Errorf("targets %q, otlp %+v; want %q, %+v", c.Targets, c.OTLP, tc.targets, tc.otlp)
			}
		})
	}
	c, err := LoadDispatch(func(k string) string {
		return with("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", "LLM_PROXY_UPSTREAM_URL", "https://openai.internal:8443")[k]
	})
	if err != nil || c.UpstreamURL != "https://openai.internal:8443" {
		t.Errorf("upstream %q, %v", c.UpstreamURL, err)
	}
}
