package tests

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

// Clients that ask for compression (curl --compressed, the Python SDK) get it,
// and are charged exactly as an identity request is; an upstream that
// compresses without being asked is decoded by the sidecar.
func TestCompressedResponsesAreCharged(t *testing.T) {
	s := startStack(t, stackOptions{})
	raw := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
	const body = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"one two three"}]}`
	const streamBody = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one two three"}]}`
	// "echo: one two three" is 4 words; the prompt 3+3.
	want := charged(t, "gpt-4o-mini", 1, pyUsage{PromptTokens: 6, CompletionTokens: 4})
	for _, c := range []struct {
		name, body, accept, upstreamEncoding, wantEncoding string
	}{
		{"curl --compressed", body, "deflate, gzip, br, zstd", "", "gzip"}, // equal q-values: Envoy picks gzip
		{"curl --compressed stream", streamBody, "gzip", "", "gzip"},
		{"upstream gzips unasked", body, "", "gzip", "gzip"},
		{"upstream brotli unasked, stream", streamBody, "", "br", "br"},
	} {
		t.Run(c.name, func(t *testing.T) {
			since := time.Now()
			p := s.createProject("compressed", "sk-compressed-0123456789")
			tok := s.createToken(map[string]any{"project_id": p.ID})
			req, _ := http.NewRequest("POST", s.envoyURL+"/v1/chat/completions", strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			req.Header.Set("Content-Type", "application/json")
			if c.accept != "" {
				req.Header.Set("Accept-Encoding", c.accept)
			}
			if c.upstreamEncoding != "" {
				req.Header.Set(fakeopenai.HeaderEncoding, c.upstreamEncoding)
			}
			resp, err := raw.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != c.wantEncoding {
				t.Fatalf("status %d, content-encoding %q, want 200 and %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), c.wantEncoding)
			}
			if c.wantEncoding == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if b, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), "three") {
					t.Errorf("decoded answer %q lacks the echo", b)
				}
				if strings.Contains(c.body, `"stream":true`) && strings.Contains(string(b), `"choices":[]`) {
					t.Errorf("the client got a usage chunk it did not ask for: %q", b)
				}
			}
			s.waitUsage(t, p.ID, since, want)
		})
	}
}
