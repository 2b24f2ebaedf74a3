package fakeopenai_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

func decoder(t testing.TB, enc string, r io.Reader) io.Reader {
	t.Helper()
	switch enc {
	case "gzip":
		z, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		return z
	case "br":
		return brotli.NewReader(r)
	case "":
		return r
	}
	t.Fatalf("unexpected Content-Encoding %q", enc)
	return nil
}

func TestCompressionNegotiation(t *testing.T) {
	s := fakeopenai.New()
	identity := httptest.NewRecorder()
	s.ServeHTTP(identity, httptest.NewRequest("GET", "/v1/models", nil))
	for _, tc := range []struct {
		accept, want string
	}{
		{"", ""},
		{"identity", ""},
		{"deflate", ""},
		{"gzip", "gzip"},
		{"x-gzip", "gzip"},
		{"GZIP;Q=0.5", "gzip"},
		{"br", "br"},
		{"gzip, br", "br"},
		{"gzip;q=1.0, br;q=0.1", "br"},
		{"br;q=0, gzip", "gzip"},
		{"br; q=0 , gzip;q=0", ""},
		{"gzip;q=0", ""},
		{"*", "br"},
		{"*;q=0", ""},
		{"br;q=0, *", "gzip"},
		{"gzip;q=0, *;q=0.2", "br"},
		{"gzip;q=bogus", ""},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/v1/models", nil)
			if tc.accept != "" {
				req.Header.Set("Accept-Encoding", tc.accept)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			h := rec.Header()
			if got := h.Get("Content-Encoding"); got != tc.want {
				t.Fatalf("Content-Encoding %q, want %q", got, tc.want)
			}
			if tc.want != "" && h.Get("Vary") != "Accept-Encoding" {
				t.Errorf("Vary %q", h.Get("Vary"))
			}
			if cl := h.Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
				t.Errorf("Content-Length %s for %d bytes", cl, rec.Body.Len())
			}
			got, err := io.ReadAll(decoder(t, tc.want, rec.Body))
			if err != nil || !bytes.Equal(got, identity.Body.Bytes()) {
				t.Errorf("decoded %q (%v), want %q", got, err, identity.Body.Bytes())
			}
		})
	}
}

func TestCompressionSwitchAndErrors(t *testing.T) {
	s := fakeopenai.New()
	serve := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Accept-Encoding", "gzip, br")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	// Error bodies are compressed too.
	rec := serve("/v1/nope")
	if rec.Code != 404 || rec.Header().Get("Content-Encoding") != "br" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("404: %d %v", rec.Code, rec.Header())
	}
	body, err := io.ReadAll(brotli.NewReader(rec.Body))
	if err != nil || !strings.Contains(string(body), `"type":"invalid_request_error"`) {
		t.Errorf("404 body %q (%v)", body, err)
	}

	s.SetCompression(false)
	rec = serve("/v1/models")
	if rec.Header().Get("Content-Encoding") != "" || rec.Header().Get("Vary") != "" || !strings.HasPrefix(rec.Body.String(), `{"object":"list"`) {
		t.Errorf("SetCompression(false): %v %q", rec.Header(), rec.Body.String())
	}
	// x-fake-encoding wins over SetCompression(false) and Accept-Encoding.
	for _, tc := range []struct{ accept, force, want string }{
		{"", "gzip", "gzip"},
		{"gzip", "br", "br"},
		{"br", "identity", ""},
	} {
		req := httptest.NewRequest("GET", "/v1/models", nil)
		req.Header.Set("Accept-Encoding", tc.accept)
		req.Header.Set("X-Fake-Encoding", tc.force)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if got := rec.Header().Get("Content-Encoding"); rec.Code != 200 || got != tc.want {
			t.Errorf("accept %q, x-fake-encoding %q: %d %q, want %q", tc.accept, tc.force, rec.Code, got, tc.want)
		}
	}
	req := httptest.NewRequest("GET", "/v1/models", nil)
	req.Header.Set("X-Fake-Encoding", "zstd")
	rec = httptest.NewRecorder()
	if s.ServeHTTP(rec, req); rec.Code != 400 {
		t.Errorf("x-fake-encoding zstd: %d", rec.Code)
	}

	s.SetCompression(true)
	if rec = serve("/v1/models"); rec.Header().Get("Content-Encoding") != "br" {
		t.Errorf("SetCompression(true): %v", rec.Header())
	}
}

const chatBody = `{"model":"gpt-4o-mini","stream":%s,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four"}]}`

func chat(stream bool) string {
	return strings.Replace(chatBody, "%s", strconv.FormatBool(stream), 1)
}

func TestCompressedChatMatchesIdentity(t *testing.T) {
	r := start(t)
	hc := rawClient(t, r)
	_, _, want := doWith(t, hc, r, "POST", "/v1/chat/completions", chat(false))
	for _, enc := range []string{"gzip", "br"} {
		t.Run(enc, func(t *testing.T) {
			status, h, got := doWith(t, hc, r, "POST", "/v1/chat/completions", chat(false), "Accept-Encoding", enc)
			if status != 200 || h.Get("Content-Encoding") != enc || h.Get("Content-Length") != strconv.Itoa(len(got)) {
				t.Fatalf("status %d headers %v (%d bytes)", status, h, len(got))
			}
			dec, err := io.ReadAll(decoder(t, enc, bytes.NewReader(got)))
			if err != nil || normalize(dec) != normalize(want) {
				t.Errorf("decoded %s (%v)\nwant    %s", dec, err, want)
			}
		})
	}
}

// TestCompressedStreamIncremental reads a compressed stream event by event
// while the server holds it after the first event: a compressor that is not
// flushed per event would leave that event stuck on the server.
func TestCompressedStreamIncremental(t *testing.T) {
	r := start(t)
	hc := rawClient(t, r)
	_, _, identity := doWith(t, hc, r, "POST", "/v1/chat/completions", chat(true))
	wantEvents := strings.SplitAfter(normalize(identity), "\n\n")
	wantEvents = wantEvents[:len(wantEvents)-1] // the empty tail
	for _, enc := range []string{"gzip", "br"} {
		t.Run(enc, func(t *testing.T) {
			hold := "incremental-" + enc
			req, _ := http.NewRequestWithContext(ctx(t), "POST", r.URL()+"/v1/chat/completions", strings.NewReader(chat(true)))
			req.Header.Set("Accept-Encoding", enc)
			req.Header.Set("X-Fake-Hold", hold)
			res, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.Header.Get("Content-Encoding") != enc || res.Header.Get("Content-Length") != "" || res.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("headers %v", res.Header)
			}
			br := bufio.NewReader(decoder(t, enc, res.Body))
			readEvent := func() string {
				var ev strings.Builder
				for {
					line, err := br.ReadString('\n')
					ev.WriteString(line)
					if err != nil {
						t.Fatalf("after %q: %v", ev.String(), err)
					}
					if line == "\n" {
						return normalize([]byte(ev.String()))
					}
				}
			}
			// The server is held after event 1: it must be decodable now.
			if got := readEvent(); got != wantEvents[0] {
				t.Fatalf("event 1 = %q, want %q", got, wantEvents[0])
			}
			if err := r.WaitHeld(ctx(t), hold); err != nil {
				t.Fatal(err)
			}
			r.Release(hold)
			for i, want := range wantEvents[1:] {
				if got := readEvent(); got != want {
					t.Errorf("event %d = %q, want %q", i+2, got, want)
				}
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("after the last event: %q, %v", rest, err)
			}
		})
	}
}

func TestCompressedBreak(t *testing.T) {
	r := start(t)
	hc := rawClient(t, r)
	_, _, identity := doWith(t, hc, r, "POST", "/v1/chat/completions", chat(false))
	for _, enc := range []string{"gzip", "br"} {
		t.Run(enc, func(t *testing.T) {
			// Non-stream after-20: exactly the first 20 uncompressed bytes, then an error.
			req, _ := http.NewRequestWithContext(ctx(t), "POST", r.URL()+"/v1/chat/completions", strings.NewReader(chat(false)))
			req.Header.Set("Accept-Encoding", enc)
			req.Header.Set("X-Fake-Break", "after-20")
			res, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(decoder(t, enc, res.Body))
			res.Body.Close()
			if err == nil || string(got) != string(identity[:20]) {
				t.Errorf("after-20: %q, %v; want %q and an error", got, err, identity[:20])
			}

			// Stream after-3: three events, then an error.
			req, _ = http.NewRequestWithContext(ctx(t), "POST", r.URL()+"/v1/chat/completions", strings.NewReader(chat(true)))
			req.Header.Set("Accept-Encoding", enc)
			req.Header.Set("X-Fake-Break", "after-3")
			res, err = hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(decoder(t, enc, res.Body))
			res.Body.Close()
			if err == nil || strings.Count(string(got), "\n\n") != 3 {
				t.Errorf("after-3: %q, %v; want 3 events and an error", got, err)
			}
		})
	}
}
