package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/cmd/llm-proxy/cli"
	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// runCLI runs one llm-proxy command line with the stack's settings.
func (s *stack) runCLI(args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), args, func(k string) string { return s.proxyEnv[k] }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// `llm-proxy chat` sends one request through Envoy with the SDK and prints
// the answer, the request id and the rate-limit headers; refusals exit 1
// with OpenAI's message.
func TestCLIChat(t *testing.T) {
	s := startStack(t, stackOptions{})
	p := s.createProject("smoke", realKey)
	s.mustManage("PATCH", "/manage/projects/"+p.ID, map[string]any{"limits": map[string]any{"requests_per_minute": 100}}, 200, nil)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%t", stream), func(t *testing.T) {
			args := []string{"chat", "--token", tok.Token, "--url", s.envoyURL, "--model", "gpt-4.1-mini", "hello smoke test"}
			if stream {
				args = append(args, "--stream")
			}
			stdout, stderr, err := s.runCLI(args...)
			if err != nil {
				t.Fatalf("chat: %v\n%s", err, stderr)
			}
			if stdout != fakeopenai.EchoReply("hello smoke test")+"\n" {
				t.Errorf("answer %q", stdout)
			}
			for _, want := range []string{"status: 200 OK\n", "x-ratelimit-limit-requests: 100\n", "x-ratelimit-remaining-requests: ", "x-request-id: "} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
		})
	}

	_, stderr, err := s.runCLI("chat", "--token", "llmp_"+strings.Repeat("x", 43), "--url", s.envoyURL, "hi")
	if cli.ExitCode(err) != cli.ExitFailure || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(stderr, "x-request-id: ") {
		t.Errorf("chat with an unknown token: %v\n%s", err, stderr)
	}
}

// `llm-proxy doctor` finds a healthy stack healthy, and says in words
// what is wrong when a part cannot be reached.
func TestCLIDoctor(t *testing.T) {
	s := startStack(t, stackOptions{})
	admin := "http://" + s.envoy.AdminAddr()
	stdout, _, err := s.runCLI("doctor", "--envoy-admin", admin)
	if err != nil {
		t.Fatalf("doctor on a healthy stack: %v\n%s", err, stdout)
	}
	for _, want := range []string{
		"ok    sidecar gRPC health (" + s.proxyEnv["LLM_PROXY_GRPC_ADDR"] + "): SERVING\n",
		"ok    Envoy admin (" + admin + "): reachable\n",
		"ok    Envoy cluster llm_proxy_extproc: 1 of 1 hosts healthy (" + s.proxyEnv["LLM_PROXY_GRPC_ADDR"] + ")\n",
		"ok    serve readiness (" + s.manageURL + "/readyz): ready\n",
		"ok    store (as serve sees it): ok\n",
		"ok    clock skew with serve: ",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, stdout)
		}
	}

	stdout, _, err = s.runCLI("doctor", "--envoy-admin", "http://127.0.0.1:1", "--extproc-cluster", "llm_proxy_extproc")
	if cli.ExitCode(err) != cli.ExitFailure || err.Error() != "1 of 5 checks found a problem" ||
		!strings.Contains(stdout, "FAIL  Envoy admin (http://127.0.0.1:1): not reachable: ") ||
		!strings.Contains(stdout, "is Envoy running with its admin interface there (--envoy-admin)?") {
		t.Errorf("doctor without Envoy admin: %v\n%s", err, stdout)
	}

	stdout, _, err = s.runCLI("doctor", "--envoy-admin", admin, "--extproc-cluster", "nope")
	if cli.ExitCode(err) != cli.ExitFailure || !strings.Contains(stdout, "FAIL  Envoy cluster nope: Envoy has no such cluster") {
		t.Errorf("doctor with a wrong cluster name: %v\n%s", err, stdout)
	}
}

// The built binary: operator commands against a running serve through
// Envoy, their JSON read by a script, and the process exit codes (2 for a
// mistake in the command line, 1 for a refusal with the API's message).
func TestCLIBinary(t *testing.T) {
	bin := durabilityBuild(t)
	s := startStack(t, stackOptions{})
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "LLM_PROXY_URL="+s.envoyURL, "LLM_PROXY_MANAGEMENT_TOKEN="+s.mgmtToken, "OPENAI_API_KEY="+realKey)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("%v: %v", args, err)
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}
	out, errOut, code := run("project", "create", "--name", "from-the-binary", "-o", "json")
	var p struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.ID == "" {
		t.Fatalf("project create: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = run("token", "create", "--project", p.ID, "-o", "json")
	var tok struct{ Token string }
	if code != 0 || json.Unmarshal([]byte(out), &tok) != nil || !strings.HasPrefix(tok.Token, "llmp_") || !strings.Contains(errOut, "shown only this once") {
		t.Fatalf("token create: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = run("chat", "--token", tok.Token, "--url", s.envoyURL, "hi"); code != 0 || out != fakeopenai.EchoReply("hi")+"\n" {
		t.Errorf("chat: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = run("projekt", "list"); code != 2 || !strings.Contains(errOut, `llm-proxy: unknown command "projekt" for "llm-proxy"; did you mean project?`) {
		t.Errorf("unknown command: exit %d\n%s", code, errOut)
	}
	if _, errOut, code = run("project", "get", "proj_nope"); code != 1 || errOut != "llm-proxy: No project with id \"proj_nope\". (HTTP 404, not_found)\n" {
		t.Errorf("unknown project: exit %d\n%q", code, errOut)
	}
}
