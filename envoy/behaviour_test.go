package envoy_test

// These tests run the real Envoy on the rendered reference envoy.yaml with a
// scripted fake ext_proc sidecar, a fake management API and a fake TLS
// upstream for api.openai.com. They pin down how the reference configuration
// behaves, not llm-proxy's logic (tests/ does that with the real sidecar):
//
//   - the sidecar's ImmediateResponses reach the client byte for byte,
//     whatever their status, although they are Envoy local replies;
//   - Envoy's own errors (sidecar down or too slow, body too large, unknown
//     URL, upstream unreachable) come back in the OpenAI error shape;
//   - /manage/, /admin/ and unknown paths never reach the sidecar;
//   - TLS, SNI and Host to the upstream, mode_override to BUFFERED request and
//     STREAMED response bodies, the 8 MiB buffer limit.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/llm-proxy/llm-proxy/envoy"
	"github.com/llm-proxy/llm-proxy/tests/envoytest"
)

// sidecarJSON is what the fake sidecar answers with: an OpenAI error whose
// spelling (key order, no trailing newline) differs from anything Envoy's
// json_format would produce, so a rewrite cannot go unnoticed.
func sidecarJSON(status int) string {
	return fmt.Sprintf(`{"error":{"message":"denied by sidecar (%d)","type":"sidecar_test","param":null,"code":"from_sidecar_%d"}}`, status, status)
}

type fakeSidecar struct {
	extprocv3.UnimplementedExternalProcessorServer

	mu    sync.Mutex
	paths []string // :path of every stream, in order

	requestBodyLen atomic.Int64
	responseChunks atomic.Int64
	// headerDelay is how long the sidecar "thinks" about request headers of
	// /v1/echo (a token lookup), so that the body is already in Envoy.
	headerDelay atomic.Int64
	// responseHeaderDelay is the same for response headers of /v1/stream, so
	// that SSE chunks reach Envoy before the STREAMED mode_override.
	responseHeaderDelay atomic.Int64

	// gzBody is what the sidecar read of the last /v1/gz… response body, and
	// gzEncoding the content-encoding of its response headers.
	gzBody, gzEncoding string

	// health is the sidecar's grpc.health.v1 service, which Envoy checks.
	health *health.Server
}

func (f *fakeSidecar) gzSeen() (body, encoding string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gzBody, f.gzEncoding
}

func (f *fakeSidecar) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.paths...)
}

func header(m *corev3.HeaderMap, key string) string {
	for _, h := range m.GetHeaders() {
		if h.GetKey() == key {
			if len(h.GetRawValue()) > 0 {
				return string(h.GetRawValue())
			}
			return h.GetValue()
		}
	}
	return ""
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

func immediate(status int, contentType, body string, extra ...*corev3.HeaderValueOption) *extprocv3.ProcessingResponse {
	var set []*corev3.HeaderValueOption
	if contentType != "" {
		set = append(set, setHeader("content-type", contentType))
	}
	set = append(set, extra...)
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: set},
			Body:    []byte(body),
			Details: "llm_proxy_test",
		},
	}}
}

func (f *fakeSidecar) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	var path string
	for {
		req, err := srv.Recv()
		if err != nil {
			return nil // io.EOF or the client went away
		}
		var resp *extprocv3.ProcessingResponse
		switch r := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			path = header(r.RequestHeaders.GetHeaders(), ":path")
			f.mu.Lock()
			f.paths = append(f.paths, path)
			f.mu.Unlock()
			resp = f.requestHeaders(srv, path)
			if resp == nil {
				return nil
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			f.requestBodyLen.Store(int64(len(r.RequestBody.GetBody())))
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
				RequestBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
				ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
					HeaderMutation: &extprocv3.HeaderMutation{
						SetHeaders:    []*corev3.HeaderValueOption{setHeader("x-sidecar", "seen")},
						RemoveHeaders: []string{"content-length"},
					},
				}}}}
			if strings.HasPrefix(path, "/v1/stream") {
				time.Sleep(time.Duration(f.responseHeaderDelay.Load()))
				resp.ModeOverride = &extprocfilterv3.ProcessingMode{
					ResponseBodyMode: extprocfilterv3.ProcessingMode_STREAMED,
				}
			}
			if strings.HasPrefix(path, "/v1/gz") {
				f.mu.Lock()
				f.gzBody, f.gzEncoding = "", header(r.ResponseHeaders.GetHeaders(), "content-encoding")
				f.mu.Unlock()
				resp.ModeOverride = &extprocfilterv3.ProcessingMode{
					ResponseBodyMode: extprocfilterv3.ProcessingMode_STREAMED,
				}
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			f.responseChunks.Add(1)
			if strings.HasPrefix(path, "/v1/gz") {
				f.mu.Lock()
				f.gzBody += string(r.ResponseBody.GetBody())
				f.mu.Unlock()
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
				ResponseBody: &extprocv3.BodyResponse{}}}
		default:
			return fmt.Errorf("unexpected message %T", r)
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

func (f *fakeSidecar) requestHeaders(srv extprocv3.ExternalProcessor_ProcessServer, path string) *extprocv3.ProcessingResponse {
	switch {
	case strings.HasPrefix(path, "/v1/immediate/"):
		status, _ := strconv.Atoi(strings.TrimPrefix(path, "/v1/immediate/"))
		return immediate(status, "application/json", sidecarJSON(status), setHeader("retry-after", "7"))
	case strings.HasPrefix(path, "/v1/immediate-plain/"):
		status, _ := strconv.Atoi(strings.TrimPrefix(path, "/v1/immediate-plain/"))
		return immediate(status, "", "plain failure")
	case path == "/v1/cached-sse":
		return immediate(200, "text/event-stream", "data: {\"cached\":true}\n\ndata: [DONE]\n\n",
			setHeader("cache-status", "llm-proxy; hit"))
	case path == "/v1/slow":
		time.Sleep(2500 * time.Millisecond) // message_timeout is 2s
		return nil
	case path == "/v1/slow-extended":
		// Ask for more time (bounded by max_message_timeout), then answer late.
		if err := srv.Send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(6 * time.Second)}); err != nil {
			return nil
		}
		time.Sleep(2500 * time.Millisecond)
	}
	mutation := &extprocv3.HeaderMutation{
		SetHeaders:    []*corev3.HeaderValueOption{setHeader("authorization", "Bearer sk-upstream-key")},
		RemoveHeaders: []string{"x-proxy-only"},
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mutation}},
	}}
	if strings.HasPrefix(path, "/v1/echo") {
		time.Sleep(time.Duration(f.headerDelay.Load()))
		resp.ModeOverride = &extprocfilterv3.ProcessingMode{
			RequestBodyMode:    extprocfilterv3.ProcessingMode_BUFFERED,
			ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
		}
	}
	return resp
}

type upstreamSeen struct {
	Host       string `json:"host"`
	SNI        string `json:"sni"`
	Auth       string `json:"auth"`
	ProxyOnly  string `json:"proxy_only"`
	BodyLength int    `json:"body_length"`
}

// gzJSON and gzSSE are the bodies of /v1/gz and /v1/gz-stream, which the
// upstream gzips whenever the request accepts gzip, as OpenAI's edge does
// (and as the reference configuration must never let it be asked to).
const (
	gzJSON = `{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`
	gzSSE  = "data: {\"n\":0}\n\ndata: {\"n\":1}\n\ndata: [DONE]\n\n"
)

func startUpstream(t *testing.T) (addr, caFile string, acceptEncoding *atomic.Value) {
	tlsCfg, caFile := envoytest.UpstreamTLS(t, "api.openai.com")
	acceptEncoding = &atomic.Value{}
	acceptEncoding.Store("")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/gz") {
			acceptEncoding.Store(r.Header.Get("accept-encoding"))
			body, ct := gzJSON, "application/json"
			if r.URL.Path == "/v1/gz-stream" {
				body, ct = gzSSE, "text/event-stream"
			}
			w.Header().Set("content-type", ct)
			if !strings.Contains(r.Header.Get("accept-encoding"), "gzip") {
				io.WriteString(w, body)
				return
			}
			w.Header().Set("content-encoding", "gzip")
			zw := gzip.NewWriter(w)
			for ev := range strings.SplitAfterSeq(body, "\n\n") {
				io.WriteString(zw, ev)
				zw.Flush()
				w.(http.Flusher).Flush()
			}
			zw.Close()
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/stream") {
			w.Header().Set("content-type", "text/event-stream")
			fl := w.(http.Flusher)
			n, pause := 3, 50*time.Millisecond
			if v := r.URL.Query().Get("n"); v != "" {
				n, _ = strconv.Atoi(v)
				pause = 0
			}
			for i := range n {
				fmt.Fprintf(w, "data: {\"chunk\":%d}\n\n", i)
				fl.Flush()
				time.Sleep(pause)
			}
			io.WriteString(w, "data: [DONE]\n\n")
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		seen := upstreamSeen{
			Host: r.Host, Auth: r.Header.Get("authorization"),
			ProxyOnly: r.Header.Get("x-proxy-only"), BodyLength: int(n),
		}
		if r.TLS != nil {
			seen.SNI = r.TLS.ServerName
		}
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(seen)
	}))
	srv.TLS = tlsCfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), caFile, acceptEncoding
}

func startSidecar(t *testing.T) (*fakeSidecar, string, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Go's default 4 MiB receive limit is below Envoy's 8 MiB buffered body.
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	f := &fakeSidecar{health: health.NewServer()}
	extprocv3.RegisterExternalProcessorServer(gs, f)
	healthpb.RegisterHealthServer(gs, f.health)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return f, l.Addr().String(), gs.Stop
}

func closedAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", envoytest.FreePort(t))
}

type reply struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

type openAIError struct {
	Error struct {
		Message *string `json:"message"`
		Type    *string `json:"type"`
		Param   any     `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// wantOpenAIError checks r is an Envoy-made error in the OpenAI shape.
func wantOpenAIError(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d (body %q)", what, r.status, status, r.body)
	}
	if ct := r.header.Get("content-type"); ct != "application/json" {
		t.Errorf("%s: content-type %q, want application/json", what, ct)
	}
	var e openAIError
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s: body %q is not an OpenAI error: %v", what, r.body, err)
	}
	if !strings.Contains(r.body, `"param":null`) {
		t.Errorf("%s: body %q lacks \"param\":null", what, r.body)
	}
	if e.Error.Message == nil || *e.Error.Message == "" || e.Error.Type == nil || e.Error.Code == nil {
		t.Errorf("%s: incomplete OpenAI error %q", what, r.body)
	} else if *e.Error.Code != code {
		t.Errorf("%s: code %q, want %q (body %q)", what, *e.Error.Code, code, r.body)
	}
}

func TestReferenceConfigBehaviour(t *testing.T) {
	envoytest.Binary(t) // skip early when there is no Envoy
	upstream, caFile, upstreamAcceptEncoding := startUpstream(t)
	sidecar, sidecarAddr, stopSidecar := startSidecar(t)
	manage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		fmt.Fprintf(w, `{"manage":%q,"auth":%q}`, r.URL.Path, r.Header.Get("authorization"))
	}))
	t.Cleanup(manage.Close)

	port := envoytest.FreePort(t)
	cfg, err := envoy.Render(envoy.RenderOptions{
		ListenerPort:   port,
		AdminPort:      envoytest.FreePort(t),
		ExtProcAddr:    sidecarAddr,
		ManageAddr:     manage.Listener.Addr().String(),
		Upstream:       upstream,
		UpstreamCAFile: caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := envoytest.Start(t, cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	t.Run("sidecar immediate responses pass through unchanged", func(t *testing.T) {
		for _, status := range []int{400, 401, 403, 404, 413, 429, 500, 502, 503, 504} {
			r := do(t, "POST", fmt.Sprintf("%s/v1/immediate/%d", base, status), strings.NewReader(`{}`), nil)
			if r.status != status || r.body != sidecarJSON(status) ||
				r.header.Get("content-type") != "application/json" || r.header.Get("retry-after") != "7" {
				t.Errorf("immediate %d: got %d %q content-type=%q retry-after=%q, want the sidecar's reply unchanged",
					status, r.status, r.body, r.header.Get("content-type"), r.header.Get("retry-after"))
			}
		}
	})

	t.Run("cached SSE replay passes through", func(t *testing.T) {
		r := do(t, "GET", base+"/v1/cached-sse", nil, nil)
		if r.status != 200 || r.body != "data: {\"cached\":true}\n\ndata: [DONE]\n\n" ||
			r.header.Get("content-type") != "text/event-stream" || r.header.Get("cache-status") != "llm-proxy; hit" {
			t.Errorf("got %d %q %v", r.status, r.body, r.header)
		}
	})

	t.Run("sidecar error without content-type is shaped by Envoy", func(t *testing.T) {
		// Documents the contract: the sidecar must set content-type on its
		// ImmediateResponses, or local_reply_config takes them for Envoy's.
		r := do(t, "GET", base+"/v1/immediate-plain/502", nil, nil)
		wantOpenAIError(t, "plain 502", r, 502, "upstream_error")
	})

	t.Run("proxied request: TLS, SNI, host rewrite, key swap, buffered body", func(t *testing.T) {
		body := bytes.Repeat([]byte("a"), 5<<20) // 5 MiB: above gRPC's and Envoy's defaults
		r := do(t, "POST", base+"/v1/echo", bytes.NewReader(body), map[string]string{
			"authorization": "Bearer proxy-token", "x-proxy-only": "1", "content-type": "application/json",
		})
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		var seen upstreamSeen
		if err := json.Unmarshal([]byte(r.body), &seen); err != nil {
			t.Fatalf("%q: %v", r.body, err)
		}
		want := upstreamSeen{Host: "api.openai.com", SNI: "api.openai.com", Auth: "Bearer sk-upstream-key", BodyLength: len(body)}
		if seen != want {
			t.Errorf("upstream saw %+v, want %+v", seen, want)
		}
		if got := sidecar.requestBodyLen.Load(); got != int64(len(body)) {
			t.Errorf("sidecar got a %d byte buffered body, want %d", got, len(body))
		}
		if r.header.Get("x-sidecar") != "seen" {
			t.Errorf("response header mutation lost: %v", r.header)
		}
		if r.header.Get("x-request-id") != "" {
			t.Logf("x-request-id in response: %q", r.header.Get("x-request-id"))
		}
	})

	t.Run("JSON body over the buffer limit is a 413 in OpenAI shape", func(t *testing.T) {
		// With a sidecar that takes its time over the headers, the whole body
		// is in Envoy before the sidecar answers: still a clean 413 (with a
		// mode_override NONE -> BUFFERED instead of the route's static
		// BUFFERED mode this hangs or passes the body through).
		sidecar.headerDelay.Store(int64(30 * time.Millisecond))
		defer sidecar.headerDelay.Store(0)
		for _, n := range []int{8<<20 + 1, 9 << 20} {
			sidecar.requestBodyLen.Store(-1)
			body := bytes.Repeat([]byte("a"), n)
			r := do(t, "POST", base+"/v1/echo", bytes.NewReader(body), map[string]string{"content-type": "application/json"})
			wantOpenAIError(t, fmt.Sprintf("%d byte body", n), r, 413, "request_too_large")
			if got := sidecar.requestBodyLen.Load(); got != -1 {
				t.Errorf("sidecar got a %d byte body", got)
			}
		}
		r := do(t, "POST", base+"/v1/echo", bytes.NewReader(bytes.Repeat([]byte("a"), 8<<20)), map[string]string{"content-type": "application/json"})
		if r.status != 200 {
			t.Errorf("8 MiB body: %d %q, want 200", r.status, r.body)
		}
	})

	t.Run("multipart upload streams through without the sidecar seeing it", func(t *testing.T) {
		sidecar.requestBodyLen.Store(-1)
		body := bytes.Repeat([]byte("a"), 20<<20)
		r := do(t, "POST", base+"/v1/audio/transcriptions", bytes.NewReader(body), map[string]string{
			"content-type": "multipart/form-data; boundary=xyz", "authorization": "Bearer proxy-token",
		})
		if r.status != 200 || !strings.Contains(r.body, fmt.Sprintf(`"body_length":%d`, len(body))) ||
			!strings.Contains(r.body, "sk-upstream-key") {
			t.Errorf("got %d %q", r.status, r.body)
		}
		if got := sidecar.requestBodyLen.Load(); got != -1 {
			t.Errorf("sidecar got a %d byte body", got)
		}
	})

	t.Run("streamed SSE response, switched to STREAMED late", func(t *testing.T) {
		// The sidecar answers the response headers after the whole stream
		// (3.5 MB, over the 1 MiB connection buffers) reached Envoy.
		sidecar.responseHeaderDelay.Store(int64(50 * time.Millisecond))
		defer sidecar.responseHeaderDelay.Store(0)
		r := do(t, "POST", base+"/v1/stream?n=200000", strings.NewReader(`{"stream":true}`), map[string]string{"content-type": "application/json"})
		if r.status != 200 || strings.Count(r.body, "data: ") != 200001 || !strings.HasSuffix(r.body, "data: [DONE]\n\n") {
			t.Errorf("got %d, %d events", r.status, strings.Count(r.body, "data: "))
		}
	})

	t.Run("streamed SSE response", func(t *testing.T) {
		before := sidecar.responseChunks.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/stream", strings.NewReader(`{"stream":true}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("content-type") != "text/event-stream" {
			t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
		}
		var events []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "data: ") {
				events = append(events, strings.TrimPrefix(l, "data: "))
			}
		}
		want := []string{`{"chunk":0}`, `{"chunk":1}`, `{"chunk":2}`, "[DONE]"}
		if strings.Join(events, ",") != strings.Join(want, ",") {
			t.Errorf("events %q, want %q", events, want)
		}
		if sidecar.responseChunks.Load() == before {
			t.Error("sidecar saw no STREAMED response body chunk")
		}
	})

	t.Run("the sidecar reads identity bodies, clients get what they asked for", func(t *testing.T) {
		// Go's default transport would ask for gzip and decode it silently.
		raw := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		for _, c := range []struct {
			path, accept, wantEncoding, want string
		}{
			{"/v1/gz", "gzip", "gzip", gzJSON},
			{"/v1/gz", "", "", gzJSON},
			{"/v1/gz", "br;q=1, gzip;q=0.5", "br", gzJSON},
			{"/v1/gz-stream", "gzip", "gzip", gzSSE},
			{"/v1/gz-stream", "identity", "", gzSSE},
		} {
			name := c.path + " accept-encoding=" + c.accept
			req, _ := http.NewRequest("POST", base+c.path, strings.NewReader(`{}`))
			req.Header.Set("content-type", "application/json")
			if c.accept != "" {
				req.Header.Set("accept-encoding", c.accept)
			}
			resp, err := raw.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := resp.Header.Get("content-encoding"); got != c.wantEncoding {
				t.Errorf("%s: client got content-encoding %q, want %q", name, got, c.wantEncoding)
			}
			if c.wantEncoding == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(b))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if b, err = io.ReadAll(zr); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			if c.wantEncoding != "br" && string(b) != c.want {
				t.Errorf("%s: client got %q, want %q", name, b, c.want)
			}
			if c.wantEncoding == "br" && (len(b) == 0 || string(b) == c.want) {
				t.Errorf("%s: client got %q, want brotli bytes", name, b)
			}
			body, enc := sidecar.gzSeen()
			if body != c.want || enc != "" {
				t.Errorf("%s: sidecar read %q (content-encoding %q), want the identity body %q", name, body, enc, c.want)
			}
			// OpenAI is not asked to compress: it answers in identity.
			if got := upstreamAcceptEncoding.Load().(string); got != "" {
				t.Errorf("%s: upstream got accept-encoding %q, want none", name, got)
			}
		}
	})

	t.Run("management API bypasses ext_proc", func(t *testing.T) {
		n := len(sidecar.seen())
		r := do(t, "GET", base+"/manage/projects", nil, map[string]string{"authorization": "Bearer mgmt"})
		if r.status != 200 || r.body != `{"manage":"/manage/projects","auth":"Bearer mgmt"}` {
			t.Errorf("got %d %q", r.status, r.body)
		}
		if got := sidecar.seen(); len(got) != n {
			t.Errorf("sidecar saw %q", got[n:])
		}
	})

	t.Run("admin console bypasses ext_proc", func(t *testing.T) {
		n := len(sidecar.seen())
		r := do(t, "GET", base+"/admin/projects?q=a", nil, nil)
		if r.status != 200 || r.body != `{"manage":"/admin/projects","auth":""}` {
			t.Errorf("got %d %q", r.status, r.body)
		}
		if got := sidecar.seen(); len(got) != n {
			t.Errorf("sidecar saw %q", got[n:])
		}
	})

	t.Run("unknown URL is a 404 in OpenAI shape, without the sidecar", func(t *testing.T) {
		n := len(sidecar.seen())
		r := do(t, "GET", base+`/v2/models?x="y"`, nil, nil)
		wantOpenAIError(t, "unknown URL", r, 404, "unknown_url")
		if !strings.Contains(r.body, "GET /v2/models") {
			t.Errorf("404 message lacks the request: %q", r.body)
		}
		if got := sidecar.seen(); len(got) != n {
			t.Errorf("sidecar saw %q", got[n:])
		}
	})

	t.Run("sidecar extends its message timeout", func(t *testing.T) {
		r := do(t, "GET", base+"/v1/slow-extended", nil, nil)
		if r.status != 200 {
			t.Errorf("got %d %q, want 200 after override_message_timeout", r.status, r.body)
		}
	})

	t.Run("sidecar too slow is a 504 in OpenAI shape", func(t *testing.T) {
		// status_on_error does not apply to message_timeout: Envoy says 504.
		r := do(t, "GET", base+"/v1/slow", nil, nil)
		wantOpenAIError(t, "slow sidecar", r, 504, "proxy_unavailable")
	})

	t.Run("sidecar down is a 503 in OpenAI shape", func(t *testing.T) {
		stopSidecar()
		r := do(t, "GET", base+"/v1/models", nil, nil)
		wantOpenAIError(t, "sidecar down", r, 503, "proxy_unavailable")
	})

	if stats, err := e.Admin("/stats?filter=ext_proc"); err == nil {
		t.Logf("ext_proc stats:\n%s", stats)
	}
}

func TestReferenceConfigWithoutBackends(t *testing.T) {
	envoytest.Binary(t)
	_, caFile := envoytest.UpstreamTLS(t, "api.openai.com")
	port := envoytest.FreePort(t)
	cfg, err := envoy.Render(envoy.RenderOptions{
		ListenerPort:   port,
		AdminPort:      envoytest.FreePort(t),
		ExtProcAddr:    closedAddr(t),
		ManageAddr:     closedAddr(t),
		Upstream:       closedAddr(t),
		UpstreamCAFile: caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	envoytest.Start(t, cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	wantOpenAIError(t, "no sidecar", do(t, "POST", base+"/v1/chat/completions", strings.NewReader(`{}`), nil), 503, "proxy_unavailable")
	wantOpenAIError(t, "no management API", do(t, "GET", base+"/manage/projects", nil, nil), 503, "upstream_error")
	wantOpenAIError(t, "unknown URL", do(t, "DELETE", base+"/", nil, nil), 404, "unknown_url")
}
