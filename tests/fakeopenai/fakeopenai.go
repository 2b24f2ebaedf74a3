// Package fakeopenai is a fake OpenAI API upstream for end-to-end tests and
// benchmarks. It answers the chat completions and models endpoints with
// OpenAI-shaped, deterministic responses, records every request it receives,
// and lets a test steer each request through x-fake-* request headers.
//
// The reply to a chat completion is "echo: " followed by the text of the last
// user message with its whitespace collapsed to single spaces (see
// [EchoReply]); usage is counted in words (see [CountWords]):
//
//	prompt_tokens     = Σ over all messages (CountWords(text) + 3)
//	completion_tokens = CountWords(reply)
//	total_tokens      = prompt_tokens + completion_tokens
//
// A streamed reply is split into one chunk per word; concatenating the
// content deltas gives exactly the non-streamed content.
//
// Request headers understood on every endpoint (a malformed value is
// answered with 400 so that test mistakes are loud):
//
//	x-fake-status: 429        answer with that status (400-599) and an
//	                          OpenAI error body; 429 also sets retry-after: 1
//	x-fake-delay: 200ms       sleep before answering (a bare number is ms)
//	x-fake-chunk-delay: 50ms  sleep between streamed chunks
//	x-fake-words: 500         reply with that many words instead of the echo
//	x-fake-hold: <id>         streams: after the first chunk, block until
//	                          Release(id) (or the request ends); non-streams:
//	                          block before answering
//	x-fake-break: after-N     streams: abort the connection after N SSE events
//	                          (the role chunk is event 1); non-streams: after-0
//	                          aborts before anything is written, after-N sends
//	                          the headers and the first N body bytes and aborts
package fakeopenai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Control request headers.
const (
	HeaderStatus     = "X-Fake-Status"
	HeaderDelay      = "X-Fake-Delay"
	HeaderChunkDelay = "X-Fake-Chunk-Delay"
	HeaderWords      = "X-Fake-Words"
	HeaderHold       = "X-Fake-Hold"
	HeaderBreak      = "X-Fake-Break"
)

// EchoPrefix starts every echo reply.
const EchoPrefix = "echo: "

// ModelCreated is the "created" timestamp of every listed model.
const ModelCreated int64 = 1700000000

// MaxRecordedBody is how many bytes of each request body are recorded.
const MaxRecordedBody = 1 << 20

// MaxRequestBody is the largest request body accepted (413 above it).
const MaxRequestBody = 32 << 20

// maxWords bounds x-fake-words.
const maxWords = 1_000_000

// DefaultModels are the model ids a new Server lists.
var DefaultModels = []string{
	"gpt-4o",
	"gpt-4o-mini",
	"gpt-4.1",
	"gpt-4.1-mini",
	"gpt-4.1-nano",
	"gpt-5",
	"gpt-5-mini",
	"o3-mini",
	"gpt-3.5-turbo",
	"text-embedding-3-small",
}

// Recorded is one request the server received.
type Recorded struct {
	Time          time.Time
	Method        string
	Path          string // r.URL.Path
	RawQuery      string
	Host          string // r.Host (the :authority / Host header)
	Proto         string // "HTTP/1.1" or "HTTP/2.0"
	RemoteAddr    string
	Authorization string      // the Authorization header, verbatim
	Header        http.Header // a clone of all request headers
	Body          []byte      // at most MaxRecordedBody bytes
	BodySize      int64       // the full body size read
	BodyTruncated bool
}

// Server is the fake upstream. It implements http.Handler; the zero value is
// not usable, call New.
type Server struct {
	recording atomic.Bool
	idSeq     atomic.Uint64
	models    atomic.Pointer[modelSet]

	mu     sync.Mutex
	count  int
	reqs   []Recorded
	notify chan struct{} // closed on the next request; nil if nobody waits
	holds  map[string]*hold
}

type hold struct {
	reached      chan struct{}
	released     chan struct{}
	reachedOnce  sync.Once
	releasedOnce sync.Once
}

type modelSet struct {
	list []byte            // the /v1/models body
	byID map[string][]byte // the /v1/models/{id} bodies
}

// New returns a Server that records requests and lists DefaultModels.
func New() *Server {
	s := &Server{holds: make(map[string]*hold)}
	s.recording.Store(true)
	s.SetModels(DefaultModels...)
	return s
}

// SetRecording turns request recording on (the default) or off. Count still
// counts requests while recording is off.
func (s *Server) SetRecording(on bool) { s.recording.Store(on) }

// SetModels replaces the listed models (owned_by "openai", created
// ModelCreated).
func (s *Server) SetModels(ids ...string) {
	ms := &modelSet{byID: make(map[string][]byte, len(ids))}
	list := []byte(`{"object":"list","data":[`)
	for i, id := range ids {
		one := appendModel(nil, id)
		ms.byID[id] = one
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, one...)
	}
	ms.list = append(list, "]}"...)
	s.models.Store(ms)
}

func appendModel(b []byte, id string) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, ModelCreated, 10)
	b = append(b, `,"owned_by":"openai"}`...)
	return b
}

// Requests returns a copy of the recorded requests, oldest first.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.reqs...)
}

// Count is the number of requests received since New or the last Reset,
// recorded or not.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Reset forgets the recorded requests and zeroes Count. Holds are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count = 0
	s.reqs = nil
}

// WaitForRequests blocks until Count() >= n or ctx ends, and returns the
// recorded requests at that moment.
func (s *Server) WaitForRequests(ctx context.Context, n int) ([]Recorded, error) {
	for {
		s.mu.Lock()
		if s.count >= n {
			out := append([]Recorded(nil), s.reqs...)
			s.mu.Unlock()
			return out, nil
		}
		if s.notify == nil {
			s.notify = make(chan struct{})
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return s.Requests(), ctx.Err()
		}
	}
}

func (s *Server) getHold(id string) *hold {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.holds[id]
	if h == nil {
		h = &hold{reached: make(chan struct{}), released: make(chan struct{})}
		s.holds[id] = h
	}
	return h
}

// Release lets every request held with x-fake-hold: id go on. A release is
// permanent: later requests with the same id are not held, so use a fresh id
// per test. Releasing an id before any request uses it is allowed.
func (s *Server) Release(id string) {
	h := s.getHold(id)
	h.releasedOnce.Do(func() { close(h.released) })
}

// ReleaseAll releases every hold id seen so far.
func (s *Server) ReleaseAll() {
	s.mu.Lock()
	hs := make([]*hold, 0, len(s.holds))
	for _, h := range s.holds {
		hs = append(hs, h)
	}
	s.mu.Unlock()
	for _, h := range hs {
		h.releasedOnce.Do(func() { close(h.released) })
	}
}

// WaitHeld blocks until a request with x-fake-hold: id has reached its hold
// point (for a stream: its first chunk is written and flushed) or ctx ends.
func (s *Server) WaitHeld(ctx context.Context, id string) error {
	h := s.getHold(id)
	select {
	case <-h.reached:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitHold marks id as reached and blocks until it is released; false if the
// request ended first.
func (s *Server) waitHold(ctx context.Context, id string) bool {
	h := s.getHold(id)
	h.reachedOnce.Do(func() { close(h.reached) })
	select {
	case <-h.released:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) record(r *http.Request, body []byte, size int64, truncated bool) {
	var rec Recorded
	on := s.recording.Load()
	if on {
		rec = Recorded{
			Time:          time.Now(),
			Method:        r.Method,
			Path:          r.URL.Path,
			RawQuery:      r.URL.RawQuery,
			Host:          r.Host,
			Proto:         r.Proto,
			RemoteAddr:    r.RemoteAddr,
			Authorization: r.Header.Get("Authorization"),
			Header:        r.Header.Clone(),
			Body:          bytes.Clone(body),
			BodySize:      size,
			BodyTruncated: truncated,
		}
		if rec.Body == nil {
			rec.Body = []byte{}
		}
	}
	s.mu.Lock()
	s.count++
	if on {
		s.reqs = append(s.reqs, rec)
	}
	if s.notify != nil {
		close(s.notify)
		s.notify = nil
	}
	s.mu.Unlock()
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() > 4<<20 {
		return
	}
	bufPool.Put(b)
}

// controls are the parsed x-fake-* headers.
type controls struct {
	status     int
	delay      time.Duration
	chunkDelay time.Duration
	words      int // -1: echo
	hold       string
	breakAfter int // -1: none
}

type badHeader struct{ name, value string }

func (e *badHeader) Error() string {
	return "fakeopenai: invalid " + strings.ToLower(e.name) + " header value " + strconv.Quote(e.value)
}

func parseControls(h http.Header) (controls, error) {
	c := controls{words: -1, breakAfter: -1}
	if v := h.Get(HeaderStatus); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 400 || n > 599 {
			return c, &badHeader{HeaderStatus, v}
		}
		c.status = n
	}
	var err error
	if c.delay, err = parseDelay(h, HeaderDelay); err != nil {
		return c, err
	}
	if c.chunkDelay, err = parseDelay(h, HeaderChunkDelay); err != nil {
		return c, err
	}
	if v := h.Get(HeaderWords); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > maxWords {
			return c, &badHeader{HeaderWords, v}
		}
		c.words = n
	}
	c.hold = strings.TrimSpace(h.Get(HeaderHold))
	if v := h.Get(HeaderBreak); v != "" {
		num, ok := strings.CutPrefix(strings.TrimSpace(v), "after-")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 0 {
			return c, &badHeader{HeaderBreak, v}
		}
		c.breakAfter = n
	}
	return c, nil
}

func parseDelay(h http.Header, name string) (time.Duration, error) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, &badHeader{name, v}
	}
	return d, nil
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := getBuf()
	defer putBuf(buf)
	var size int64
	var readErr error
	if r.Body != nil && r.Body != http.NoBody {
		size, readErr = buf.ReadFrom(io.LimitReader(r.Body, MaxRequestBody+1))
	}
	body := buf.Bytes()
	rec, truncated := body, false
	if len(rec) > MaxRecordedBody {
		rec, truncated = rec[:MaxRecordedBody], true
	}
	s.record(r, rec, size, truncated)

	if readErr != nil {
		writeError(w, http.StatusBadRequest, "fakeopenai: reading the request body: "+readErr.Error(), "invalid_request_error", "")
		return
	}
	if size > MaxRequestBody {
		writeError(w, http.StatusRequestEntityTooLarge, "fakeopenai: request body too large", "invalid_request_error", "")
		return
	}
	c, err := parseControls(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "invalid_request_error", "")
		return
	}
	ctx := r.Context()
	if !sleep(ctx, c.delay) {
		return
	}
	if c.status != 0 {
		writeStatusError(w, c.status)
		return
	}

	path := r.URL.Path
	switch {
	case path == "/v1/chat/completions":
		if r.Method != http.MethodPost {
			writeMethodError(w, r)
			return
		}
		s.chatCompletions(w, r, body, &c)
	case path == "/v1/models":
		if r.Method != http.MethodGet {
			writeMethodError(w, r)
			return
		}
		s.writeRaw(w, r, &c, s.models.Load().list)
	case strings.HasPrefix(path, "/v1/models/") && len(path) > len("/v1/models/"):
		if r.Method != http.MethodGet {
			writeMethodError(w, r)
			return
		}
		id := path[len("/v1/models/"):]
		m, ok := s.models.Load().byID[id]
		if !ok {
			writeError(w, http.StatusNotFound, "The model '"+id+"' does not exist or you do not have access to it.", "invalid_request_error", "model_not_found")
			return
		}
		s.writeRaw(w, r, &c, m)
	default:
		writeError(w, http.StatusNotFound, "Invalid URL ("+r.Method+" "+path+")", "invalid_request_error", "")
	}
}

// writeRaw writes a JSON 200 body, honouring hold and break.
func (s *Server) writeRaw(w http.ResponseWriter, r *http.Request, c *controls, body []byte) {
	if c.hold != "" && !s.waitHold(r.Context(), c.hold) {
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	if c.breakAfter >= 0 {
		if c.breakAfter == 0 {
			panic(http.ErrAbortHandler)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:min(c.breakAfter, len(body))])
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func writeMethodError(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusMethodNotAllowed, "Invalid method for URL ("+r.Method+" "+r.URL.Path+")", "invalid_request_error", "")
}

func writeStatusError(w http.ResponseWriter, status int) {
	typ, code := "invalid_request_error", ""
	msg := "fakeopenai: injected " + strconv.Itoa(status) + " " + http.StatusText(status)
	switch {
	case status == http.StatusUnauthorized:
		code = "invalid_api_key"
	case status == http.StatusForbidden:
		typ = "permission_error"
	case status == http.StatusNotFound:
		code = "not_found"
	case status == http.StatusTooManyRequests:
		typ, code = "requests", "rate_limit_exceeded"
		w.Header().Set("Retry-After", "1")
	case status >= 500:
		typ = "server_error"
	}
	writeError(w, status, msg, typ, code)
}

// writeError writes an OpenAI error body:
// {"error":{"message":...,"type":...,"param":null,"code":...|null}}.
func writeError(w http.ResponseWriter, status int, msg, typ, code string) {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"error":{"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"param":null,"code":`...)
	if code == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, code)
	}
	b = append(b, "}}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ---- chat completions ----

type chatRequest struct {
	Model               string        `json:"model"`
	Messages            []chatMessage `json:"messages"`
	Stream              bool          `json:"stream"`
	StreamOptions       *streamOpts   `json:"stream_options"`
	MaxTokens           *int          `json:"max_tokens"`
	MaxCompletionTokens *int          `json:"max_completion_tokens"`
}

type streamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role    string         `json:"role"`
	Content messageContent `json:"content"`
}

// messageContent is a message's text: a JSON string, or the text parts of an
// array of content parts joined with spaces.
type messageContent struct{ text string }

func (m *messageContent) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		m.text = ""
		return nil
	}
	switch data[0] {
	case '"':
		return json.Unmarshal(data, &m.text)
	case '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(data, &parts); err != nil {
			return err
		}
		var sb strings.Builder
		for _, p := range parts {
			if p.Type != "text" && p.Type != "input_text" {
				continue
			}
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(p.Text)
		}
		m.text = sb.String()
		return nil
	default:
		return errors.New("message content must be a string or an array of content parts")
	}
}

// CountWords is the fake's token count: the number of whitespace-separated
// words in s.
func CountWords(s string) int {
	n, in := 0, false
	for i := 0; i < len(s); i++ {
		sp := isSpace(s[i])
		if !sp && !in {
			n++
		}
		in = !sp
	}
	return n
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// EchoReply is the reply content for a last user message text: EchoPrefix
// followed by the words of text joined by single spaces ("echo:" alone when
// text has no words).
func EchoReply(text string) string {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return strings.TrimSpace(EchoPrefix)
	}
	return EchoPrefix + strings.Join(fields, " ")
}

var loremWords = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do
eiusmod tempor incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis
nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat`)

// WordsReply is the reply content for x-fake-words: n: n words cycling
// through a lorem ipsum list, joined by single spaces.
func WordsReply(n int) string {
	var sb strings.Builder
	sb.Grow(n * 7)
	for i := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(loremWords[i%len(loremWords)])
	}
	return sb.String()
}

// PromptTokens is the prompt_tokens the fake reports for messages with the
// given texts: Σ (CountWords(text) + 3).
func PromptTokens(texts ...string) int {
	n := 0
	for _, t := range texts {
		n += CountWords(t) + 3
	}
	return n
}

// truncateWords returns the first n words of a single-spaced reply.
func truncateWords(s string, n int) string {
	if n <= 0 {
		return ""
	}
	seen := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			seen++
			if seen == n {
				return s[:i]
			}
		}
	}
	return s
}

type usage struct{ prompt, completion int }

func (s *Server) nextID(b []byte) []byte {
	b = append(b, "chatcmpl-fake"...)
	n := s.idSeq.Add(1)
	const width = 12
	var tmp [20]byte
	d := strconv.AppendUint(tmp[:0], n, 10)
	for i := len(d); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request: "+err.Error(), "invalid_request_error", "")
		return
	}
	if req.Model == "" {
		writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", "")
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "[] is too short - 'messages'", "invalid_request_error", "")
		return
	}

	var u usage
	last := ""
	for i := range req.Messages {
		m := &req.Messages[i]
		u.prompt += CountWords(m.Content.text) + 3
		if m.Role == "user" {
			last = m.Content.text
		}
	}
	var reply string
	if c.words >= 0 {
		reply = WordsReply(c.words)
	} else {
		reply = EchoReply(last)
	}
	finish := "stop"
	limit := -1
	if req.MaxCompletionTokens != nil {
		limit = *req.MaxCompletionTokens
	}
	if req.MaxTokens != nil {
		limit = *req.MaxTokens
	}
	if limit >= 0 && CountWords(reply) > limit {
		reply = truncateWords(reply, limit)
		finish = "length"
	}
	u.completion = CountWords(reply)

	var idb [32]byte
	id := s.nextID(idb[:0])
	created := time.Now().Unix()
	if req.Stream {
		s.stream(w, r, c, &req, id, created, reply, finish, u)
		return
	}

	out := getBuf()
	defer putBuf(out)
	b := out.AvailableBuffer()
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, req.Model)
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	b = appendJSONString(b, reply)
	b = append(b, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
	b = append(b, finish...)
	b = append(b, `"}],"usage":`...)
	b = appendUsage(b, u)
	b = append(b, `,"service_tier":"default","system_fingerprint":"fp_fake"}`...)
	b = append(b, '\n')
	out.Write(b)
	w.Header()["X-Request-Id"] = []string{"req_" + string(id[len("chatcmpl-"):])}
	s.writeRaw(w, r, c, out.Bytes())
}

func appendUsage(b []byte, u usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.completion), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt+u.completion), 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
	return b
}

// stream writes the SSE reply: a role chunk, one chunk per word, a finish
// chunk, an optional usage chunk, then [DONE].
func (s *Server) stream(w http.ResponseWriter, r *http.Request, c *controls, req *chatRequest, id []byte, created int64, reply, finish string, u usage) {
	ctx := r.Context()
	if c.breakAfter == 0 {
		panic(http.ErrAbortHandler)
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	rc := http.NewResponseController(w)
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Request-Id"] = []string{"req_" + string(id[len("chatcmpl-"):])}
	w.WriteHeader(http.StatusOK)

	buf := getBuf()
	defer putBuf(buf)
	// prefix is everything of a chunk before "choices".
	prefix := buf.AvailableBuffer()
	prefix = append(prefix, `data: {"id":"`...)
	prefix = append(prefix, id...)
	prefix = append(prefix, `","object":"chat.completion.chunk","created":`...)
	prefix = strconv.AppendInt(prefix, created, 10)
	prefix = append(prefix, `,"model":`...)
	prefix = appendJSONString(prefix, req.Model)
	prefix = append(prefix, `,"service_tier":"default","system_fingerprint":"fp_fake","choices":`...)
	usageNull := ""
	if includeUsage {
		usageNull = `,"usage":null`
	}

	events := 0
	send := func(b []byte) bool {
		if c.breakAfter >= 0 && events == c.breakAfter {
			_ = rc.Flush()
			panic(http.ErrAbortHandler)
		}
		if events > 0 && !sleep(ctx, c.chunkDelay) {
			return false
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		if err := rc.Flush(); err != nil {
			return false
		}
		events++
		return true
	}
	// Every chunk is built in one reused scratch slice.
	scratch := make([]byte, 0, len(prefix)+256)
	begin := func() []byte {
		b := append(scratch[:0], prefix...)
		return append(b, `[{"index":0,"delta":`...)
	}
	end := func(b []byte, finishReason string) []byte {
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		if finishReason == "" {
			b = append(b, "null"...)
		} else {
			b = append(b, '"')
			b = append(b, finishReason...)
			b = append(b, '"')
		}
		b = append(b, "}]"...)
		b = append(b, usageNull...)
		b = append(b, "}\n\n"...)
		scratch = b
		return b
	}

	// 1: the role chunk.
	b := begin()
	b = append(b, `{"role":"assistant","content":"","refusal":null}`...)
	if !send(end(b, "")) {
		return
	}
	if c.hold != "" && !s.waitHold(ctx, c.hold) {
		return
	}
	// One chunk per word: the first word, then " word", so that the deltas
	// concatenate to reply.
	for start := 0; start < len(reply); {
		stop := strings.IndexByte(reply[start+1:], ' ')
		if stop < 0 {
			stop = len(reply)
		} else {
			stop += start + 1
		}
		b := begin()
		b = append(b, `{"content":`...)
		b = appendJSONString(b, reply[start:stop])
		b = append(b, '}')
		if !send(end(b, "")) {
			return
		}
		start = stop
	}
	// The finish chunk.
	b = begin()
	b = append(b, "{}"...)
	if !send(end(b, finish)) {
		return
	}
	if includeUsage {
		b := append(scratch[:0], prefix...)
		b = append(b, `[],"usage":`...)
		b = appendUsage(b, u)
		b = append(b, "}\n\n"...)
		scratch = b
		if !send(b) {
			return
		}
	}
	if !send(doneEvent) {
		return
	}
	if c.breakAfter >= 0 && events == c.breakAfter {
		panic(http.ErrAbortHandler)
	}
}

var doneEvent = []byte("data: [DONE]\n\n")

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
