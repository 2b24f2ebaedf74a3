package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// Envoy Gateway's own types (gateway.envoyproxy.io/v1alpha1) are not a Go
// module this repository can depend on; these mirror the fields the example
// uses, decoded strictly, so a misspelt field still fails.
type egBackend struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   map[string]string `json:"metadata"`
	Spec       struct {
		Endpoints []struct {
			FQDN struct {
				Hostname string `json:"hostname"`
				Port     int    `json:"port"`
			} `json:"fqdn"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type egExtensionPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   map[string]string `json:"metadata"`
	Spec       struct {
		TargetRefs []struct {
			Group, Kind, Name string
		} `json:"targetRefs"`
		ExtProc []struct {
			BackendRefs []struct {
				Name string `json:"name"`
				Port int32  `json:"port"`
			} `json:"backendRefs"`
			FailOpen       bool   `json:"failOpen"`
			MessageTimeout string `json:"messageTimeout"`
			ProcessingMode struct {
				Request struct {
					Body       string   `json:"body"`
					Attributes []string `json:"attributes"`
				} `json:"request"`
				Response struct {
					Body string `json:"body"`
				} `json:"response"`
			} `json:"processingMode"`
		} `json:"extProc"`
	} `json:"spec"`
}

func strictJSON(t *testing.T, js []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%T: %v\n%s", v, err, js)
	}
}

// The Envoy Gateway example: every object decodes strictly, the extension
// policy fails closed on the /v1/ route only, and reaches llm-proxy's gRPC
// port over h2c.
func TestEnvoyGatewayExample(t *testing.T) {
	b, err := os.ReadFile("envoy-gateway/llm-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var services []corev1.Service
	var routes []gatewayv1.HTTPRoute
	var policies []egExtensionPolicy
	var kinds []string
	for _, doc := range strings.Split(string(b), "\n---") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var meta struct{ APIVersion, Kind string }
		if err := json.Unmarshal(js, &meta); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, meta.Kind)
		switch meta.APIVersion + "/" + meta.Kind {
		case "v1/Service":
			var s corev1.Service
			strictJSON(t, js, &s)
			services = append(services, s)
		case "gateway.networking.k8s.io/v1/HTTPRoute":
			var r gatewayv1.HTTPRoute
			strictJSON(t, js, &r)
			routes = append(routes, r)
		case "gateway.networking.k8s.io/v1/BackendTLSPolicy":
			strictJSON(t, js, &gatewayv1.BackendTLSPolicy{})
		case "gateway.envoyproxy.io/v1alpha1/Backend":
			strictJSON(t, js, &egBackend{})
		case "gateway.envoyproxy.io/v1alpha1/EnvoyExtensionPolicy":
			var p egExtensionPolicy
			strictJSON(t, js, &p)
			policies = append(policies, p)
		default:
			t.Fatalf("unexpected %s %s", meta.APIVersion, meta.Kind)
		}
	}
	slices.Sort(kinds)
	if want := []string{"Backend", "BackendTLSPolicy", "EnvoyExtensionPolicy", "HTTPRoute", "HTTPRoute", "Service"}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	p := policies[0]
	if len(p.Spec.TargetRefs) != 1 || p.Spec.TargetRefs[0].Kind != "HTTPRoute" {
		t.Fatalf("the policy targets %+v", p.Spec.TargetRefs)
	}
	var target *gatewayv1.HTTPRoute
	for i := range routes {
		if string(routes[i].Name) == p.Spec.TargetRefs[0].Name {
			target = &routes[i]
		}
	}
	if target == nil {
		t.Fatal("the policy targets a route the example does not define")
	}
	for _, rule := range target.Spec.Rules {
		for _, m := range rule.Matches {
			if v := *m.Path.Value; v != "/v1/" {
				t.Errorf("ext_proc applies to %s too; only /v1/ goes through it", v)
			}
		}
	}
	ep := p.Spec.ExtProc[0]
	if ep.FailOpen || ep.ProcessingMode.Request.Body != "Buffered" || ep.ProcessingMode.Response.Body != "Streamed" {
		t.Errorf("ext_proc: %+v", ep)
	}
	ref := ep.BackendRefs[0]
	found := false
	for _, s := range services {
		for _, port := range s.Spec.Ports {
			if s.Name == ref.Name && port.Port == ref.Port {
				found = port.AppProtocol != nil && *port.AppProtocol == "kubernetes.io/h2c"
			}
		}
	}
	if !found {
		t.Errorf("the ext_proc backend %s:%d is not a Service port speaking h2c", ref.Name, ref.Port)
	}
}
