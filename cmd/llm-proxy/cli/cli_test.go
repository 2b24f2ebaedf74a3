package cli

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// hangBound bounds waits for what normally takes a second or two (start,
// stop, one exchange): it only catches a hang, on however slow a machine.
const hangBound = time.Minute

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServe runs `llm-proxy serve` in process on embedded defaults and
// returns a gRPC connection to it.
func startServe(t *testing.T) *grpc.ClientConn {
	conn, _ := startServeEnv(t)
	return conn
}

func startServeEnv(t *testing.T, extra ...map[string]string) (*grpc.ClientConn, map[string]string) {
	t.Helper()
	grpcAddr := freeAddr(t)
	env := map[string]string{
		"LLM_PROXY_DATA_DIR":  t.TempDir(),
		"LLM_PROXY_GRPC_ADDR": grpcAddr,
		"LLM_PROXY_HTTP_ADDR": freeAddr(t),
	}
	for _, e := range extra {
		maps.Copy(env, e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &testenv.LogBuffer{}
	go func() { done <- Run(ctx, []string{"serve"}, func(k string) string { return env[k] }, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(hangBound):
			t.Errorf("serve did not stop within %v\n%s", hangBound, logs.String())
		}
	})
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(hangBound)
	for {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second) // one probe; the loop retries
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return conn, env
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after %v: %v\n%s", hangBound, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGRPCDebuggability checks what the README promises for grpcurl:
// reflection lists the services, and the README's hand-written
// request-headers message gets a decision back.
func TestGRPCDebuggability(t *testing.T) {
	conn := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()

	rc, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	for _, want := range []string{"envoy.service.ext_proc.v3.ExternalProcessor", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(strings.Join(services, " "), want) {
			t.Errorf("reflection lists %v, missing %s", services, want)
		}
	}

	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)ExternalProcessor/Process <<'JSON'\n(.*?)\nJSON`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README lacks the grpcurl Process example")
	}
	var req extprocv3.ProcessingRequest
	if err := protojson.Unmarshal(m[1], &req); err != nil {
		t.Fatalf("README's grpcurl payload is not a ProcessingRequest: %v", err)
	}
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&req); err != nil {
		t.Fatal(err)
	}
	out, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	ir := out.GetImmediateResponse()
	if ir.GetStatus().GetCode() != 401 || !bytes.Contains(ir.GetBody(), []byte("invalid_api_key")) {
		t.Fatalf("decision for the README example: %v", out)
	}
}

// TestLargeMessagesAccepted guards the raised receive limit: a buffered
// request body arrives as one message, and Go's 4 MiB default would refuse it.
func TestLargeMessagesAccepted(t *testing.T) {
	conn := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: bytes.Repeat([]byte("x"), 6<<20), EndOfStream: true},
	}}
	if err := stream.Send(big); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("6 MiB message refused: %v", err)
	}
}

func TestServeRefusesBadConfiguration(t *testing.T) {
	var stderr bytes.Buffer
	env := map[string]string{"LLM_PROXY_GRPC_ADDR": "no-port", "LLM_PROXY_DATABASE_URL": "postgres://x@127.0.0.1:1/db"}
	err := Run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, &stderr, &stderr)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"LLM_PROXY_GRPC_ADDR", "LLM_PROXY_MANAGEMENT_TOKEN", "LLM_PROXY_ENCRYPTION_KEY"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestMigrateCommand(t *testing.T) {
	env := map[string]string{"LLM_PROXY_DATA_DIR": t.TempDir()}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	for _, step := range []struct{ cmd, want string }{
		{"status", "Pending"}, {"up", ""}, {"status", "Applied"}, {"down", ""}, {"status", "Pending"},
	} {
		var out bytes.Buffer
		if err := Run(ctx, []string{"migrate", step.cmd}, getenv, &out, &out); err != nil {
			t.Fatalf("migrate %s: %v", step.cmd, err)
		}
		if !strings.Contains(strings.ToLower(out.String()), strings.ToLower(step.want)) {
			t.Fatalf("migrate %s printed %q, want %q", step.cmd, out.String(), step.want)
		}
	}
	if err := Run(ctx, []string{"migrate", "sideways"}, getenv, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown migrate command must fail")
	}
}

func TestHealthcheckCommand(t *testing.T) {
	_, env := startServeEnv(t)
	getenv := func(k string) string { return env[k] }
	if err := Run(context.Background(), []string{"healthcheck"}, getenv, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("healthcheck against a ready server: %v", err)
	}
	down := map[string]string{"LLM_PROXY_HTTP_ADDR": freeAddr(t)}
	if err := Run(context.Background(), []string{"healthcheck"}, func(k string) string { return down[k] }, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Fatal("healthcheck with nothing listening must fail")
	}
}

// Profiles are served only where LLM_PROXY_PPROF_ADDR says, on loopback, and
// never on the management address.
func TestPprofOnDemand(t *testing.T) {
	pprofAddr := freeAddr(t)
	_, env := startServeEnv(t, map[string]string{"LLM_PROXY_PPROF_ADDR": pprofAddr})
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("http://" + pprofAddr + "/debug/pprof/"); status != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof index: %d %.200s", status, body)
	}
	if status, _ := get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1"); status != 200 {
		t.Errorf("goroutine profile: %d", status)
	}
	if status, _ := get("http://" + env["LLM_PROXY_HTTP_ADDR"] + "/debug/pprof/"); status == 200 {
		t.Error("the management address serves profiles")
	}
}
