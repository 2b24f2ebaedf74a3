package cli

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/llm-proxy/llm-proxy/envoy"
)

// envoyConfigFlag is one flag of `llm-proxy envoy-config` and the variable
// that sets its default, so a container's entrypoint (Helm chart, compose)
// renders Envoy's config from its environment without a shell.
type envoyConfigFlag struct {
	name, env, def, usage string
	dst                   *string
}

// newEnvoyConfigCmd is `llm-proxy envoy-config`: it prints the reference
// Envoy bootstrap, re-addressed: how `make run` points Envoy at a local fake
// upstream, and how a container deployment makes Envoy listen on every
// interface and reach its sidecar. Its flags live here, one per
// [envoy.RenderOptions] field.
func newEnvoyConfigCmd(e *env) *cobra.Command {
	var o envoy.RenderOptions
	var listenerPort, adminPort int
	var outFile string
	flags := []envoyConfigFlag{
		{"listener", "LLM_PROXY_ENVOY_LISTENER", "127.0.0.1:10000", "client-facing listener ip:port (0.0.0.0:10000 in a container)", &o.ListenerAddr},
		{"admin", "LLM_PROXY_ENVOY_ADMIN", "127.0.0.1:9901", "Envoy admin ip:port (keep it unexposed: it can stop Envoy)", &o.AdminAddr},
		{"extproc", "LLM_PROXY_ENVOY_EXTPROC", envoy.DefaultExtProcAddr, "llm-proxy gRPC (ext_proc) host:port", &o.ExtProcAddr},
		{"manage", "LLM_PROXY_ENVOY_MANAGE", envoy.DefaultManageAddr, "llm-proxy management host:port", &o.ManageAddr},
		{"upstream", "LLM_PROXY_ENVOY_UPSTREAM", envoy.DefaultUpstream, "OpenAI-compatible upstream host:port (always TLS)", &o.Upstream},
		{"upstream-ca", "LLM_PROXY_ENVOY_UPSTREAM_CA", "", "CA bundle that signs the upstream's certificate (default: the system bundle)", &o.UpstreamCAFile},
		{"upstream-sni", "LLM_PROXY_ENVOY_UPSTREAM_SNI", "", "TLS server name for the upstream (default: api.openai.com)", &o.UpstreamSNI},
	}
	var settings strings.Builder
	for _, f := range flags {
		fmt.Fprintf(&settings, "  %-30s --%s\n", f.env, f.name)
	}
	cmd := &cobra.Command{
		Use:   "envoy-config [flags]",
		Short: "Print envoy/envoy.yaml with addresses changed",
		Long: `Print the reference Envoy bootstrap (envoy/envoy.yaml) with its listener, admin,
sidecar and upstream addresses changed. Flags may be written with one dash or two.
Each flag's default comes from an environment variable when it is set:

` + settings.String(),
		Example: `  llm-proxy envoy-config > envoy.yaml
  llm-proxy envoy-config --upstream 127.0.0.1:8443 --upstream-ca fake-ca.pem
  llm-proxy envoy-config --listener 0.0.0.0:10000 --extproc llm-proxy:9002 --manage llm-proxy:8081
  llm-proxy envoy-config --out /etc/envoy/envoy.yaml   # in an init container`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			var err error
			if o.ListenerAddr, err = withPort("--listener", o.ListenerAddr, "--listener-port", listenerPort); err != nil {
				return err
			}
			if o.AdminAddr, err = withPort("--admin", o.AdminAddr, "--admin-port", adminPort); err != nil {
				return err
			}
			out, err := envoy.Render(o)
			if err != nil {
				return fmt.Errorf("render envoy config: %w", err)
			}
			if outFile != "" {
				// An init container has no shell to redirect stdout with.
				return os.WriteFile(outFile, out, 0o644)
			}
			_, err = e.stdout.Write(out)
			return err
		},
	}
	fs := cmd.Flags()
	for _, f := range flags {
		def := f.def
		if v := strings.TrimSpace(e.getenv(f.env)); v != "" {
			def = v
		}
		fs.StringVar(f.dst, f.name, def, f.usage+" ("+f.env+")")
	}
	fs.IntVar(&listenerPort, "listener-port", 0, "listener port, replacing --listener's")
	fs.IntVar(&adminPort, "admin-port", 0, "admin port, replacing --admin's")
	fs.StringVar(&outFile, "out", "", "write the config to this file instead of stdout")
	return cmd
}

// withPort returns addr with its port replaced by port when port is not 0.
func withPort(addrFlag, addr, portFlag string, port int) (string, error) {
	if port == 0 {
		return addr, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s %q: want ip:port: %w", addrFlag, addr, err)
	}
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("%s %d out of range 1-65535", portFlag, port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
