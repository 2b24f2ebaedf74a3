package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// containerStartTimeout bounds pulling an image and starting a container.
const containerStartTimeout = 3 * time.Minute

// dockerEngine reports whether a Docker engine is listening, in well under
// a second: testcontainers itself would spend much longer failing on a
// machine that has the docker CLI but no engine. It returns nil if one
// answers, else what was tried.
func dockerEngine() error {
	type endpoint struct{ network, addr string }
	var endpoints []endpoint
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		u, err := url.Parse(h)
		if err != nil {
			return fmt.Errorf("DOCKER_HOST %q: %w", h, err)
		}
		switch u.Scheme {
		case "unix":
			endpoints = append(endpoints, endpoint{"unix", u.Path})
		case "tcp":
			endpoints = append(endpoints, endpoint{"tcp", u.Host})
		default:
			return nil // ssh:// and the like: leave it to testcontainers
		}
	} else {
		socks := []string{"/var/run/docker.sock"}
		if home, err := os.UserHomeDir(); err == nil {
			socks = append(socks,
				filepath.Join(home, ".docker", "run", "docker.sock"),
				filepath.Join(home, ".docker", "desktop", "docker.sock"),
				filepath.Join(home, ".colima", "default", "docker.sock"))
		}
		if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
			socks = append(socks, filepath.Join(dir, "docker.sock"))
		}
		for _, s := range socks {
			endpoints = append(endpoints, endpoint{"unix", s})
		}
	}
	var tried []string
	for _, e := range endpoints {
		// A socket file left by a stopped engine refuses the connection, so
		// a successful dial means an engine is there.
		c, err := net.DialTimeout(e.network, e.addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		tried = append(tried, e.addr)
	}
	return fmt.Errorf("no Docker engine at %s", strings.Join(tried, ", "))
}

// runContainer starts image with port exposed and returns the container and
// the host:port it is reachable at. Readiness is the caller's business.
func runContainer(ctx context.Context, image, port string, opts ...testcontainers.ContainerCustomizer) (testcontainers.Container, string, error) {
	opts = append(opts, testcontainers.WithExposedPorts(port))
	c, err := testcontainers.Run(ctx, image, opts...)
	if err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, "", fmt.Errorf("run container %s: %w", image, err)
	}
	addr, err := c.PortEndpoint(ctx, port, "")
	if err != nil {
		_ = testcontainers.TerminateContainer(c)
		return nil, "", fmt.Errorf("container %s: port %s: %w", image, port, err)
	}
	return c, addr, nil
}

// containerLogTail returns the end of a container's log.
func containerLogTail(c testcontainers.Container) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return tail(b)
}

// terminate removes a container, for an [instance]'s stop.
func terminate(c testcontainers.Container) func() {
	return func() { _ = testcontainers.TerminateContainer(c) }
}
