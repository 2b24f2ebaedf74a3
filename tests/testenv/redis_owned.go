package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// OwnedRedis is a redis-server of one test's own, which the test may stop and
// start again on the same address — to prove what happens while Redis is
// down and that clients recover. It needs the redis-server binary (a shared
// server from LLM_PROXY_TEST_REDIS_URL or a container cannot be stopped by
// the test); without it the test is skipped, or fails under CI=true.
type OwnedRedis struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	conf string   // a config file given before the flags ("" for none)
	args []string // flags after the common ones

	mu sync.Mutex
	p  *process
	n  int
}

// NewOwnedRedis starts a dedicated redis-server and stops it when the test ends.
func NewOwnedRedis(tb testing.TB) *OwnedRedis {
	tb.Helper()
	r := newOwnedRedis(tb, "")
	r.Start()
	return r
}

// newOwnedRedis prepares (does not start) a redis-server of tb's own, run
// with conf as its config file when not "", and args after the common flags.
func newOwnedRedis(tb testing.TB, conf string, args ...string) *OwnedRedis {
	tb.Helper()
	bin := lookPath("redis-server")
	if bin == "" {
		unavailable(tb, "no redis-server on PATH for a test-owned Redis: install redis-server (Debian: apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	r := &OwnedRedis{tb: tb, bin: bin, dir: tb.TempDir(), port: port, conf: conf, args: args}
	tb.Cleanup(r.Stop)
	return r
}

// URL is the server's redis:// URL; it stays the same across restarts.
func (r *OwnedRedis) URL() string { return "redis://" + r.Addr() + "/0" }

// Addr is the server's host:port; it stays the same across restarts.
func (r *OwnedRedis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Start starts the server (again) and waits until it answers.
func (r *OwnedRedis) Start() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		return
	}
	r.n++
	var args []string
	if r.conf != "" {
		args = append(args, r.conf)
	}
	args = append(args, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--daemonize", "no", "--dir", r.dir)
	args = append(append(args, redisFlags...), r.args...)
	p, err := start(command(nil, r.bin, args...), filepath.Join(r.dir, fmt.Sprintf("redis-%d.log", r.n)))
	if err != nil {
		r.tb.Fatal(err)
	}
	if err := waitReady(p.done, func(ctx context.Context) error { return pingRedis(ctx, r.Addr()) }); err != nil {
		p.stop(os.Kill)
		r.tb.Fatalf("redis-server on %s: %v\n%s", r.Addr(), err, p.logTail())
	}
	r.p = p
}

// Stop kills the server at once (SIGKILL: like a crash, nothing is flushed).
func (r *OwnedRedis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		r.p.stop(syscall.SIGKILL)
		r.p = nil
	}
}

// logTail returns the end of the running server's log ("" when stopped).
func (r *OwnedRedis) logTail() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == nil {
		return ""
	}
	return r.p.logTail()
}
