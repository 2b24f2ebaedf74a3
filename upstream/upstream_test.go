package upstream

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk-test" {
			w.WriteHeader(401)
			return
		}
		switch r.URL.Path {
		case "/v1/batches/b1":
			w.Write([]byte(`{"id":"b1"}`))
		case "/v1/big":
			w.Write([]byte(strings.Repeat("x", 100)))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"message":"No such object"}}`))
		}
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{BaseURL: srv.URL, CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Get(t.Context(), "sk-test", "/v1/batches/b1", 1024)
	if err != nil || string(b) != `{"id":"b1"}` {
		t.Fatalf("got %q, %v", b, err)
	}
	if _, err := c.Get(t.Context(), "sk-test", "/v1/big", 99); err == nil {
		t.Error("a body over the limit was accepted")
	}
	_, err = c.Get(t.Context(), "sk-test", "/v1/batches/gone", 1024)
	if !NotFound(err) || !strings.Contains(err.Error(), "No such object") {
		t.Errorf("missing object: %v", err)
	}
	if _, err := c.Get(t.Context(), "sk-wrong", "/v1/batches/b1", 1024); err == nil || NotFound(err) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := c.Get(t.Context(), "sk-test", "/manage/x", 1024); err == nil {
		t.Error("a path outside /v1/ was fetched")
	}
	for _, bad := range []string{"ftp://x", "https://", "https://h/v1"} {
		if _, err := New(Options{BaseURL: bad}); err == nil {
			t.Errorf("base URL %q accepted", bad)
		}
	}
}
