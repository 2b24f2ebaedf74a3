package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults shared by the HTTP backends.
const (
	// DefaultTimeout bounds one HTTP request to a backend.
	DefaultTimeout = 10 * time.Second
	// DefaultConcurrency is how many requests a per-event backend (webhook,
	// Helicone) has in flight at once.
	DefaultConcurrency = 8

	userAgent    = "llm-proxy-dispatch"
	maxErrorBody = 512
	maxReadBody  = 1 << 20
)

// HTTPOptions are the settings the HTTP backends share.
type HTTPOptions struct {
	// Client sends the requests. Nil: a client with Timeout and a
	// connection pool sized for Concurrency.
	Client *http.Client
	// Timeout bounds one request when Client is nil (0: [DefaultTimeout]).
	Timeout time.Duration
	// Concurrency bounds the requests in flight for backends that send one
	// event per request (0: [DefaultConcurrency]).
	Concurrency int
}

func (o HTTPOptions) client() *http.Client {
	if o.Client != nil {
		return o.Client
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = o.concurrency() * 2
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &http.Client{Transport: t, Timeout: timeout}
}

func (o HTTPOptions) concurrency() int {
	if o.Concurrency <= 0 {
		return DefaultConcurrency
	}
	return o.Concurrency
}

// postJSON POSTs body and returns the response body of a 2xx answer, or a
// *StatusError. The error of a failed request never contains the URL's query
// or credentials, which may hold secrets.
func postJSON(ctx context.Context, c *http.Client, target string, body []byte, header http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, Permanent(fmt.Errorf("build request: %w", redactURLError(err)))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxReadBody))
		resp.Body.Close()
	}()
	// A 2xx answer counts even if its body could not be read whole.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxReadBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return b, nil
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > maxErrorBody {
		msg = msg[:maxErrorBody] + "…"
	}
	return nil, &StatusError{Code: resp.StatusCode, Body: msg, After: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

// redactURLError drops the query and user info from the URL a *url.Error
// quotes.
func redactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	ue.URL = redactURL(ue.URL)
	return err
}

// redactURL returns u without user info, query or fragment, for logs.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User = nil
	p.RawQuery = ""
	p.Fragment = ""
	return p.String()
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// deliverEach calls send for every entry, at most concurrency at a time, and
// folds the failures into a *BatchError.
func deliverEach(ctx context.Context, entries []Entry, concurrency int, send func(context.Context, Entry) error) error {
	var (
		mu     sync.Mutex
		failed map[string]error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, concurrency)
	)
	for _, e := range entries {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			mu.Lock()
			if failed == nil {
				failed = map[string]error{}
			}
			failed[e.ID] = ctx.Err()
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(e Entry) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := send(ctx, e); err != nil {
				mu.Lock()
				if failed == nil {
					failed = map[string]error{}
				}
				failed[e.ID] = err
				mu.Unlock()
			}
		}(e)
	}
	wg.Wait()
	if len(failed) == 0 {
		return nil
	}
	return &BatchError{Failed: failed}
}

// vendorEndpoint is a vendor API's endpoint URL: base (or the documented
// default when empty) plus path, checked, with the API key required.
func vendorEndpoint(vendor, base, def, path, apiKey string) (string, error) {
	base = strings.TrimRight(base, "/")
	if base == "" {
		base = def
	}
	if err := checkURL(base); err != nil {
		return "", err
	}
	if apiKey == "" {
		return "", fmt.Errorf("%s API key is empty", vendor)
	}
	return base + path, nil
}

// orNow is now, or time.Now when nil.
func orNow(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}
