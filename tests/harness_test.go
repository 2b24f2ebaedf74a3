package tests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/cmd/llm-proxy/cli"
	"github.com/llm-proxy/llm-proxy/envoy"
	"github.com/llm-proxy/llm-proxy/tests/envoytest"
	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is one running deployment: fake upstream ← Envoy (the reference
// envoy.yaml, re-addressed) ⇄ llm-proxy (the real `serve` wiring, in process).
type stack struct {
	t         testing.TB
	upstream  *fakeopenai.Server
	envoy     *envoytest.Envoy
	envoyURL  string
	manageURL string
	mgmtToken string
	dbURL     string
	dataDir   string
	logs      *testenv.LogBuffer

	stopProxy context.CancelFunc
	proxyDone chan error
	proxyEnv  map[string]string
}

type stackOptions struct {
	databaseURL string // "" = SQLite in the data dir
	env         map[string]string
	// sidecarKeepalive shortens Envoy's pings to the sidecar (0: as shipped).
	sidecarKeepalive time.Duration
	// unixSocket puts the sidecar's gRPC server on a Unix socket shared with
	// Envoy instead of TCP on loopback.
	unixSocket bool
	// upstreamVia, when set, is given the fake upstream's address and
	// returns the one Envoy's openai cluster dials instead (a front that
	// fails connections on demand, say).
	upstreamVia func(t testing.TB, addr string) string
}

func startStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, upstream: fakeopenai.New(), logs: &testenv.LogBuffer{}, dataDir: t.TempDir()}
	up, err := s.upstream.StartTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	caFile, err := up.CAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	grpcAddr := fmt.Sprintf("127.0.0.1:%d", envoytest.FreePort(t))
	if o.unixSocket {
		// A short directory of its own: a socket path may not exceed 107
		// bytes, and a test's TempDir can.
		dir, err := os.MkdirTemp("", "llmp")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		grpcAddr = "unix:" + filepath.Join(dir, "extproc.sock")
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", envoytest.FreePort(t))
	env := map[string]string{
		"LLM_PROXY_DATA_DIR":             s.dataDir,
		"LLM_PROXY_GRPC_ADDR":            grpcAddr,
		"LLM_PROXY_HTTP_ADDR":            httpAddr,
		"LLM_PROXY_USAGE_FLUSH_INTERVAL": "100ms",
		"LLM_PROXY_SHUTDOWN_TIMEOUT":     "2s",
		"LLM_PROXY_LOG_LEVEL":            "debug",
		// The reconciler of background responses and batches asks the fake
		// directly, as it would ask OpenAI, polling often.
		"LLM_PROXY_UPSTREAM_URL":       "https://" + up.Addr(),
		"LLM_PROXY_UPSTREAM_CA_FILE":   caFile,
		"LLM_PROXY_RECONCILE_INTERVAL": "200ms",
		"LLM_PROXY_RECONCILE_RATE":     "50",
	}
	if o.databaseURL != "" {
		env["LLM_PROXY_DATABASE_URL"] = o.databaseURL
		env["LLM_PROXY_MANAGEMENT_TOKEN"] = "mgmt-test-token-0123456789"
		env["LLM_PROXY_ENCRYPTION_KEY"] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32))
		env["LLM_PROXY_TOKEN_HASH_KEY"] = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{6}, 32))
	}
	for k, v := range o.env {
		env[k] = v
	}
	s.dbURL = o.databaseURL
	s.manageURL = "http://" + httpAddr
	// Once llm-proxy has stopped: every line it logged is one JSON object
	// with unique keys.
	t.Cleanup(func() {
		if err := testenv.CheckJSONLog(s.logs.String()); err != nil {
			t.Errorf("llm-proxy's log: %v", err)
		}
	})
	s.startProxy(env)
	if o.databaseURL == "" {
		s.dbURL = s.dataDir + "/llm-proxy.db"
		s.mgmtToken = readTrimmed(t, s.dataDir+"/management-token")
	} else {
		s.mgmtToken = env["LLM_PROXY_MANAGEMENT_TOKEN"]
	}

	upstreamAddr := up.Addr()
	if o.upstreamVia != nil {
		upstreamAddr = o.upstreamVia(t, upstreamAddr)
	}
	// Envoy chooses its ports: a port found free here could be taken by
	// another test's process before Envoy binds it.
	cfg, err := envoy.Render(envoy.RenderOptions{
		ListenerAddr:     "127.0.0.1:0",
		AdminAddr:        "127.0.0.1:0",
		ExtProcAddr:      grpcAddr,
		ManageAddr:       httpAddr,
		Upstream:         upstreamAddr,
		UpstreamCAFile:   caFile,
		SidecarKeepalive: o.sidecarKeepalive,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.envoy = envoytest.Start(t, cfg)
	listener, err := s.envoy.ListenerAddr("llm_proxy_ingress")
	if err != nil {
		t.Fatal(err)
	}
	s.envoyURL = "http://" + listener
	s.waitThroughEnvoy()
	return s
}

// restartProxy stops llm-proxy gracefully and starts it again with the same
// settings and data (Envoy stays up and reconnects).
func (s *stack) restartProxy() {
	s.stop()
	s.startProxy(s.proxyEnv)
}

func (s *stack) startProxy(env map[string]string) {
	s.proxyEnv = env
	ctx, cancel := context.WithCancel(context.Background())
	s.stopProxy = cancel
	s.proxyDone = make(chan error, 1)
	go func() {
		s.proxyDone <- cli.Run(ctx, []string{"serve"}, func(k string) string { return env[k] }, io.Discard, s.logs)
	}()
	s.t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.manageURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-s.proxyDone:
			s.t.Fatalf("llm-proxy exited at start: %v\n%s", err, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("llm-proxy not ready after 30s\n%s", s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends llm-proxy gracefully, as SIGTERM would, and reports its error.
func (s *stack) stop() {
	if s.stopProxy == nil {
		return
	}
	s.stopProxy()
	s.stopProxy = nil
	select {
	case err := <-s.proxyDone:
		if err != nil {
			s.t.Errorf("llm-proxy: %v", err)
		}
	case <-time.After(15 * time.Second):
		s.t.Error("llm-proxy did not stop within 15s")
	}
}

// waitThroughEnvoy waits until Envoy routes to llm-proxy: its health check of
// the sidecar cluster must pass before Envoy sends it anything.
func (s *stack) waitThroughEnvoy() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := s.manage("GET", "/manage/projects", nil)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("management API not reachable through Envoy: %d %s\nenvoy: %s", status, body, s.envoy.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The ext_proc cluster is health-checked; wait until a /v1/ request is
	// answered by llm-proxy (401 without a token) rather than by Envoy.
	for {
		resp, err := http.Get(s.envoyURL + "/v1/models")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 401 && strings.Contains(string(b), "invalid_api_key") {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("ext_proc path not ready through Envoy: %v\nenvoy: %s", err, s.envoy.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// manage calls the management API through Envoy's /manage/ route.
func (s *stack) manage(method, path string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.envoyURL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.mgmtToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (s *stack) mustManage(method, path string, body any, want int, out any) {
	s.t.Helper()
	status, b := s.manage(method, path, body)
	if status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type project struct {
	ID           string `json:"id"`
	OpenAIAPIKey string `json:"openai_api_key"`
}

type token struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

func (s *stack) createProject(name, key string) project {
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": name, "openai_api_key": key}, 201, &p)
	return p
}

func (s *stack) createToken(body map[string]any) token {
	var tk token
	s.mustManage("POST", "/manage/tokens", body, 201, &tk)
	if !strings.HasPrefix(tk.Token, "llmp_") {
		s.t.Fatalf("token %+v lacks its secret", tk.ID)
	}
	return tk
}

// client is the official SDK pointed at Envoy with a proxy token. Retries are
// off so a test sees every status as it happens.
func (s *stack) client(tok string) *openai.Client {
	c := openai.NewClient(
		option.WithBaseURL(s.envoyURL+"/v1/"),
		option.WithAPIKey(tok),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(30*time.Second),
	)
	return &c
}

func readTrimmed(t testing.TB, path string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("read %s: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
