package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// readyTimeout bounds how long a started server may take to accept requests.
const readyTimeout = 30 * time.Second

// Main runs the tests of m, stops every service this package started for
// them, and exits with the tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	stopAll()
	os.Exit(code)
}

// A service is one kind of server, found or started at most once per test
// binary. This is the package's only mutable state: it is test
// infrastructure whose whole point is to be shared by the tests of a binary.
type service struct {
	name     string // for messages, e.g. "PostgreSQL"
	envVar   string // where a URL may be given
	install  string // how to get local binaries, for the skip message
	discover func() (instance, error)

	once sync.Once
	inst instance
	err  error
}

// An instance is a running (or externally provided) server.
type instance struct {
	url    string
	source string // where it came from, for the test log
	stop   func() // nil if there is nothing to stop
}

// missingError means no way to run a service was found: a skip outside CI.
type missingError struct {
	tried []string
}

func (e *missingError) Error() string { return strings.Join(e.tried, "; ") }

// stops holds the stop functions of what was started, for [Main].
var stops struct {
	sync.Mutex
	fns []func()
}

func stopAll() {
	stops.Lock()
	defer stops.Unlock()
	for i := len(stops.fns) - 1; i >= 0; i-- {
		stops.fns[i]()
	}
	stops.fns = nil
}

// url returns the service's URL, starting it on first use. It skips or
// fails tb when there is none (see the package doc).
func (s *service) url(tb testing.TB) string {
	tb.Helper()
	s.once.Do(func() {
		s.inst, s.err = s.discover()
		if s.inst.stop != nil {
			stops.Lock()
			stops.fns = append(stops.fns, s.inst.stop)
			stops.Unlock()
		}
	})
	var missing *missingError
	switch {
	case errors.As(s.err, &missing):
		unavailable(tb, fmt.Sprintf("no %s for integration tests (%v): set %s, start a Docker engine, or install %s",
			s.name, missing, s.envVar, s.install))
		return ""
	case s.err != nil:
		tb.Fatalf("testenv: %s: %v", s.name, s.err)
		return ""
	}
	tb.Logf("testenv: %s from %s", s.name, s.inst.source)
	return s.inst.url
}

// unavailable skips tb, or fails it when running in CI, where a missing
// service must not pass unnoticed.
func unavailable(tb testing.TB, msg string) {
	tb.Helper()
	if inCI() {
		tb.Fatalf("testenv: CI is set, so a missing service is a failure: %s", msg)
		return
	}
	tb.Skipf("testenv: %s", msg)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// freePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the server binds it; callers retry on that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errExited is returned by [waitReady] when the server died while starting.
var errExited = errors.New("exited before it was ready")

// waitReady polls ready until it succeeds, the server exits (done is closed;
// nil for none) or readyTimeout passes.
func waitReady(done <-chan struct{}, ready func(context.Context) error) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", readyTimeout, err)
		}
		select {
		case <-done:
			return errExited
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the end of a server's log, enough to see why it failed.
func tail(log []byte) string {
	const max = 4 << 10
	if len(log) > max {
		log = log[len(log)-max:]
		if i := strings.IndexByte(string(log), '\n'); i >= 0 {
			log = log[i+1:]
		}
	}
	s := strings.TrimSpace(string(log))
	if s == "" {
		return "(empty log)"
	}
	return s
}

// lookPath is exec.LookPath returning "" when the binary is not found.
func lookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}
