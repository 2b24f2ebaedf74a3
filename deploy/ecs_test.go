package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"sigs.k8s.io/yaml"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

const ecsTemplate = "ecs/llm-proxy.yaml"

// The CloudFormation template passes cfn-lint (pinned in
// tests/python/requirements.txt, installed into .venv by make deps).
func TestECSTemplateLints(t *testing.T) {
	lint := filepath.Join(filepath.Dir(testenv.Python(t)), "cfn-lint")
	out, err := exec.CommandContext(t.Context(), lint, "--format", "parseable", ecsTemplate).CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint %s: %v\n%s", ecsTemplate, err, out)
	}
}

// resolve replaces CloudFormation intrinsic functions ({"Ref": …},
// {"Fn::Sub": …}, …) with a placeholder string, as CloudFormation replaces
// them with values before ECS sees the task definition.
func resolve(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 1 {
			for k := range v {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return "resolved-" + k
				}
			}
		}
		for k, e := range v {
			v[k] = resolve(e)
		}
	case []any:
		for i, e := range v {
			v[i] = resolve(e)
		}
	}
	return v
}

// The task definition decodes strictly into the AWS SDK's type for
// RegisterTaskDefinition (an unknown or misspelt property fails), and holds
// what the issue asks: Envoy after a HEALTHY sidecar, health checks that run
// on the images they name, every container logging to CloudWatch, secrets
// from Secrets Manager only.
func TestECSTaskDefinition(t *testing.T) {
	b, err := os.ReadFile(ecsTemplate)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Resources map[string]struct {
			Type       string
			Properties map[string]any
		}
	}
	if err := json.Unmarshal(js, &tmpl); err != nil {
		t.Fatal(err)
	}
	td := tmpl.Resources["TaskDefinition"]
	if td.Type != "AWS::ECS::TaskDefinition" {
		t.Fatalf("TaskDefinition is a %s", td.Type)
	}
	props, err := json.Marshal(resolve(td.Properties))
	if err != nil {
		t.Fatal(err)
	}
	var in ecs.RegisterTaskDefinitionInput
	dec := json.NewDecoder(bytes.NewReader(props))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("the task definition does not decode into ecs.RegisterTaskDefinitionInput: %v", err)
	}
	byName := map[string]int{}
	for i, c := range in.ContainerDefinitions {
		byName[*c.Name] = i
		if c.LogConfiguration == nil || c.LogConfiguration.LogDriver != "awslogs" {
			t.Errorf("container %s does not log to CloudWatch", *c.Name)
		}
		for _, e := range c.Environment {
			if strings.Contains(*e.Name, "TOKEN") || strings.Contains(*e.Name, "KEY") || strings.HasSuffix(*e.Name, "_URL") {
				t.Errorf("container %s: %s is plain environment; secrets come from Secrets Manager", *c.Name, *e.Name)
			}
		}
		if c.HealthCheck != nil && strings.Contains(strings.Join(c.HealthCheck.Command, " "), "curl") {
			t.Errorf("container %s's health check calls curl, which its image lacks", *c.Name)
		}
	}
	sidecar := in.ContainerDefinitions[byName["llm-proxy"]]
	if hc := sidecar.HealthCheck; hc == nil || !slices.Equal(hc.Command, []string{"CMD", "/llm-proxy", "healthcheck"}) {
		t.Errorf("the sidecar's health check: %+v", hc)
	}
	var secrets []string
	for _, s := range sidecar.Secrets {
		secrets = append(secrets, *s.Name)
	}
	slices.Sort(secrets)
	if want := []string{"LLM_PROXY_DATABASE_URL", "LLM_PROXY_ENCRYPTION_KEY", "LLM_PROXY_MANAGEMENT_TOKEN", "LLM_PROXY_REDIS_URL", "LLM_PROXY_TOKEN_HASH_KEY"}; !slices.Equal(secrets, want) {
		t.Errorf("the sidecar's secrets %v, want %v", secrets, want)
	}
	envoy := in.ContainerDefinitions[byName["envoy"]]
	deps := map[string]string{}
	for _, d := range envoy.DependsOn {
		deps[*d.ContainerName] = string(d.Condition)
	}
	if deps["llm-proxy"] != "HEALTHY" || deps["envoy-config"] != "SUCCESS" {
		t.Errorf("Envoy starts on %v, want llm-proxy HEALTHY and envoy-config SUCCESS", deps)
	}
	// Envoy's readiness is its own /healthz, checked by the load balancer.
	tg := tmpl.Resources["TargetGroup"].Properties
	if tg["HealthCheckPath"] != "/healthz" {
		t.Errorf("the target group checks %v, want Envoy's /healthz", tg["HealthCheckPath"])
	}
	rule, _ := json.Marshal(tmpl.Resources["ListenerRule"].Properties["Conditions"])
	for _, p := range []string{"/v1/*", "/manage/*", "/admin/*", "/healthz"} {
		if !strings.Contains(string(rule), `"`+p+`"`) {
			t.Errorf("the ALB does not route %s", p)
		}
	}
}
