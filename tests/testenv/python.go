package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// PythonEnv names the variable that may hold the path of a Python
	// interpreter with the packages of tests/python/requirements.txt; by
	// default the tests use the virtualenv that `make deps` creates in .venv/
	// at the module root.
	PythonEnv = "LLM_PROXY_TEST_PYTHON"

	// modulePath identifies the module root when looking for .venv/.
	modulePath = "github.com/llm-proxy/llm-proxy"

	// pythonClientTimeout bounds a [PythonClient] run whose ctx has no
	// deadline.
	pythonClientTimeout = 2 * time.Minute
)

// python is the interpreter found for [Python], at most once per test
// binary (shared test infrastructure, like the services of testenv.go).
var python struct {
	once   sync.Once
	path   string
	source string // where it came from, for the test log
	err    error
}

// Python returns the path of a Python interpreter that has the pinned
// packages of tests/python/requirements.txt (the openai SDK), or skips
// (fails, under CI) tb when there is none. An interpreter that is there but
// cannot import the pinned openai version is always a failure: run
// `make deps`.
func Python(tb testing.TB) string {
	tb.Helper()
	path := findPython(tb)
	tb.Logf("testenv: Python SDK from %s", python.source)
	return path
}

// findPython is [Python] without the log line.
func findPython(tb testing.TB) string {
	tb.Helper()
	python.once.Do(func() { python.path, python.source, python.err = discoverPython() })
	var missing *missingError
	switch {
	case errors.As(python.err, &missing):
		unavailable(tb, fmt.Sprintf("no Python with the openai SDK for the SDK tests (%v): run `make deps` (it creates .venv/) or set %s",
			missing, PythonEnv))
		return ""
	case python.err != nil:
		tb.Fatalf("testenv: Python SDK: %v", python.err)
		return ""
	}
	return python.path
}

// PythonClient runs tests/python/client.py with scenario and args (encoded
// as JSON on its command line) under the [Python] interpreter, with env
// added to this process's environment minus its OPENAI_* variables (a
// developer's real key or organisation must not leak into a test), and
// decodes the one JSON object it prints into out. It fails tb, with the
// script's stderr, when the script exits non-zero, prints something else,
// or outlives ctx (or [pythonClientTimeout] when ctx has no deadline).
func PythonClient(ctx context.Context, tb testing.TB, scenario string, env map[string]string, args, out any) {
	tb.Helper()
	interpreter := findPython(tb)
	root, err := moduleRoot()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	if args == nil {
		args = map[string]any{}
	}
	argJSON, err := json.Marshal(args)
	if err != nil {
		tb.Fatalf("testenv: python client args: %v", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pythonClientTimeout)
		defer cancel()
	}
	script := filepath.Join(root, "tests", "python", "client.py")
	cmd := exec.CommandContext(ctx, interpreter, script, scenario, string(argJSON))
	cmd.Env = pythonEnv(os.Environ(), env)
	cmd.WaitDelay = 5 * time.Second // a killed script's pipes must not hang Wait
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		tb.Fatalf("testenv: python client %s: no answer within its deadline (%s): %v\nstderr:\n%s", scenario, elapsed, ctx.Err(), tail(stderr.Bytes()))
	}
	if err != nil {
		tb.Fatalf("testenv: python client %s: %v\nstderr:\n%s\nstdout:\n%s", scenario, err, tail(stderr.Bytes()), tail(stdout.Bytes()))
	}
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	if err := dec.Decode(out); err != nil {
		tb.Fatalf("testenv: python client %s: decode its output: %v\nstdout:\n%s\nstderr:\n%s", scenario, err, tail(stdout.Bytes()), tail(stderr.Bytes()))
	}
	if dec.More() {
		tb.Fatalf("testenv: python client %s printed more than one JSON object:\n%s", scenario, tail(stdout.Bytes()))
	}
	tb.Logf("testenv: python client %s took %s", scenario, elapsed)
}

// pythonEnv is base without OPENAI_* variables, with loopback exempted from
// any proxy the environment configures, and with extra set.
func pythonEnv(base []string, extra map[string]string) []string {
	env := make([]string, 0, len(base)+len(extra)+3)
	noProxy := "127.0.0.1,localhost,::1"
	for _, kv := range base {
		name, value, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "OPENAI_"):
			continue
		case name == "NO_PROXY", name == "no_proxy":
			if value != "" {
				noProxy += "," + value
			}
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "NO_PROXY="+noProxy, "no_proxy="+noProxy, "PYTHONDONTWRITEBYTECODE=1")
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// discoverPython finds the interpreter: $LLM_PROXY_TEST_PYTHON, else the
// module's .venv/bin/python; a *missingError when neither is there.
func discoverPython() (path, source string, err error) {
	root, err := moduleRoot()
	if err != nil {
		return "", "", err
	}
	path, source = os.Getenv(PythonEnv), "$"+PythonEnv
	if path == "" {
		path, source = filepath.Join(root, ".venv", "bin", "python"), ".venv/bin/python"
		if _, err := os.Stat(path); err != nil {
			return "", "", &missingError{tried: []string{"no " + path}}
		}
	}
	want, err := pinnedVersion(filepath.Join(root, "tests", "python", "requirements.txt"), "openai")
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-c", "import openai; print(openai.__version__)").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("%s (from %s) cannot import openai: %v: %s (run `make deps`)", path, source, err, tail(out))
	}
	if got := strings.TrimSpace(string(out)); got != want {
		return "", "", fmt.Errorf("%s (from %s) has openai %s, requirements.txt pins %s (run `make deps`)", path, source, got, want)
	}
	return path, fmt.Sprintf("%s (openai %s)", source, want), nil
}

// pinnedVersion returns the version pinned for pkg ("pkg==version") in a
// requirements file.
func pinnedVersion(path, pkg string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		name, version, ok := strings.Cut(strings.TrimSpace(line), "==")
		if ok && strings.EqualFold(strings.TrimSpace(name), pkg) {
			return strings.TrimSpace(version), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s pins no %s version", path, pkg)
}

// moduleRoot returns the directory of this module's go.mod, looked up from
// the working directory (go test runs a package's tests in its directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && moduleLine(b) == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of " + modulePath + " above the working directory")
		}
		dir = parent
	}
}

// moduleLine returns the module path a go.mod declares.
func moduleLine(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
