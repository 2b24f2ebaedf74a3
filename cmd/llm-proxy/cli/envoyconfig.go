package cli

import (
	"fmt"
	"io"

	"github.com/llm-proxy/llm-proxy/envoy"
)

// envoyConfig prints the reference Envoy bootstrap, re-addressed: how `make
// run` points Envoy at a local fake upstream, and how a user adapts ports.
func envoyConfig(args []string, stdout, stderr io.Writer) error {
	fs := flagSet("envoy-config", stderr)
	var o envoy.RenderOptions
	fs.IntVar(&o.ListenerPort, "listener-port", 10000, "Envoy listener port")
	fs.IntVar(&o.AdminPort, "admin-port", 9901, "Envoy admin port")
	fs.StringVar(&o.ExtProcAddr, "extproc", "127.0.0.1:9002", "llm-proxy gRPC address")
	fs.StringVar(&o.ManageAddr, "manage", "127.0.0.1:8081", "llm-proxy management address")
	fs.StringVar(&o.Upstream, "upstream", "api.openai.com:443", "OpenAI-compatible upstream host:port (always TLS)")
	fs.StringVar(&o.UpstreamCAFile, "upstream-ca", "", "CA bundle that signs the upstream's certificate (default: the system bundle)")
	fs.StringVar(&o.UpstreamSNI, "upstream-sni", "", "TLS server name for the upstream (default: api.openai.com)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out, err := envoy.Render(o)
	if err != nil {
		return fmt.Errorf("render envoy config: %w", err)
	}
	_, err = stdout.Write(out)
	return err
}
