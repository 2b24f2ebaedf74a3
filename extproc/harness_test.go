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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/config"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/usage"
)

// The harness runs a real Server behind a bufconn gRPC listener and drives
// Process phase by phase, as Envoy would. Cheap collaborators are the real
// ones (the in-memory limiter and cache, the price table, the tokenizer); the
// rest are the small recording fakes below.

// testStart is the harness's clock: it never moves, so latencies are 0 and
// every rate-limit reset is the full window.
var testStart = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// The harness's principals. "llmp_main" has a token-rate limit and a budget,
// so its requests are reserved; the others vary one setting each.
const (
	tokMain       = "llmp_main"
	tokFree       = "llmp_free"       // no limits: nothing reserved
	tokCachePOST  = "llmp_cache_post" // the project caches POSTs
	tokBackground = "llmp_background" // the project allows background responses and batches
	tokOutage     = "llmp_outage"     // the store is down
	tokRevoked    = "llmp_revoked"
)

const (
	testTPM    = 100_000
	testRPM    = 100
	testBudget = 100_000_000 // micro-USD
)

func harnessPrincipals() map[string]authz.Principal {
	limited := func(tokenID string) authz.Principal {
		return authz.Principal{TokenID: tokenID, ProjectID: "proj_1", OpenAIKey: "sk-upstream-secret-key",
			TokenLimits:           store.Limits{TokensPerMinute: ptr(int64(testTPM)), RequestsPerMinute: ptr(int64(testRPM))},
			MonthlyBudgetMicroUSD: ptr(int64(testBudget))}
	}
	cachePOST := limited("tok_cache_post")
	cachePOST.CachePOST = true
	background := limited("tok_background")
	background.AllowBackground, background.AllowBatches = true, true
	return map[string]authz.Principal{
		tokMain:       limited("tok_main"),
		tokFree:       {TokenID: "tok_free", ProjectID: "proj_1", OpenAIKey: "sk-upstream-secret-key"},
		tokCachePOST:  cachePOST,
		tokBackground: background,
	}
}

// tableAuth admits the principals it knows, refuses the rest, and counts
// requests and cache hits.
type tableAuth struct {
	principals map[string]authz.Principal

	mu        sync.Mutex
	requests  map[string]int
	cacheHits map[string]int
}

func (a *tableAuth) AuthenticateFrom(_ context.Context, _, token string) (authz.Principal, error) {
	switch token {
	case tokOutage:
		return authz.Principal{}, errors.New("database is locked")
	case tokRevoked:
		return authz.Principal{}, &authz.DeniedError{TokenID: "tok_revoked", ProjectID: "proj_1", Err: authz.ErrTokenRevoked}
	}
	if p, ok := a.principals[token]; ok {
		return p, nil
	}
	return authz.Principal{}, authz.ErrInvalidToken
}

func (a *tableAuth) CountRequest(tokenID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests[tokenID]++
}

func (a *tableAuth) CountCacheHit(tokenID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cacheHits[tokenID]++
}

func (a *tableAuth) hits(tokenID string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cacheHits[tokenID]
}

// reserveCall is one Limiter.Reserve the server made.
type reserveCall struct{ tokens, cost int64 }

// recordingLimiter is the real in-memory limiter, recording what is reserved.
// admitErr, when set, fails Admit instead.
type recordingLimiter struct {
	*ratelimit.Limiter
	admitErr error

	mu       sync.Mutex
	reserved []reserveCall
}

func (l *recordingLimiter) Admit(ctx context.Context, limits []ratelimit.Limit) (*ratelimit.Admission, error) {
	if l.admitErr != nil {
		return nil, l.admitErr
	}
	return l.Limiter.Admit(ctx, limits)
}

func (l *recordingLimiter) Reserve(ctx context.Context, limits []ratelimit.Limit, tokens, cost int64) (*ratelimit.Reservation, error) {
	l.mu.Lock()
	l.reserved = append(l.reserved, reserveCall{tokens, cost})
	l.mu.Unlock()
	return l.Limiter.Reserve(ctx, limits, tokens, cost)
}

func (l *recordingLimiter) calls() []reserveCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]reserveCall(nil), l.reserved...)
}

// usageLog keeps the usage records settled requests add to the roll-up.
type usageLog struct {
	mu   sync.Mutex
	recs []store.UsageRecord
}

func (u *usageLog) Record(_ time.Time, rec store.UsageRecord) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.recs = append(u.recs, rec)
}

func (u *usageLog) records() []store.UsageRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]store.UsageRecord(nil), u.recs...)
}

// eventLog receives usage events; finish emits one per stream, so a test
// waits on it to know a stream's finish has run.
type eventLog chan *llmproxyv1.UsageEvent

func (e eventLog) Emit(ev *llmproxyv1.UsageEvent) { e <- ev }

// auditLog keeps the security denials recorded.
type auditLog struct {
	mu  sync.Mutex
	evs []store.AuditEvent
}

func (a *auditLog) Record(ev store.AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
}

func (a *auditLog) events() []store.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]store.AuditEvent(nil), a.evs...)
}

// observed is one Observe call of the deferred tracker.
type observed struct {
	projectID string
	job       usage.Job
}

// deferredLog is the deferred-work tracker: it keeps what it is handed.
// trackErr, when set, refuses every Track.
type deferredLog struct {
	trackErr error

	mu       sync.Mutex
	tracked  []store.Deferred
	observed []observed
}

func (d *deferredLog) Track(_ context.Context, x store.Deferred) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.trackErr != nil {
		return d.trackErr
	}
	d.tracked = append(d.tracked, x)
	return nil
}

func (d *deferredLog) Observe(_ context.Context, projectID string, job usage.Job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.observed = append(d.observed, observed{projectID, job})
}

// fileServer serves batch input files by path; a missing one is err.
type fileServer struct {
	files map[string]string
	err   error
}

func (f fileServer) Open(_ context.Context, key, path string) (io.ReadCloser, error) {
	if key != "sk-upstream-secret-key" {
		return nil, fmt.Errorf("file read with key %q", key)
	}
	if s, ok := f.files[path]; ok {
		return io.NopCloser(strings.NewReader(s)), nil
	}
	return nil, f.err
}

// syncBuffer is a log sink several streams may write at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sharedTokenizer is the tokenizer all tests share: it loads its BPE
// ranks once.
func sharedTokenizer(t testing.TB) *usage.Tokenizer {
	t.Helper()
	tokenizerOnce.Do(func() { tokenizer = usage.NewTokenizer() })
	return tokenizer
}

// harness is one Server with its fakes, reachable over bufconn.
type harness struct {
	t        *testing.T
	srv      *Server
	client   extprocv3.ExternalProcessorClient
	auth     *tableAuth
	limiter  *recordingLimiter
	usage    *usageLog
	events   eventLog
	audit    *auditLog
	deferred *deferredLog
	cache    *cachefilter.Cache
	logs     *syncBuffer
}

// newHarness starts a server with every collaborator; each edit may change
// the Options before the server is built (set a field to nil to go without).
func newHarness(t *testing.T, edits ...func(*harness, *Options)) *harness {
	t.Helper()
	routes, err := config.LoadRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testStart }
	mem := ratelimit.NewMemory(ratelimit.Options{Now: now})
	t.Cleanup(func() { mem.Close() })
	h := &harness{
		t:        t,
		auth:     &tableAuth{principals: harnessPrincipals(), requests: map[string]int{}, cacheHits: map[string]int{}},
		limiter:  &recordingLimiter{Limiter: mem},
		usage:    &usageLog{},
		events:   make(eventLog, 16),
		audit:    &auditLog{},
		deferred: &deferredLog{},
		cache:    cachefilter.NewMemory(cachefilter.Options{MaxBytes: 1 << 20, Now: now}),
		logs:     &syncBuffer{},
	}
	reg := prometheus.NewRegistry()
	o := Options{
		Auth: h.auth, Counter: h.auth, Limiter: h.limiter, Tokenizer: sharedTokenizer(t), Prices: usage.DefaultPrices(),
		Usage: h.usage, Events: h.events, Audit: h.audit, Deferred: h.deferred,
		Cache: h.cache, CacheTTL: time.Minute, CacheMaxEntry: 64 << 10, CacheWait: 30 * time.Second,
		DefaultMaxTokens: 1000, MaxBufferedBytes: 1 << 20, Registerer: reg,
		Routes: routes, Logger: zerolog.New(h.logs), Metrics: NewMetrics(reg), Now: now,
	}
	for _, edit := range edits {
		edit(h, &o)
	}
	h.srv = NewServer(o)

	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, h.srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = extprocv3.NewExternalProcessorClient(conn)
	return h
}

// withoutEvents runs the server with no event emitter.
func withoutEvents(h *harness, o *Options) { o.Events = nil }

// withoutCache runs the server with no response cache.
func withoutCache(h *harness, o *Options) { o.Cache = nil }

// call is one Process stream: one HTTP request as Envoy relays it.
type call struct {
	t      *testing.T
	h      *harness
	ps     extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
	// timeouts are the message timeouts the server asked for (interim
	// answers carrying only override_message_timeout).
	timeouts []time.Duration
}

func (h *harness) open() *call {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := h.client.Process(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cancel)
	return &call{t: h.t, h: h, ps: ps, cancel: cancel}
}

// send sends one phase and returns its answer, after any interim ones.
func (c *call) send(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	c.t.Helper()
	if err := c.ps.Send(req); err != nil {
		c.t.Fatal(err)
	}
	for {
		resp, err := c.ps.Recv()
		if err != nil {
			c.t.Fatalf("receive: %v", err)
		}
		if resp.Response == nil && resp.OverrideMessageTimeout != nil {
			c.timeouts = append(c.timeouts, resp.OverrideMessageTimeout.AsDuration())
			continue
		}
		return resp
	}
}

// end closes the stream as Envoy does after the last phase and waits until
// the server has finished it; it returns the request's usage event (nil
// when the server emits none).
func (c *call) end() *llmproxyv1.UsageEvent {
	c.t.Helper()
	c.ps.CloseSend()
	if _, err := c.ps.Recv(); err != io.EOF {
		c.t.Fatalf("stream ended with %v, want EOF", err)
	}
	if c.h.srv.events == nil {
		return nil
	}
	return c.h.event()
}

// abort drops the stream as Envoy does when the client goes away, and
// returns the usage event the server emits for it.
func (c *call) abort() *llmproxyv1.UsageEvent {
	c.t.Helper()
	c.cancel()
	return c.h.event()
}

// event waits for the next usage event.
func (h *harness) event() *llmproxyv1.UsageEvent {
	h.t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(10 * time.Second):
		h.t.Fatal("no usage event")
		return nil
	}
}

// Messages as Envoy sends them.

func reqHeaders(method, path, token string, kv ...string) *extprocv3.ProcessingRequest {
	kv = append([]string{":method", method, ":path", path, "x-request-id", "rid-1"}, kv...)
	if token != "" {
		kv = append(kv, "authorization", "Bearer "+token)
	}
	if method == "POST" && !hasKey(kv, "content-type") {
		kv = append(kv, "content-type", "application/json")
	}
	r := requestHeaders(kv...)
	r.GetRequestHeaders().EndOfStream = method != "POST"
	r.Attributes = map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
		"source.address": structpb.NewStringValue("192.0.2.7:51234"),
	}}}
	return r
}

func hasKey(kv []string, k string) bool {
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == k {
			return true
		}
	}
	return false
}

func reqBody(body string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true},
	}}
}

func respHeaders(status int, kv ...string) *extprocv3.ProcessingRequest {
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: fmt.Appendf(nil, "%d", status)}}}
	for i := 0; i < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm},
	}}
}

func respBody(chunk string, end bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(chunk), EndOfStream: end},
	}}
}

// What the server answered.

// setHeaders are the headers an answer sets: a header mutation's, or an
// immediate response's.
func setHeaders(resp *extprocv3.ProcessingResponse) map[string]string {
	var hs []*corev3.HeaderValueOption
	switch {
	case resp.GetImmediateResponse() != nil:
		hs = resp.GetImmediateResponse().GetHeaders().GetSetHeaders()
	default:
		hs = common(resp).GetHeaderMutation().GetSetHeaders()
	}
	m := map[string]string{}
	for _, h := range hs {
		m[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	return m
}

// common is the CommonResponse of a phase's answer.
func common(resp *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
	switch r := resp.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return r.RequestHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_RequestBody:
		return r.RequestBody.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return r.ResponseHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseBody:
		return r.ResponseBody.GetResponse()
	}
	return nil
}

// mutatedBody is the body an answer replaces the message's with; ok is
// false when it lets the body through unchanged.
func mutatedBody(resp *extprocv3.ProcessingResponse) (body string, ok bool) {
	m := common(resp).GetBodyMutation()
	if m == nil {
		return "", false
	}
	return string(m.GetBody()), true
}

// modeString shows a mode override as the phases it turns on, e.g.
// "req_body=BUFFERED resp_headers=SEND resp_body=NONE"; "" for none.
// Request headers are always SEND and trailers always SKIP: it checks that.
func modeString(m *procv3.ProcessingMode) string {
	if m == nil {
		return ""
	}
	s := fmt.Sprintf("req_body=%s resp_headers=%s resp_body=%s", m.GetRequestBodyMode(), m.GetResponseHeaderMode(), m.GetResponseBodyMode())
	if m.GetRequestHeaderMode() != procv3.ProcessingMode_SEND || m.GetRequestTrailerMode() != procv3.ProcessingMode_SKIP ||
		m.GetResponseTrailerMode() != procv3.ProcessingMode_SKIP {
		s += " (other phases " + m.String() + ")"
	}
	return s
}

// immediate is an immediate response's status, error code ("" when its body
// is no OpenAI error) and body; status 0 when the answer is none.
func immediate(resp *extprocv3.ProcessingResponse) (status int, code, body string) {
	ir := resp.GetImmediateResponse()
	if ir == nil {
		return 0, "", ""
	}
	var eb errorBody
	if json.Unmarshal(ir.GetBody(), &eb) == nil {
		code = eb.Error.Code
	}
	return int(ir.GetStatus().GetCode()), code, string(ir.GetBody())
}

// do runs one request through flow, checking each answer, ends it and
// returns its usage event.
func (h *harness) do(flow ...exchange) *llmproxyv1.UsageEvent {
	h.t.Helper()
	c := h.open()
	for i, x := range flow {
		checkAnswer(h.t, i, c.send(x.send), x.want)
	}
	return c.end()
}
