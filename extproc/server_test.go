package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/usage"
)

const goodToken = "llmp_good-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// fakeAuth answers from a table: the unit under test is the state machine,
// not token validation (authz has its own tests, e2e covers both together).
// A nil error admits the token with the principal from principals, or a
// default one.
type fakeAuth map[string]error

var principals = map[string]authz.Principal{
	"llmp_capped": {TokenID: "tok_capped", ProjectID: "proj_1", OpenAIKey: "sk-upstream-secret-key", MaxRequests: ptr(int64(1))},
	"llmp_rpm": {TokenID: "tok_rpm", ProjectID: "proj_1", OpenAIKey: "sk-upstream-secret-key",
		TokenLimits: store.Limits{RequestsPerMinute: ptr(int64(1))}},
}

func ptr[T any](v T) *T { return &v }

func (f fakeAuth) AuthenticateFrom(_ context.Context, _, token string) (authz.Principal, error) {
	if err, ok := f[token]; ok {
		if err != nil {
			return authz.Principal{}, err
		}
		if p, ok := principals[token]; ok {
			return p, nil
		}
		return authz.Principal{TokenID: "tok_1", ProjectID: "proj_1", OpenAIKey: "sk-upstream-secret-key"}, nil
	}
	return authz.Principal{}, authz.ErrInvalidToken
}

func (f fakeAuth) CountRequest(string)  {}
func (f fakeAuth) CountCacheHit(string) {}

// recorder keeps what the server records in the usage roll-up.
type recorder struct {
	mu   sync.Mutex
	recs []store.UsageRecord
}

func (r *recorder) Record(_ time.Time, rec store.UsageRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

// The tokenizer loads its BPE ranks once; tests share it.
var (
	tokenizerOnce sync.Once
	tokenizer     *usage.Tokenizer
)

func testOptions(t testing.TB, auth fakeAuth, logs io.Writer) Options {
	t.Helper()
	routes, err := config.LoadRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Auth: auth, Counter: auth, Limiter: ratelimit.NewMemory(ratelimit.Options{}), Tokenizer: sharedTokenizer(t),
		Prices: usage.DefaultPrices(), Usage: &recorder{}, Routes: routes, Logger: zerolog.New(logs),
	}
}

func startServer(t *testing.T, auth fakeAuth, logs *bytes.Buffer) extprocv3.ExternalProcessorClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, NewServer(testOptions(t, auth, logs)))
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn)
}

func requestHeaders(kv ...string) *extprocv3.ProcessingRequest {
	hm := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: true},
	}}
}

func roundTrip(t *testing.T, c extprocv3.ExternalProcessorClient, reqs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	s, err := c.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*extprocv3.ProcessingResponse
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp)
	}
	s.CloseSend()
	// Wait for the server to end the stream, so its finish step has run.
	if _, err := s.Recv(); err == nil {
		t.Fatal("server sent more than one answer per message")
	}
	return out
}

func TestRequestHeadersDecisions(t *testing.T) {
	auth := fakeAuth{
		goodToken:  nil,
		"llmp_rev": fmt.Errorf("token tok_2: %w", authz.ErrTokenRevoked),
		"llmp_exp": authz.ErrTokenExpired,
		"llmp_off": authz.ErrProjectInactive,
		"llmp_db":  errors.New("database is locked"),
	}
	for _, tc := range []struct {
		name, method, path, authorization string
		status                            int
		code, typ                         string
	}{
		{"unknown path", "GET", "/v1/modelsXYZ", "Bearer " + goodToken, 404, "unknown_url", "invalid_request_error"},
		{"path with extra segment", "GET", "/v1/models/a/b", "Bearer " + goodToken, 404, "unknown_url", "invalid_request_error"},
		{"wrong method", "DELETE", "/v1/models", "Bearer " + goodToken, 405, "method_not_allowed", "invalid_request_error"},
		{"no token", "GET", "/v1/models", "", 401, "invalid_api_key", "invalid_request_error"},
		{"basic auth", "GET", "/v1/models", "Basic Zm9vOmJhcg==", 401, "invalid_api_key", "invalid_request_error"},
		{"unknown token", "GET", "/v1/models", "Bearer llmp_nope", 401, "invalid_api_key", "invalid_request_error"},
		{"revoked", "GET", "/v1/models", "Bearer llmp_rev", 401, "invalid_api_key", "invalid_request_error"},
		{"expired", "GET", "/v1/models", "Bearer llmp_exp", 401, "invalid_api_key", "invalid_request_error"},
		{"project inactive", "GET", "/v1/models", "Bearer llmp_off", 403, "project_inactive", "permission_error"},
		{"store failure", "GET", "/v1/models", "Bearer llmp_db", 500, "internal_error", "server_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			c := startServer(t, auth, &logs)
			resp := roundTrip(t, c, requestHeaders(":method", tc.method, ":path", tc.path, "authorization", tc.authorization, "x-request-id", "rid-1"))[0]
			ir := resp.GetImmediateResponse()
			if ir == nil {
				t.Fatalf("want an ImmediateResponse, got %v", resp)
			}
			if int(ir.GetStatus().GetCode()) != tc.status {
				t.Fatalf("status %d, want %d", ir.GetStatus().GetCode(), tc.status)
			}
			var body struct {
				Error struct {
					Message, Type string
					Param         *string
					Code          string
				}
			}
			if err := json.Unmarshal(ir.GetBody(), &body); err != nil {
				t.Fatalf("body %q: %v", ir.GetBody(), err)
			}
			if body.Error.Code != tc.code || body.Error.Type != tc.typ || body.Error.Message == "" || !bytes.Contains(ir.GetBody(), []byte(`"param":null`)) {
				t.Fatalf("body %s", ir.GetBody())
			}
			hdr := map[string]string{}
			for _, h := range ir.GetHeaders().GetSetHeaders() {
				hdr[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
			}
			if hdr["content-type"] != "application/json" || hdr["x-request-id"] != "rid-1" {
				t.Fatalf("headers %v", hdr)
			}
			if tc.status == 405 && hdr["allow"] != "GET" {
				t.Fatalf("allow header %q", hdr["allow"])
			}
			if tc.status == 500 && strings.Contains(string(ir.GetBody()), "database") {
				t.Fatal("internal error text leaked to the client")
			}
			if strings.Contains(string(ir.GetBody()), "llmp_rev") {
				t.Fatal("full token echoed to the client")
			}
		})
	}
}

func TestForwardedRequestGetsProjectKey(t *testing.T) {
	var logs bytes.Buffer
	c := startServer(t, fakeAuth{goodToken: nil}, &logs)
	resps := roundTrip(t, c,
		requestHeaders(":method", "POST", ":path", "/v1/chat/completions?x=1", "authorization", "Bearer "+goodToken,
			"x-llm-proxy-debug", "1", "openai-project", "proj_other", "content-type", "application/json"),
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", Value: "200"}}},
		}}},
	)
	m := resps[0].GetRequestHeaders().GetResponse().GetHeaderMutation()
	if m == nil {
		t.Fatalf("want a header mutation, got %v", resps[0])
	}
	set := map[string]string{}
	for _, h := range m.GetSetHeaders() {
		set[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	if set["authorization"] != "Bearer sk-upstream-secret-key" {
		t.Fatalf("authorization = %q", set["authorization"])
	}
	if !strings.HasPrefix(set["x-request-id"], "req_") {
		t.Fatalf("x-request-id not added: %v", set)
	}
	removed := strings.Join(m.GetRemoveHeaders(), ",")
	if !strings.Contains(removed, "x-llm-proxy-debug") || !strings.Contains(removed, "openai-project") {
		t.Fatalf("removed %q", removed)
	}
	// A JSON endpoint: its body is read (reservation) and its response
	// headers too (usage); trailers never.
	mode := resps[0].GetModeOverride()
	if mode.GetRequestBodyMode() != procv3.ProcessingMode_BUFFERED || mode.GetResponseHeaderMode() != procv3.ProcessingMode_SEND ||
		mode.GetResponseTrailerMode() != procv3.ProcessingMode_SKIP {
		t.Fatalf("mode override %v", mode)
	}
	// A bodiless endpoint without rate limits: one round trip, nothing more.
	get := roundTrip(t, c, requestHeaders(":method", "GET", ":path", "/v1/models", "authorization", "Bearer "+goodToken))[0]
	if m := get.GetModeOverride(); m.GetRequestBodyMode() != procv3.ProcessingMode_NONE || m.GetResponseHeaderMode() != procv3.ProcessingMode_SKIP ||
		m.GetResponseBodyMode() != procv3.ProcessingMode_NONE {
		t.Fatalf("mode override for GET %v", m)
	}
	if resps[1].GetResponseHeaders() == nil {
		t.Fatalf("response headers answer: %v", resps[1])
	}
	for _, secret := range []string{goodToken, "sk-upstream-secret-key"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log contains a secret: %s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"token_id":"tok_1"`) {
		t.Fatalf("log lacks the token id: %s", logs.String())
	}
}

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Token abc", "", false},
		{"", "", false},
	} {
		got, ok := bearer(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("bearer(%q) = %q, %v", tc.in, got, ok)
		}
	}
}

func FuzzAllowlistMatch(f *testing.F) {
	routes, _ := config.LoadRoutes("")
	a := newAllowlist(routes)
	for _, s := range []string{"/v1/models", "/v1/models/gpt-4o", "/v1/modelsXYZ", "//v1/models", "/v1/files/{file_id}", "/v1/models/"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r, err := a.match(method, path)
		if err == nil && (r == nil || r.Method != method || !strings.HasPrefix(path, "/v1/")) {
			t.Fatalf("match(%q, %q) admitted %v", method, path, r)
		}
	})
}

// FuzzRequestHeaders feeds arbitrary method, path and authorization values
// through the whole request-headers phase: it must never panic, never forward
// without a valid token, and always answer a denial in the OpenAI shape.
func FuzzRequestHeaders(f *testing.F) {
	srv := NewServer(testOptions(f, fakeAuth{goodToken: nil}, io.Discard))
	f.Add("GET", "/v1/models", "Bearer "+goodToken)
	f.Add("POST", "/v1/chat/completions?x=%00", "bearer\t"+goodToken)
	f.Add("GET", "/v1/models/../../etc", "Bearer llmp_\x00")
	f.Fuzz(func(t *testing.T, method, path, authorization string) {
		st := srv.newStream(context.Background())
		resp := st.handle(requestHeaders(":method", method, ":path", path, "authorization", authorization))
		if ir := resp.GetImmediateResponse(); ir != nil {
			var body errorBody
			if err := json.Unmarshal(ir.GetBody(), &body); err != nil || body.Error.Type == "" || body.Error.Message == "" {
				t.Fatalf("denial body %q", ir.GetBody())
			}
			return
		}
		if tok, _ := bearer(authorization); tok != goodToken {
			t.Fatalf("forwarded %s %s with authorization %q", method, path, authorization)
		}
	})
}

func TestLimitsDenyInOpenAIShape(t *testing.T) {
	var logs bytes.Buffer
	c := startServer(t, fakeAuth{"llmp_capped": nil, "llmp_rpm": nil}, &logs)
	for _, tc := range []struct {
		token, code, typ string
		header           string
	}{
		{"llmp_capped", "insufficient_quota", "insufficient_quota", "x-should-retry"},
		{"llmp_rpm", "rate_limit_exceeded", "requests", "retry-after"},
	} {
		get := requestHeaders(":method", "GET", ":path", "/v1/models", "authorization", "Bearer "+tc.token)
		if r := roundTrip(t, c, get)[0]; r.GetImmediateResponse() != nil {
			t.Fatalf("%s: first request denied: %v", tc.token, r)
		}
		ir := roundTrip(t, c, get)[0].GetImmediateResponse()
		if ir.GetStatus().GetCode() != 429 {
			t.Fatalf("%s: second request: %v", tc.token, ir)
		}
		var body errorBody
		json.Unmarshal(ir.GetBody(), &body)
		hdr := map[string]string{}
		for _, h := range ir.GetHeaders().GetSetHeaders() {
			hdr[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
		}
		if body.Error.Code != tc.code || body.Error.Type != tc.typ || hdr[tc.header] == "" {
			t.Fatalf("%s: %s %v", tc.token, ir.GetBody(), hdr)
		}
	}
}
