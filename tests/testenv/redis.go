package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/testcontainers/testcontainers-go"
)

const (
	// RedisEnv names the variable that may hold the URL of a Redis server
	// the tests can use.
	RedisEnv = "LLM_PROXY_TEST_REDIS_URL"

	redisImage = "redis:7-alpine"
)

// A throw-away server: nothing is written to disk.
var redisFlags = []string{"--save", "", "--appendonly", "no"}

var redisService = &service{
	name:     "Redis",
	envVar:   RedisEnv,
	install:  "redis-server (Debian: apt-get install redis-server)",
	discover: discoverRedis,
}

// Redis returns the URL of a Redis server (redis://host:port/0), or skips
// (fails, under CI) tb when there is none. The server is shared by the
// tests of the binary: keep to keys of your own.
func Redis(tb testing.TB) string {
	tb.Helper()
	return redisService.url(tb)
}

// pingRedis succeeds once the server answers PING with PONG (not, for
// instance, with -LOADING).
func pingRedis(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(deadline)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func discoverRedis() (instance, error) {
	if u := os.Getenv(RedisEnv); u != "" {
		return instance{url: u, source: "$" + RedisEnv}, nil
	}
	var tried []string
	var containerErr error
	if err := dockerEngine(); err != nil {
		tried = append(tried, err.Error())
	} else if inst, err := redisContainer(); err == nil {
		return inst, nil
	} else {
		containerErr = err
	}
	bin := lookPath("redis-server")
	if bin == "" {
		if containerErr != nil {
			return instance{}, containerErr
		}
		tried = append(tried, "no redis-server on PATH")
		return instance{}, &missingError{tried: tried}
	}
	inst, err := redisLocal(bin)
	if err != nil {
		return instance{}, errors.Join(err, containerErr)
	}
	if containerErr != nil {
		inst.source += fmt.Sprintf(" (container failed: %v)", containerErr)
	}
	return inst, nil
}

func redisContainer() (instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	c, addr, err := runContainer(ctx, redisImage, "6379/tcp",
		testcontainers.WithCmd(append([]string{"redis-server"}, redisFlags...)...))
	if err != nil {
		return instance{}, err
	}
	if err := waitReady(nil, func(ctx context.Context) error { return pingRedis(ctx, addr) }); err != nil {
		log := containerLogTail(c)
		terminate(c)()
		return instance{}, fmt.Errorf("container %s: %w\n%s", redisImage, err, log)
	}
	return instance{url: "redis://" + addr + "/0", source: "container " + redisImage, stop: terminate(c)}, nil
}

// redisLocal runs redis-server in the foreground, as a child, on a free
// loopback port, with a new temporary directory as its working directory.
func redisLocal(bin string) (instance, error) {
	dir, err := os.MkdirTemp("", "llm-proxy-testenv-redis-")
	if err != nil {
		return instance{}, err
	}
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return instance{}, err
		}
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--daemonize", "no", "--dir", dir}, redisFlags...)
		p, err := start(command(nil, bin, args...), filepath.Join(dir, fmt.Sprintf("redis-%d.log", attempt)))
		if err != nil {
			_ = os.RemoveAll(dir)
			return instance{}, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = waitReady(p.done, func(ctx context.Context) error { return pingRedis(ctx, addr) })
		if err == nil {
			stop := func() {
				p.stop(syscall.SIGTERM)
				_ = os.RemoveAll(dir)
			}
			return instance{url: "redis://" + addr + "/0", source: "local " + bin, stop: stop}, nil
		}
		p.stop(os.Kill)
		log := p.logTail()
		if errors.Is(err, errExited) && strings.Contains(log, "already in use") && attempt < 3 {
			continue
		}
		_ = os.RemoveAll(dir)
		return instance{}, fmt.Errorf("%s on port %d: %w\n%s", bin, port, err, log)
	}
}
