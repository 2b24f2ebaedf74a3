package fakeopenai

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultHosts are the SANs of the certificate StartTLS generates.
var DefaultHosts = []string{"api.openai.com", "localhost", "127.0.0.1", "::1"}

// CAFileName is the file name CAFile writes in its directory.
const CAFileName = "fake-openai-ca.pem"

// GenerateCertificate returns a fresh self-signed ECDSA P-256 certificate
// for hosts (DNS names or IP addresses; DefaultHosts when none), valid from
// an hour ago for a week, marked IsCA so the certificate itself can be used
// as a trust anchor, and its PEM encoding.
func GenerateCertificate(hosts ...string) (tls.Certificate, []byte, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"fakeopenai"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certPEM, nil
}

// Running is a Server listening on a port. It embeds the Server, so
// r.Requests(), r.Release(id) etc. work directly.
type Running struct {
	*Server

	srv     *http.Server
	ln      net.Listener
	tls     bool
	certPEM []byte
	pool    *x509.CertPool

	done      chan struct{}
	serveErr  error
	closeOnce sync.Once
	closeErr  error

	clientMu sync.Mutex
	client   *http.Client
}

// NewTLSServer is New().StartTLS(addr).
func NewTLSServer(addr string) (*Running, error) { return New().StartTLS(addr) }

// StartTLS serves s over TLS (HTTP/2 via ALPN, and HTTP/1.1) on addr
// ("127.0.0.1:0" when empty) with a freshly generated certificate for
// DefaultHosts; see GenerateCertificate.
func (s *Server) StartTLS(addr string) (*Running, error) {
	cert, certPEM, err := GenerateCertificate()
	if err != nil {
		return nil, fmt.Errorf("fakeopenai: generating certificate: %w", err)
	}
	return s.start(addr, &cert, certPEM)
}

// Start serves s over plain HTTP/1.1 on addr ("127.0.0.1:0" when empty).
func (s *Server) Start(addr string) (*Running, error) { return s.start(addr, nil, nil) }

func (s *Server) start(addr string, cert *tls.Certificate, certPEM []byte) (*Running, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fakeopenai: %w", err)
	}
	r := &Running{
		Server:  s,
		ln:      ln,
		tls:     cert != nil,
		certPEM: certPEM,
		done:    make(chan struct{}),
		srv: &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       5 * time.Minute,
			ErrorLog:          log.New(io.Discard, "", 0),
			HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
		},
	}
	if cert != nil {
		r.pool = x509.NewCertPool()
		r.pool.AddCert(cert.Leaf)
		r.srv.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{*cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"h2", "http/1.1"},
		}
	}
	go func() {
		defer close(r.done)
		var err error
		if r.tls {
			err = r.srv.ServeTLS(ln, "", "")
		} else {
			err = r.srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			r.serveErr = err
		}
	}()
	return r, nil
}

// Addr is the listening address, e.g. "127.0.0.1:43121".
func (r *Running) Addr() string { return r.ln.Addr().String() }

// URL is "https://" + Addr() ("http://" for Start).
func (r *Running) URL() string {
	if r.tls {
		return "https://" + r.Addr()
	}
	return "http://" + r.Addr()
}

// BaseURL is URL() + "/v1/", the base URL an OpenAI SDK client expects.
func (r *Running) BaseURL() string { return r.URL() + "/v1/" }

// CertPEM is the PEM of the server certificate (nil for Start). The
// certificate is self-signed and IsCA: trust it as a CA.
func (r *Running) CertPEM() []byte { return r.certPEM }

// CertPool is a pool holding the server certificate (nil for Start).
func (r *Running) CertPool() *x509.CertPool { return r.pool }

// WriteCertPEM writes CertPEM() to path (mode 0644).
func (r *Running) WriteCertPEM(path string) error {
	if r.certPEM == nil {
		return errors.New("fakeopenai: not serving TLS, no certificate")
	}
	return os.WriteFile(path, r.certPEM, 0o644)
}

// CAFile writes CertPEM() to dir/CAFileName and returns that path.
func (r *Running) CAFile(dir string) (string, error) {
	p := filepath.Join(dir, CAFileName)
	if err := r.WriteCertPEM(p); err != nil {
		return "", err
	}
	return p, nil
}

// TLSConfig is a client TLS configuration trusting the server certificate
// (nil for Start). Set ServerName to "api.openai.com" to dial it by IP as
// if it were the real API; by default Go checks the dialled host (the
// 127.0.0.1 IP SAN).
func (r *Running) TLSConfig() *tls.Config {
	if !r.tls {
		return nil
	}
	return &tls.Config{RootCAs: r.pool, MinVersion: tls.VersionTLS12}
}

// Client is an http.Client (shared, made on first use) that trusts the
// server certificate and speaks HTTP/2 when it can.
func (r *Running) Client() *http.Client {
	r.clientMu.Lock()
	defer r.clientMu.Unlock()
	if r.client == nil {
		tr := &http.Transport{
			Proxy:               nil,
			TLSClientConfig:     r.TLSConfig(),
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		}
		r.client = &http.Client{Transport: tr}
	}
	return r.client
}

// Done is closed when the server has stopped serving.
func (r *Running) Done() <-chan struct{} { return r.done }

// Close stops the server at once, closing open connections (which ends held
// and streaming requests), and waits for the serve loop to return. It
// returns the serve loop's error, if it failed other than by being closed.
func (r *Running) Close() error {
	r.closeOnce.Do(func() {
		err := r.srv.Close()
		<-r.done
		r.clientMu.Lock()
		if r.client != nil {
			r.client.CloseIdleConnections()
		}
		r.clientMu.Unlock()
		r.closeErr = errors.Join(r.serveErr, err)
	})
	return r.closeErr
}
