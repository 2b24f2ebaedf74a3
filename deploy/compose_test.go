package deploy

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

var composeSecrets = []string{
	"LLM_PROXY_MANAGEMENT_TOKEN=compose-test-token-0123456789",
	"LLM_PROXY_ENCRYPTION_KEY=BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=",
	"LLM_PROXY_TOKEN_HASH_KEY=BgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgYGBgY=",
}

// loadCompose loads compose.yaml as docker compose would, validated against
// the Compose specification's schema (an unknown field fails).
func loadCompose(t *testing.T, env []string, profiles ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose/compose.yaml"},
		cli.WithWorkingDirectory("compose"), cli.WithEnv(env), cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

// The compose file loads strictly, with and without the fake upstream, wires
// Envoy after its rendered config and a healthy sidecar, and the config the
// envoy-config service renders passes envoy --mode validate.
func TestComposeFile(t *testing.T) {
	for _, profiles := range [][]string{nil, {"fake"}} {
		t.Run(strings.Join(append([]string{"profiles"}, profiles...), " "), func(t *testing.T) {
			env := composeSecrets
			if slices.Contains(profiles, "fake") {
				env = append(slices.Clone(env), "LLM_PROXY_UPSTREAM_CA_FILE=/certs/fake-ca.pem")
			}
			p, err := loadCompose(t, env, profiles...)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"dispatcher", "envoy", "envoy-config", "llm-proxy", "postgres", "redis"}
			if slices.Contains(profiles, "fake") {
				want = append(want, "fake-openai")
				slices.Sort(want)
			}
			if got := p.ServiceNames(); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
				t.Fatalf("services %v, want %v", got, want)
			}
			envoy := p.Services["envoy"]
			if c := envoy.DependsOn["envoy-config"].Condition; c != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("envoy starts on envoy-config %q", c)
			}
			if c := envoy.DependsOn["llm-proxy"].Condition; c != types.ServiceConditionHealthy {
				t.Errorf("envoy starts on llm-proxy %q", c)
			}
			if hc := p.Services["llm-proxy"].HealthCheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/llm-proxy", "healthcheck"}) {
				t.Errorf("llm-proxy's health check: %+v", hc)
			}
			// Render as the envoy-config service does, and validate.
			cfgSvc := p.Services["envoy-config"]
			vars := map[string]string{}
			for k, v := range cfgSvc.Environment {
				if v != nil {
					vars[k] = *v
				}
			}
			if vars["LLM_PROXY_ENVOY_UPSTREAM_CA"] != "" {
				// The fake's CA exists only in the running stack.
				vars["LLM_PROXY_ENVOY_UPSTREAM_CA"] = "/etc/ssl/certs/ca-certificates.crt"
			}
			renderEnvoy(t, cfgSvc.Command, vars)
		})
	}
	// Without the secrets, compose refuses to start and says where they go.
	if _, err := loadCompose(t, nil); err == nil || !strings.Contains(err.Error(), "set it in deploy/compose/.env") {
		t.Errorf("without secrets: %v", err)
	}
}
