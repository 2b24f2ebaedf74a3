package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/llm-proxy/llm-proxy/envoy"
)

// newEnvoyConfigCmd is `llm-proxy envoy-config`: it prints the reference
// Envoy bootstrap, re-addressed: how `make run` points Envoy at a local fake
// upstream, and how a user adapts ports. Its flags live here, one per
// [envoy.RenderOptions] field.
func newEnvoyConfigCmd(e *env) *cobra.Command {
	var o envoy.RenderOptions
	cmd := &cobra.Command{
		Use:   "envoy-config [flags]",
		Short: "Print envoy/envoy.yaml with addresses changed",
		Long: `Print the reference Envoy bootstrap (envoy/envoy.yaml) with its listener, admin,
sidecar and upstream addresses changed. Flags may be written with one dash or two.`,
		Example: `  llm-proxy envoy-config > envoy.yaml
  llm-proxy envoy-config --upstream 127.0.0.1:8443 --upstream-ca fake-ca.pem
  llm-proxy envoy-config -listener-port 8080 -extproc llm-proxy:9002`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			out, err := envoy.Render(o)
			if err != nil {
				return fmt.Errorf("render envoy config: %w", err)
			}
			_, err = e.stdout.Write(out)
			return err
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.ListenerPort, "listener-port", 10000, "Envoy listener port")
	fs.IntVar(&o.AdminPort, "admin-port", 9901, "Envoy admin port")
	fs.StringVar(&o.ExtProcAddr, "extproc", "127.0.0.1:9002", "llm-proxy gRPC address")
	fs.StringVar(&o.ManageAddr, "manage", "127.0.0.1:8081", "llm-proxy management address")
	fs.StringVar(&o.Upstream, "upstream", "api.openai.com:443", "OpenAI-compatible upstream host:port (always TLS)")
	fs.StringVar(&o.UpstreamCAFile, "upstream-ca", "", "CA bundle that signs the upstream's certificate (default: the system bundle)")
	fs.StringVar(&o.UpstreamSNI, "upstream-sni", "", "TLS server name for the upstream (default: api.openai.com)")
	return cmd
}
