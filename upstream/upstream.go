// Package upstream is llm-proxy's own small client of the OpenAI API, for the
// few calls the sidecar makes itself instead of through Envoy: reading a
// background response or a batch to settle what it cost, and a batch's input
// and output files. Every call carries the key of the project it is made for;
// nothing here logs or returns a key.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultBaseURL is OpenAI's API.
const DefaultBaseURL = "https://api.openai.com"

// Options configures a [Client].
type Options struct {
	// BaseURL is the API's scheme and host (and port); default
	// DefaultBaseURL. Paths such as /v1/batches/{id} are appended to it.
	BaseURL string
	// CAFile is an extra PEM bundle of CAs trusted for BaseURL, besides the
	// system's (a test upstream, a corporate proxy).
	CAFile string
	// Timeout bounds one call, body included; default 30s.
	Timeout time.Duration
}

// Client calls the upstream API. It is safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// New returns a Client, or an error naming the option at fault.
func New(o Options) (*Client, error) {
	base := strings.TrimRight(o.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("upstream: base URL %q: want scheme://host[:port]", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream: CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream: CA file %s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &Client{base: base, http: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// StatusError is an answer other than 2xx. Body is the start of the
// upstream's error body (an OpenAI error object), for logs.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream: status %d: %s", e.Status, e.Body)
}

// NotFound reports whether err says the object does not exist (any more).
func NotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// Open GETs path (e.g. "/v1/files/file-1/content") with key and returns the
// body of a 2xx answer, for the caller to read and close. Any other answer is
// a *[StatusError].
func (c *Client) Open(ctx context.Context, key, path string) (io.ReadCloser, error) {
	if !strings.HasPrefix(path, "/v1/") {
		return nil, fmt.Errorf("upstream: path %q is not under /v1/", path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("User-Agent", "llm-proxy")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upstream: GET %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &StatusError{Status: resp.StatusCode, Body: string(b)}
	}
	return resp.Body, nil
}

// Get is [Client.Open] reading the whole body, at most limit bytes; a longer
// body is an error.
func (c *Client) Get(ctx context.Context, key, path string, limit int64) ([]byte, error) {
	body, err := c.Open(ctx, key, path)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("upstream: GET %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("upstream: GET %s: body over %d bytes", path, limit)
	}
	return b, nil
}
