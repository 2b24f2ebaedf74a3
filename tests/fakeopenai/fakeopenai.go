package fakeopenai

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// EchoPrefix starts every echo reply.
const EchoPrefix = "echo: "

// ModelCreated is the "created" timestamp of every listed model.
const ModelCreated int64 = 1700000000

// MaxRecordedBody is how many bytes of each request body are recorded.
const MaxRecordedBody = 1 << 20

// MaxRequestBody is the largest request body accepted (413 above it).
const MaxRequestBody = 32 << 20

// DefaultBackgroundPolls is how many GET /v1/responses/{id} calls a new
// Server needs to finish a background response; see
// [Server.SetBackgroundPolls].
const DefaultBackgroundPolls = 2

// DefaultBatchPolls is how many GET /v1/batches/{id} calls a new Server
// needs to finish a batch; see [Server.SetBatchPolls].
const DefaultBatchPolls = 2

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
	recording   atomic.Bool
	compressOff atomic.Bool
	bgPolls     atomic.Int64
	batchPolls  atomic.Int64
	idSeq       atomic.Uint64
	models      atomic.Pointer[modelSet]

	mu     sync.Mutex
	count  int
	reqs   []Recorded
	notify chan struct{} // closed on the next request; nil if nobody waits
	holds  map[string]*hold
	fails  map[string]int // x-fake-fail id → failures answered so far

	lmu          sync.Mutex
	ledger       []Charge
	ledgerNotify chan struct{} // closed on the next charge; nil if nobody waits

	// omu guards the objects the API stores: responses, files and batches.
	omu       sync.Mutex
	objSeq    int64 // orders listings
	responses map[string]*storedResponse
	files     map[string]*storedFile
	batches   map[string]*storedBatch
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

// New returns a Server that records requests, keeps a ledger, compresses
// when asked to, and lists DefaultModels.
func New() *Server {
	s := &Server{
		holds:     make(map[string]*hold),
		fails:     make(map[string]int),
		responses: make(map[string]*storedResponse),
		files:     make(map[string]*storedFile),
		batches:   make(map[string]*storedBatch),
	}
	s.recording.Store(true)
	s.bgPolls.Store(DefaultBackgroundPolls)
	s.batchPolls.Store(DefaultBatchPolls)
	s.SetModels(DefaultModels...)
	return s
}

// SetRecording turns request recording on (the default) or off. Count still
// counts requests while recording is off. While recording is off nothing is
// added to the ledger either (see [Server.Ledger]): benchmarks turn recording
// off so that the fake's memory stays flat.
func (s *Server) SetRecording(on bool) { s.recording.Store(on) }

// SetCompression turns response compression on (the default) or off. On,
// the fake compresses JSON and SSE bodies with br or gzip whenever the
// request's Accept-Encoding allows it, as OpenAI's CDN edge does; off, it
// always answers identity.
func (s *Server) SetCompression(on bool) { s.compressOff.Store(!on) }

// SetBackgroundPolls sets how many GET /v1/responses/{id} calls a background
// response created from now on needs to reach "completed" (values below 1
// count as 1). Each GET advances it one step: with n = 2 (the default) the
// first GET answers "in_progress" and the second "completed".
func (s *Server) SetBackgroundPolls(n int) { s.bgPolls.Store(int64(max(n, 1))) }

// SetBatchPolls sets how many GET /v1/batches/{id} calls a batch created from
// now on needs to reach "completed" (values below 1 count as 1). With n = 2
// (the default) the first GET answers "in_progress" and the second runs the
// batch and answers "completed".
func (s *Server) SetBatchPolls(n int) { s.batchPolls.Store(int64(max(n, 1))) }

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

// Reset forgets the recorded requests and zeroes Count. Holds, x-fake-fail
// counters, the ledger (see [Server.ResetLedger]) and the stored responses,
// files and batches are kept.
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

// failNow counts one more request carrying x-fake-fail id and reports
// whether it is among the first count ones.
func (s *Server) failNow(id string, count int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.fails[id]
	if n >= count {
		return false
	}
	s.fails[id] = n + 1
	return true
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

	enc := encIdentity
	if !s.compressOff.Load() {
		enc = negotiate(r.Header["Accept-Encoding"])
	}
	if readErr != nil {
		writeError(w, enc, http.StatusBadRequest, "fakeopenai: reading the request body: "+readErr.Error(), "invalid_request_error", "")
		return
	}
	if size > MaxRequestBody {
		writeError(w, enc, http.StatusRequestEntityTooLarge, "fakeopenai: request body too large", "invalid_request_error", "")
		return
	}
	c, err := parseControls(r.Header)
	if !c.forceEnc {
		c.enc = enc
	}
	if err != nil {
		writeError(w, enc, http.StatusBadRequest, err.Error(), "invalid_request_error", "")
		return
	}
	ctx := r.Context()
	if !sleep(ctx, c.delay) {
		return
	}
	if c.status != 0 {
		writeStatusError(w, enc, c.status, false)
		return
	}
	if c.failID != "" && s.failNow(c.failID, c.failCount) {
		writeStatusError(w, enc, c.failStatus, true)
		return
	}
	s.route(w, r, body, &c)
}

// route dispatches a request to its endpoint.
func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	path := r.URL.Path
	switch {
	case path == "/v1/chat/completions":
		if r.Method != http.MethodPost {
			writeMethodError(w, r, c)
			return
		}
		s.chatCompletions(w, r, body, c)
	case path == "/v1/models":
		if r.Method != http.MethodGet {
			writeMethodError(w, r, c)
			return
		}
		s.writeRaw(w, r, c, s.models.Load().list)
	case strings.HasPrefix(path, "/v1/models/") && len(path) > len("/v1/models/"):
		if r.Method != http.MethodGet {
			writeMethodError(w, r, c)
			return
		}
		id := path[len("/v1/models/"):]
		m, ok := s.models.Load().byID[id]
		if !ok {
			writeError(w, c.enc, http.StatusNotFound, "The model '"+id+"' does not exist or you do not have access to it.", "invalid_request_error", "model_not_found")
			return
		}
		s.writeRaw(w, r, c, m)
	case path == "/v1/responses" || strings.HasPrefix(path, "/v1/responses/"):
		s.routeResponses(w, r, body, c, path[len("/v1/responses"):])
	case path == "/v1/files" || strings.HasPrefix(path, "/v1/files/"):
		s.routeFiles(w, r, body, c, path[len("/v1/files"):])
	case path == "/v1/batches" || strings.HasPrefix(path, "/v1/batches/"):
		s.routeBatches(w, r, body, c, path[len("/v1/batches"):])
	case path == "/v1/embeddings":
		if allow(w, r, c, http.MethodPost) {
			s.embeddings(w, r, body, c)
		}
	case path == "/v1/images/generations":
		if allow(w, r, c, http.MethodPost) {
			s.imageGenerations(w, r, body, c)
		}
	case path == "/v1/audio/speech":
		if allow(w, r, c, http.MethodPost) {
			s.speech(w, r, body, c)
		}
	case path == "/v1/audio/transcriptions":
		if allow(w, r, c, http.MethodPost) {
			s.audioText(w, r, body, c, FamilyTranscriptions)
		}
	case path == "/v1/audio/translations":
		if allow(w, r, c, http.MethodPost) {
			s.audioText(w, r, body, c, FamilyTranslations)
		}
	case path == "/v1/moderations":
		if allow(w, r, c, http.MethodPost) {
			s.moderations(w, r, body, c)
		}
	default:
		writeNotFound(w, r, c)
	}
}

// allow reports whether r has the given method, answering 405 when not.
// (route calls the endpoints directly, not through function values, so
// that the controls of the hot path stay on the stack.)
func allow(w http.ResponseWriter, r *http.Request, c *controls, method string) bool {
	if r.Method != method {
		writeMethodError(w, r, c)
		return false
	}
	return true
}

// cutID splits "/{id}" or "/{id}/{sub}" (the rest of a path after an
// endpoint's prefix) into id and sub; ok is false for an empty id or a
// deeper path.
func cutID(rest string) (id, sub string, ok bool) {
	rest, ok = strings.CutPrefix(rest, "/")
	if !ok {
		return "", "", false
	}
	id, sub, _ = strings.Cut(rest, "/")
	return id, sub, id != "" && !strings.Contains(sub, "/")
}

// writeRaw writes a JSON 200 body, honouring hold, break and compression.
func (s *Server) writeRaw(w http.ResponseWriter, r *http.Request, c *controls, body []byte) {
	s.writeBody(w, r, c, "application/json", body, true, nil)
}

// writeBody writes a 200 body of the given content type, honouring hold and
// break; compressible bodies are compressed when c.enc says so. A non-nil
// ch is billed once the answer is due, after the hold and before any break.
func (s *Server) writeBody(w http.ResponseWriter, r *http.Request, c *controls, contentType string, body []byte, compressible bool, ch *Charge) {
	if c.hold != "" && !s.waitHold(r.Context(), c.hold) {
		return
	}
	if ch != nil {
		s.bill(r, c, *ch)
	}
	h := w.Header()
	if contentType == "application/json" {
		h["Content-Type"] = []string{"application/json"}
	} else {
		h.Set("Content-Type", contentType)
	}
	if compressible && c.enc != encIdentity {
		writeCompressed(w, c.enc, http.StatusOK, body, c.breakAfter)
		return
	}
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

func writeMethodError(w http.ResponseWriter, r *http.Request, c *controls) {
	writeError(w, c.enc, http.StatusMethodNotAllowed, "Invalid method for URL ("+r.Method+" "+r.URL.Path+")", "invalid_request_error", "")
}

func writeNotFound(w http.ResponseWriter, r *http.Request, c *controls) {
	writeError(w, c.enc, http.StatusNotFound, "Invalid URL ("+r.Method+" "+r.URL.Path+")", "invalid_request_error", "")
}

func writeBadRequest(w http.ResponseWriter, c *controls, msg string) {
	writeError(w, c.enc, http.StatusBadRequest, msg, "invalid_request_error", "")
}

// writeStatusError answers an injected status. retryMs adds OpenAI's
// retry-after-ms header to a 429 (x-fake-fail does; x-fake-status keeps its
// historical retry-after alone).
func writeStatusError(w http.ResponseWriter, enc encoding, status int, retryMs bool) {
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
		if retryMs {
			w.Header().Set("Retry-After-Ms", "1000")
		}
	case status >= 500:
		typ = "server_error"
	}
	writeError(w, enc, status, msg, typ, code)
}

// writeError writes an OpenAI error body:
// {"error":{"message":...,"type":...,"param":null,"code":...|null}}.
func writeError(w http.ResponseWriter, enc encoding, status int, msg, typ, code string) {
	b := appendError(make([]byte, 0, 128+len(msg)), msg, typ, code)
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	if enc != encIdentity {
		writeCompressed(w, enc, status, b, -1)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func appendError(b []byte, msg, typ, code string) []byte {
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
	return append(b, "}}"...)
}

// appendID appends prefix + "fake" + a 12-digit sequence number unique
// within the Server: "chatcmpl-fake000000000001", "resp_fake000000000002".
func (s *Server) appendID(b []byte, prefix string) []byte {
	b = append(b, prefix...)
	b = append(b, "fake"...)
	n := s.idSeq.Add(1)
	const width = 12
	var tmp [20]byte
	d := strconv.AppendUint(tmp[:0], n, 10)
	for i := len(d); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// newID is appendID as a string.
func (s *Server) newID(prefix string) string {
	var b [48]byte
	return string(s.appendID(b[:0], prefix))
}

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
