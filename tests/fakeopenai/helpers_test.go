package fakeopenai_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// do sends one request with the test key (and the JSON content type when
// there is a body) plus the header pairs kv, through the server's client
// (which asks for gzip and decodes it), and returns status, headers and body.
func do(t testing.TB, r *fakeopenai.Running, method, path, body string, kv ...string) (int, http.Header, []byte) {
	t.Helper()
	return doWith(t, r.Client(), r, method, path, body, kv...)
}

func doWith(t testing.TB, hc *http.Client, r *fakeopenai.Running, method, path, body string, kv ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, r.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return res.StatusCode, res.Header, b
}

// mustJSON decodes b into a new T, failing the test when it is not JSON.
func mustJSON[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// rawClient is a client of r that neither asks for nor decodes compression
// by itself.
func rawClient(t testing.TB, r *fakeopenai.Running) *http.Client {
	tr := &http.Transport{TLSClientConfig: r.TLSConfig(), ForceAttemptHTTP2: true, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

var (
	idsRE     = regexp.MustCompile(`(chatcmpl-|req_)fake\d+`)
	createdRE = regexp.MustCompile(`"created":\d+`)
)

// normalize blanks the ids and timestamps that differ between two answers.
func normalize(b []byte) string {
	return createdRE.ReplaceAllString(idsRE.ReplaceAllString(string(b), "${1}ID"), `"created":0`)
}
