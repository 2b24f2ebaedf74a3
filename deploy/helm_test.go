// Package deploy holds no code: its tests render and validate the deployment
// files in this directory offline — the Helm chart with the Helm SDK, every
// object decoded strictly into its Kubernetes type, the Envoy config the
// chart makes checked by envoy --mode validate — so a change that breaks
// them fails `make test`, not an install.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/llm-proxy/llm-proxy/cmd/llm-proxy/cli"
	"github.com/llm-proxy/llm-proxy/tests/envoytest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const chartDir = "helm/llm-proxy"

// object is one rendered manifest: where it came from, its kind, and the
// typed value it decoded into.
type object struct {
	source, kind, name string
	value              any
}

// typeFor returns a new value of the Go type of apiVersion/kind, or nil for
// a kind the chart must not produce.
func typeFor(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monitoringv1.PodMonitor{}
	}
	return nil // a Secret among them: the chart references secrets, never makes them
}

// render renders the chart with the values files given (relative to the
// chart, or absolute; none: the chart's defaults) and returns the manifests by template, as helm template would.
func render(t *testing.T, valuesFiles ...string) (map[string]string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals := chartutil.Values{}
	for _, f := range valuesFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(chartDir, f)
		}
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatal(err)
		}
		vals = chartutil.CoalesceTables(v, vals)
	}
	top, err := chartutil.ToRenderValues(chrt, vals,
		chartutil.ReleaseOptions{Name: "llm-proxy", Namespace: "llm-proxy", IsInstall: true, Revision: 1},
		chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(chrt, top)
}

// decode splits the manifests into objects, each decoded strictly into its
// Kubernetes type: an unknown or misspelt field fails.
func decode(t *testing.T, files map[string]string) []object {
	t.Helper()
	var out []object
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if strings.HasSuffix(name, "NOTES.txt") || strings.HasSuffix(name, ".tpl") {
			continue
		}
		for i, doc := range strings.Split(files[name], "\n---") {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", name, i, err)
			}
			if string(js) == "null" {
				continue // an empty document: a template that rendered nothing
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(js, &meta); err != nil {
				t.Fatalf("%s document %d: %v", name, i, err)
			}
			v := typeFor(meta.APIVersion, meta.Kind)
			if v == nil {
				t.Fatalf("%s: unexpected %s %s", name, meta.APIVersion, meta.Kind)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("%s: %s %s does not decode strictly: %v", name, meta.Kind, meta.Metadata.Name, err)
			}
			out = append(out, object{source: name, kind: meta.Kind, name: meta.Metadata.Name, value: v})
		}
	}
	return out
}

// golden compares the rendered chart with testdata/<name>.golden.yaml, so a
// reviewer sees every change to what the chart produces.
func golden(t *testing.T, name string, files map[string]string) {
	t.Helper()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(files)) {
		if strings.TrimSpace(files[k]) == "" || strings.HasSuffix(k, "NOTES.txt") {
			continue
		}
		fmt.Fprintf(&b, "# Source: %s\n%s\n---\n", k, strings.TrimSpace(files[k]))
	}
	path := filepath.Join("testdata", name+".golden.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./deploy -run Helm -update writes it)", err)
	}
	if string(want) != b.String() {
		t.Errorf("the rendered chart differs from %s; if the change is intended, run go test ./deploy -run Helm -update and review the diff", path)
	}
}

func find[T any](objs []object, kind, suffix string) (T, bool) {
	for _, o := range objs {
		if o.kind == kind && strings.HasSuffix(o.name, suffix) {
			return o.value.(T), true
		}
	}
	var zero T
	return zero, false
}

func TestHelmChart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		kinds  []string // every kind rendered, sorted
	}{
		{"default", nil, []string{"ConfigMap", "Deployment", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"}},
		{"production", []string{"values-production.yaml"}, []string{"ConfigMap", "Deployment", "Deployment",
			"HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "PodMonitor", "Service", "Service", "ServiceMonitor"}},
		{"embedded", []string{"values-embedded.yaml"}, []string{"ConfigMap", "Deployment", "NetworkPolicy", "Service"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files, err := render(t, tc.values...)
			if err != nil {
				t.Fatal(err)
			}
			objs := decode(t, files)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.kind)
			}
			sort.Strings(kinds)
			if !slices.Equal(kinds, tc.kinds) {
				t.Errorf("kinds %v, want %v", kinds, tc.kinds)
			}
			golden(t, "helm-"+tc.name, files)
			dep, ok := find[*appsv1.Deployment](objs, "Deployment", "llm-proxy")
			if !ok {
				t.Fatal("no llm-proxy Deployment")
			}
			checkPod(t, dep.Spec.Template.Spec, tc.name == "embedded")
			checkEnvoyConfig(t, dep.Spec.Template.Spec)
			svc, _ := find[*corev1.Service](objs, "Service", "llm-proxy")
			for _, p := range svc.Spec.Ports {
				if p.TargetPort.String() != "http" {
					t.Errorf("the Service exposes %s: only Envoy's listener may leave the pod", p.TargetPort.String())
				}
			}
			if np, ok := find[*networkingv1.NetworkPolicy](objs, "NetworkPolicy", "llm-proxy"); ok {
				for _, rule := range np.Spec.Ingress {
					for _, p := range rule.Ports {
						if p.Port.String() == "grpc" || p.Port.String() == "9002" {
							t.Error("the NetworkPolicy lets the gRPC port be reached from outside the pod")
						}
					}
				}
			} else {
				t.Error("no NetworkPolicy")
			}
		})
	}
}

// checkPod checks what the issue asks of the pod: llm-proxy a native
// sidecar with a gRPC startup probe, non-root read-only containers with
// resources, secrets only referenced.
func checkPod(t *testing.T, pod corev1.PodSpec, embedded bool) {
	t.Helper()
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the pod may run as root")
	}
	var sidecar *corev1.Container
	for i, c := range pod.InitContainers {
		if c.Name == "llm-proxy" {
			sidecar = &pod.InitContainers[i]
		}
	}
	if sidecar == nil || sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatal("llm-proxy is not a native sidecar (an init container with restartPolicy Always)")
	}
	if p := sidecar.StartupProbe; p == nil || p.GRPC == nil || p.GRPC.Port != 9002 {
		t.Error("the sidecar has no gRPC startup probe on 9002: Envoy could start before it")
	}
	for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: root filesystem writable or privilege escalation allowed", c.Name)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no memory request or limit", c.Name)
		}
		for _, e := range c.Env {
			if strings.Contains(e.Name, "TOKEN") || strings.Contains(e.Name, "KEY") || strings.HasSuffix(e.Name, "_URL") {
				if e.Value != "" {
					t.Errorf("container %s: %s has a literal value; secrets come from a Secret", c.Name, e.Name)
				}
			}
		}
	}
	refs := 0
	for _, e := range sidecar.EnvFrom {
		if e.SecretRef != nil {
			refs++
		}
	}
	if want := map[bool]int{false: 1, true: 0}[embedded]; refs != want {
		t.Errorf("the sidecar references %d Secrets, want %d", refs, want)
	}
}

// checkEnvoyConfig renders Envoy's bootstrap the way the pod's init
// container does (its arguments and environment) and validates it with the
// real envoy binary.
func checkEnvoyConfig(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	for _, c := range pod.InitContainers {
		if c.Name != "envoy-config" {
			continue
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		cfg := renderEnvoy(t, c.Args, env)
		if !strings.Contains(string(cfg), `socket_address: { address: "0.0.0.0", port_value: 10000 }`) {
			t.Error("Envoy does not listen on every interface of the pod")
		}
		return
	}
	t.Fatal("no envoy-config init container")
}

// renderEnvoy runs `llm-proxy envoy-config` with args and env as a
// container of a deployment file would, its --out file in a temporary
// directory, checks the result with envoy --mode validate and returns it.
func renderEnvoy(t *testing.T, args []string, env map[string]string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "envoy.yaml")
	args = slices.Clone(args)
	i := slices.Index(args, "--out")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("envoy-config %v writes no file", args)
	}
	args[i+1] = out
	var logs bytes.Buffer
	if err := cli.Run(context.Background(), args, func(k string) string { return env[k] }, &logs, &logs); err != nil {
		t.Fatalf("envoy-config %v: %v\n%s", args, err, logs.String())
	}
	cfg, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	envoytest.Validate(t, cfg)
	return cfg
}

// Values that would deploy something broken are refused at render time.
func TestHelmChartRefusesUnsafeValues(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, values, want string
	}{
		{"no secrets", "secrets: { existingSecret: \"\" }", "secrets.existingSecret is required"},
		{"replicas without redis", "redis: { existingSecret: { name: \"\" } }\ncache: memory\nevents: { sinks: file }\ndispatcher: { enabled: false }", "without Redis each replica counts limits on its own"},
		{"embedded with two replicas", "embedded: { enabled: true }\nreplicaCount: 2", "replicaCount must be 1"},
		{"dispatcher without the redis sink", "events: { sinks: file }", "events.sinks must include redis"},
		{"braces in the prefix", "redis: { prefix: \"{x}:\" }", "must not contain { or }"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := render(t, f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
