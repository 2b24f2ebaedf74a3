package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// doctorOptions are where a running install's parts are.
type doctorOptions struct {
	grpcAddr       string // the sidecar's gRPC address
	manageURL      string // the management API (serves /readyz)
	envoyAdmin     string // Envoy's admin interface
	extprocCluster string // the ext_proc cluster's name in Envoy
	maxSkew        time.Duration
	timeout        time.Duration
}

// finding is one check's result: ok, or what is wrong in words.
type finding struct {
	check  string
	ok     bool
	detail string
}

func newDoctorCmd(e *env) *cobra.Command {
	var o doctorOptions
	cmd := &cobra.Command{
		Use:   "doctor [flags]",
		Short: "Check a running install and say what is wrong",
		Long: `Check a running install: the sidecar's gRPC health, Envoy's admin interface and
the health of its ext_proc cluster, the store and Redis as serve sees them (/readyz),
and clock skew between this machine and serve. Each problem is printed in words;
the exit status is 1 when there is one.`,
		Example: `  llm-proxy doctor
  llm-proxy doctor --grpc 10.0.0.5:9002 --manage-url http://10.0.0.5:8081 --envoy-admin http://10.0.0.5:9901`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.grpcAddr == "" {
				o.grpcAddr = firstOf(e.getenv("LLM_PROXY_GRPC_ADDR"), "127.0.0.1:9002")
			}
			if o.manageURL == "" {
				o.manageURL = firstOf(e.getenv("LLM_PROXY_URL"), "")
				if o.manageURL == "" && e.getenv("LLM_PROXY_HTTP_ADDR") != "" {
					o.manageURL = "http://" + e.getenv("LLM_PROXY_HTTP_ADDR")
				}
				o.manageURL = firstOf(o.manageURL, defaultManageURL)
			}
			findings := doctor(cmd.Context(), o)
			problems := 0
			for _, f := range findings {
				mark := "ok  "
				if !f.ok {
					mark = "FAIL"
					problems++
				}
				fmt.Fprintf(e.stdout, "%s  %s: %s\n", mark, f.check, f.detail)
			}
			if problems > 0 {
				return fmt.Errorf("%d of %d checks found a problem", problems, len(findings))
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.grpcAddr, "grpc", "", "the sidecar's gRPC address (default $LLM_PROXY_GRPC_ADDR, else 127.0.0.1:9002)")
	fs.StringVar(&o.manageURL, "manage-url", "", "the management API (default $LLM_PROXY_URL, else http://$LLM_PROXY_HTTP_ADDR, else "+defaultManageURL+")")
	fs.StringVar(&o.envoyAdmin, "envoy-admin", "http://127.0.0.1:9901", "Envoy's admin interface")
	fs.StringVar(&o.extprocCluster, "extproc-cluster", "llm_proxy_extproc", "the name of the sidecar's cluster in Envoy's configuration")
	fs.DurationVar(&o.maxSkew, "max-skew", 2*time.Second, "clock difference with serve beyond which it is a problem")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Second, "bound on each check")
	return cmd
}

// firstOf returns the first non-empty string.
func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// doctor runs every check, in the order a request travels.
func doctor(ctx context.Context, o doctorOptions) []finding {
	var out []finding
	out = append(out, checkSidecarHealth(ctx, o))
	out = append(out, checkEnvoy(ctx, o)...)
	out = append(out, checkServe(ctx, o)...)
	return out
}

func checkSidecarHealth(ctx context.Context, o doctorOptions) finding {
	f := finding{check: "sidecar gRPC health (" + o.grpcAddr + ")"}
	conn, err := grpc.NewClient(o.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.detail = "bad address: " + err.Error()
		return f
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	switch {
	case err != nil:
		f.detail = "no answer: " + err.Error() + "; is `llm-proxy serve` running, and is LLM_PROXY_GRPC_ADDR (or --grpc) its address?"
	case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
		f.detail = "answers " + resp.GetStatus().String() + ": serve is starting or shutting down; Envoy sends it nothing meanwhile"
	default:
		f.ok, f.detail = true, "SERVING"
	}
	return f
}

// checkEnvoy checks Envoy's admin interface and, through it, whether Envoy
// considers the sidecar's hosts healthy: if not, every /v1/ request is
// answered 503 by Envoy itself.
func checkEnvoy(ctx context.Context, o doctorOptions) []finding {
	admin := finding{check: "Envoy admin (" + o.envoyAdmin + ")"}
	body, _, err := httpGet(ctx, o.timeout, strings.TrimRight(o.envoyAdmin, "/")+"/clusters")
	if err != nil {
		admin.detail = "not reachable: " + err.Error() + "; is Envoy running with its admin interface there (--envoy-admin)?"
		return []finding{admin}
	}
	admin.ok, admin.detail = true, "reachable"
	cluster := finding{check: "Envoy cluster " + o.extprocCluster}
	var hosts, healthy []string
	var problems []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		// cluster::host::health_flags::healthy (or /failed_active_hc …)
		parts := strings.Split(sc.Text(), "::")
		if len(parts) != 4 || parts[0] != o.extprocCluster || parts[2] != "health_flags" {
			continue
		}
		hosts = append(hosts, parts[1])
		if parts[3] == "healthy" {
			healthy = append(healthy, parts[1])
		} else {
			problems = append(problems, parts[1]+" is "+strings.TrimPrefix(parts[3], "/"))
		}
	}
	switch {
	case len(hosts) == 0:
		cluster.detail = "Envoy has no such cluster or it has no hosts: is its configuration from `llm-proxy envoy-config`, or is the name different (--extproc-cluster)?"
	case len(healthy) == 0:
		cluster.detail = "no healthy host (" + strings.Join(problems, "; ") + "): Envoy answers every /v1/ request with 503 until its gRPC health check of the sidecar passes"
	default:
		cluster.ok = true
		cluster.detail = fmt.Sprintf("%d of %d hosts healthy (%s)", len(healthy), len(hosts), strings.Join(healthy, ", "))
		if len(problems) > 0 {
			cluster.detail += "; " + strings.Join(problems, "; ")
		}
	}
	return []finding{admin, cluster}
}

// checkServe reads serve's /readyz, which reports the store and Redis as
// serve reaches them, and compares serve's clock with this one.
func checkServe(ctx context.Context, o doctorOptions) []finding {
	ready := finding{check: "serve readiness (" + o.manageURL + "/readyz)"}
	start := time.Now()
	body, header, err := httpGet(ctx, o.timeout, strings.TrimRight(o.manageURL, "/")+"/readyz")
	if err != nil && header == nil {
		ready.detail = "not reachable: " + err.Error() + "; is serve running, and LLM_PROXY_HTTP_ADDR (or --manage-url) its management address?"
		return []finding{ready}
	}
	ready.ok, ready.detail = err == nil, "ready"
	if err != nil {
		ready.detail = "not ready: " + err.Error()
	}
	out := []finding{ready}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n")[1:] {
		name, state, _ := strings.Cut(line, ": ")
		f := finding{check: name + " (as serve sees it)", detail: state, ok: strings.HasPrefix(state, "ok")}
		if !f.ok && name == "store" {
			f.detail += ": serve cannot reach LLM_PROXY_DATABASE_URL; no token can be validated that is not cached"
		}
		if !f.ok && name == "redis" {
			f.detail += "; check LLM_PROXY_REDIS_URL and that Redis runs"
		}
		out = append(out, f)
	}
	skew := finding{check: "clock skew with serve"}
	if date, perr := http.ParseTime(header.Get("Date")); perr != nil {
		skew.detail = "serve sent no Date header"
	} else {
		// Date has one-second resolution: allow for it and the round trip.
		mid := start.Add(time.Since(start) / 2).Truncate(time.Second)
		d := date.Sub(mid)
		if d < 0 {
			d = -d
		}
		skew.ok = d <= o.maxSkew+time.Second
		skew.detail = fmt.Sprintf("%s (allowed %s)", d, o.maxSkew)
		if !skew.ok {
			skew.detail += ": token expiries, audit times and daily usage disagree between machines; run NTP (chrony, systemd-timesyncd) on both"
		}
	}
	return append(out, skew)
}

// httpGet returns a GET's body and headers; a status other than 200 is an
// error, with the body and headers still returned.
func httpGet(ctx context.Context, timeout time.Duration, url string) (string, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", resp.Header, err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), resp.Header, fmt.Errorf("answered %s", resp.Status)
	}
	return string(b), resp.Header, nil
}
