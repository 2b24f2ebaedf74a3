package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/envoy"
	"github.com/llm-proxy/llm-proxy/tests/envoytest"
)

// The benchmark runs every component as a process of its own, so that the CPU
// each one spends can be read from /proc apart from the others and from the
// load generator.

// binaries builds llm-proxy and the fake upstream once per run.
type binaries struct{ proxy, fake string }

func build(b *testing.B) binaries {
	b.Helper()
	dir := b.TempDir()
	bins := binaries{proxy: filepath.Join(dir, "llm-proxy"), fake: filepath.Join(dir, "fake-openai")}
	for out, pkg := range map[string]string{bins.proxy: "../../cmd/llm-proxy", bins.fake: "../cmd/fake-openai"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, msg)
		}
	}
	return bins
}

// process is a child process the benchmark owns; it is killed when the
// benchmark ends, and by the kernel if the benchmark dies first.
type process struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func start(b *testing.B, env []string, name string, args ...string) *process {
	b.Helper()
	p := &process{cmd: exec.Command(name, args...), out: &bytes.Buffer{}}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return p
}

func (p *process) run(b *testing.B) {
	b.Helper()
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", p.cmd.Path, err)
	}
	b.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	})
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// upstream is the fake OpenAI API over TLS, as a process.
type upstream struct {
	*process
	addr, caFile string
}

func startUpstream(b *testing.B, bins binaries) upstream {
	b.Helper()
	ca := filepath.Join(b.TempDir(), "ca.pem")
	p := start(b, nil, bins.fake, "-addr", "127.0.0.1:0", "-cert-out", ca)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	p.run(b)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("fake upstream did not start: %v\n%s", err, p.out)
	}
	go io.Copy(io.Discard, stdout) //nolint:errcheck // drained until the process exits
	url := strings.TrimSpace(strings.TrimPrefix(line, "fake-openai listening on "))
	return upstream{process: p, addr: strings.TrimPrefix(url, "https://"), caFile: ca}
}

// sidecar is one `llm-proxy serve` with its own data directory and settings,
// and the Envoy in front of it.
type sidecar struct {
	*process
	grpcAddr, manageURL, mgmtToken string
	envoy                          *envoytest.Envoy
	url                            string // Envoy's listener
}

func startSidecar(b *testing.B, bins binaries, up upstream, settings map[string]string) *sidecar {
	b.Helper()
	dataDir := b.TempDir()
	s := &sidecar{grpcAddr: freeAddr(b)}
	if addr, ok := settings["LLM_PROXY_GRPC_ADDR"]; ok {
		s.grpcAddr = addr // e.g. a Unix socket
	}
	httpAddr := freeAddr(b)
	s.manageURL = "http://" + httpAddr
	env := []string{
		"LLM_PROXY_DATA_DIR=" + dataDir,
		"LLM_PROXY_GRPC_ADDR=" + s.grpcAddr,
		"LLM_PROXY_HTTP_ADDR=" + httpAddr,
		"LLM_PROXY_UPSTREAM_URL=https://" + up.addr,
		"LLM_PROXY_UPSTREAM_CA_FILE=" + up.caFile,
		"LLM_PROXY_LOG_LEVEL=warn",
	}
	for k, v := range settings {
		if k != "LLM_PROXY_GRPC_ADDR" {
			env = append(env, k+"="+v)
		}
	}
	s.process = start(b, env, bins.proxy, "serve")
	s.cmd.Stdout = io.Discard // the request log: its cost is measured, its text is not
	s.run(b)
	waitReady(b, s.manageURL+"/readyz", s.out)
	tok, err := os.ReadFile(filepath.Join(dataDir, "management-token"))
	if err != nil {
		b.Fatal(err)
	}
	s.mgmtToken = strings.TrimSpace(string(tok))

	listener, admin := envoytest.FreePort(b), envoytest.FreePort(b)
	cfg, err := envoy.Render(envoy.RenderOptions{
		ListenerPort: listener, AdminPort: admin, ExtProcAddr: s.grpcAddr, ManageAddr: httpAddr,
		Upstream: up.addr, UpstreamCAFile: up.caFile,
	})
	if err != nil {
		b.Fatal(err)
	}
	s.envoy = envoytest.Start(b, cfg)
	s.url = fmt.Sprintf("http://127.0.0.1:%d", listener)
	return s
}

// startBareEnvoy runs the very same rendered configuration without the
// ext_proc filter: Envoy alone, the baseline. (Marking the filter disabled is
// not enough: the /v1/ route's per-route override enables it again.)
func startBareEnvoy(b *testing.B, up upstream) (*envoytest.Envoy, string) {
	b.Helper()
	listener := envoytest.FreePort(b)
	cfg, err := envoy.Render(envoy.RenderOptions{
		ListenerPort: listener, AdminPort: envoytest.FreePort(b), ExtProcAddr: freeAddr(b), ManageAddr: freeAddr(b),
		Upstream: up.addr, UpstreamCAFile: up.caFile,
	})
	if err != nil {
		b.Fatal(err)
	}
	s := string(cfg)
	from := strings.Index(s, "- name: envoy.filters.http.ext_proc\n")
	to := strings.Index(s, "- name: envoy.filters.http.router\n")
	if from < 0 || to < from {
		b.Fatal("could not find the ext_proc filter in the rendered config")
	}
	return envoytest.Start(b, []byte(s[:from]+s[to:])), fmt.Sprintf("http://127.0.0.1:%d", listener)
}

// manage calls the management API directly (not through Envoy).
func (s *sidecar) manage(b *testing.B, path string, body any, out any) {
	b.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", s.manageURL+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+s.mgmtToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("POST %s: %d %s", path, resp.StatusCode, got)
	}
	if err := json.Unmarshal(got, out); err != nil {
		b.Fatal(err)
	}
}

// token creates a project (with the given settings) and a token for it.
func (s *sidecar) token(b *testing.B, project, tok map[string]any) string {
	b.Helper()
	var p struct{ ID string }
	project["name"] = "bench"
	project["openai_api_key"] = "sk-proj-bench-0123456789abcdefghijklmnopqrstuvwxyz"
	s.manage(b, "/manage/projects", project, &p)
	tok["project_id"] = p.ID
	var t struct{ Token string }
	s.manage(b, "/manage/tokens", tok, &t)
	return t.Token
}

func waitReady(b *testing.B, url string, log *bytes.Buffer) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling a process that has no way to tell us
	}
	b.Fatalf("%s not ready\n%s", url, log)
}

func freeAddr(b *testing.B) string { return fmt.Sprintf("127.0.0.1:%d", envoytest.FreePort(b)) }

// cpuTicks is the CPU time (user + system, in clock ticks) a process has
// used so far, from /proc/<pid>/stat.
func cpuTicks(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are space-separated: state is field 3, utime 14,
	// stime 15.
	rest := raw[bytes.LastIndexByte(raw, ')')+2:]
	f := strings.Fields(string(rest))
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, err
}

// clockTick is USER_HZ: Linux reports /proc CPU times in 1/100 s on every
// architecture Go supports.
const clockTick = 10 * time.Millisecond

// rssMiB is the resident set size of a process and the anonymous part of it
// (heap, stacks: what the process itself allocated; the rest is pages of its
// binary and libraries, shared page cache), from /proc/<pid>/status.
func rssMiB(pid int) (rss, anon float64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	kib := map[string]float64{}
	for line := range strings.Lines(string(raw)) {
		name, rest, _ := strings.Cut(line, ":")
		if name == "VmRSS" || name == "RssAnon" {
			if kib[name], err = strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64); err != nil {
				return 0, 0, fmt.Errorf("%s of %d: %w", name, pid, err)
			}
		}
	}
	if _, ok := kib["VmRSS"]; !ok {
		return 0, 0, fmt.Errorf("no VmRSS for %d", pid)
	}
	return kib["VmRSS"] / 1024, kib["RssAnon"] / 1024, nil
}
