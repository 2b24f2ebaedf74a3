package fakeopenai

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Batch API statuses.
const (
	batchValidating = "validating"
	batchInProgress = "in_progress"
	batchFinalizing = "finalizing"
	batchCompleted  = "completed"
	batchCancelling = "cancelling"
	batchCancelled  = "cancelled"
)

// batchEndpoint is the handler that runs a line of a batch for url, or nil
// when a batch cannot run url.
func (s *Server) batchEndpoint(url string) func(http.ResponseWriter, *http.Request, []byte, *controls) {
	switch url {
	case "/v1/chat/completions":
		return s.chatCompletions
	case "/v1/embeddings":
		return s.embeddings
	case "/v1/responses":
		return s.createResponse
	}
	return nil
}

// batchObject is OpenAI's Batch object. It has no top-level usage on
// purpose: the gateway must read what a batch cost from its output file.
type batchObject struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Endpoint         string            `json:"endpoint"`
	Errors           *struct{}         `json:"errors"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           string            `json:"status"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at"`
	CompletedAt      *int64            `json:"completed_at"`
	FailedAt         *int64            `json:"failed_at"`
	ExpiredAt        *int64            `json:"expired_at"`
	CancellingAt     *int64            `json:"cancelling_at"`
	CancelledAt      *int64            `json:"cancelled_at"`
	RequestCounts    requestCounts     `json:"request_counts"`
	Metadata         map[string]string `json:"metadata"`
}

type requestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// batchLine is one line of a batch input file.
type batchLine struct {
	CustomID string          `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// batchOutputLine is one line of a batch output or error file.
type batchOutputLine struct {
	ID       string         `json:"id"`
	CustomID string         `json:"custom_id"`
	Response *batchResponse `json:"response"`
	Error    *struct{}      `json:"error"`
}

type batchResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

type storedBatch struct {
	obj       batchObject // guarded by Server.omu
	seq       int64
	pollsLeft int64    // guarded by Server.omu
	auth      string   // the creator's Authorization header, sent with every line
	ctl       controls // the knobs of the create request, applied to every line
	lines     []batchLine
}

func (s *Server) routeBatches(w http.ResponseWriter, r *http.Request, body []byte, c *controls, rest string) {
	if rest == "" {
		switch r.Method {
		case http.MethodPost:
			s.createBatch(w, r, body, c)
		case http.MethodGet:
			s.listBatches(w, r, c)
		default:
			writeMethodError(w, r, c)
		}
		return
	}
	id, sub, ok := cutID(rest)
	switch {
	case !ok || (sub != "" && sub != "cancel"):
		writeNotFound(w, r, c)
	case sub == "" && r.Method == http.MethodGet:
		s.getBatch(w, r, c, id)
	case sub == "cancel" && r.Method == http.MethodPost:
		s.cancelBatch(w, r, c, id)
	default:
		writeMethodError(w, r, c)
	}
}

// createBatch answers POST /v1/batches. The input file must exist, have
// purpose "batch" and hold valid JSONL for the endpoint, else 400.
func (s *Server) createBatch(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req struct {
		InputFileID      string            `json:"input_file_id"`
		Endpoint         string            `json:"endpoint"`
		CompletionWindow string            `json:"completion_window"`
		Metadata         map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeBadRequest(w, c, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	if s.batchEndpoint(req.Endpoint) == nil {
		writeBadRequest(w, c, "Invalid 'endpoint': "+strconv.Quote(req.Endpoint)+". The fake supports /v1/chat/completions, /v1/embeddings and /v1/responses.")
		return
	}
	if req.CompletionWindow != "24h" {
		writeBadRequest(w, c, "Invalid 'completion_window': "+strconv.Quote(req.CompletionWindow)+". Supported values are: '24h'.")
		return
	}
	f := s.file(req.InputFileID)
	if f == nil {
		writeBadRequest(w, c, "Invalid 'input_file_id': "+strconv.Quote(req.InputFileID)+". File not found.")
		return
	}
	if f.obj.Purpose != PurposeBatch {
		writeBadRequest(w, c, "Invalid 'input_file_id': the file's purpose must be 'batch'.")
		return
	}
	lines, err := parseBatchLines(f.content, req.Endpoint)
	if err != "" {
		writeBadRequest(w, c, "Invalid batch input file: "+err)
		return
	}
	now := time.Now().Unix()
	expires := now + 24*60*60
	b := &storedBatch{
		obj: batchObject{
			ID:               s.newID("batch_"),
			Object:           "batch",
			Endpoint:         req.Endpoint,
			InputFileID:      req.InputFileID,
			CompletionWindow: req.CompletionWindow,
			Status:           batchValidating,
			CreatedAt:        now,
			ExpiresAt:        &expires,
			Metadata:         req.Metadata,
		},
		pollsLeft: s.batchPolls.Load(),
		auth:      r.Header.Get("Authorization"),
		ctl:       controls{words: c.words, breakAfter: -1, cached: c.cached, reasoning: c.reasoning, batch: true},
		lines:     lines,
	}
	s.omu.Lock()
	s.objSeq++
	b.seq = s.objSeq
	s.batches[b.obj.ID] = b
	obj := b.obj
	s.omu.Unlock()
	s.writeRaw(w, r, c, marshalLine(obj))
}

// parseBatchLines parses a batch input file: one request a line, each with
// a unique custom_id, method POST, the batch's endpoint as url and a JSON
// object as body. It returns why the file is invalid, or "".
func parseBatchLines(content []byte, endpoint string) ([]batchLine, string) {
	var lines []batchLine
	seen := make(map[string]bool)
	for i, raw := range bytes.Split(content, []byte("\n")) {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		where := "line " + strconv.Itoa(i+1) + ": "
		var ln batchLine
		if err := json.Unmarshal(raw, &ln); err != nil {
			return nil, where + "not valid JSON: " + err.Error()
		}
		switch {
		case ln.CustomID == "":
			return nil, where + "missing custom_id"
		case seen[ln.CustomID]:
			return nil, where + "duplicate custom_id " + strconv.Quote(ln.CustomID)
		case ln.Method != http.MethodPost:
			return nil, where + "method must be POST"
		case ln.URL != endpoint:
			return nil, where + "url " + strconv.Quote(ln.URL) + " is not the batch endpoint " + endpoint
		case len(ln.Body) == 0 || ln.Body[0] != '{':
			return nil, where + "body must be a JSON object"
		}
		seen[ln.CustomID] = true
		lines = append(lines, ln)
	}
	if len(lines) == 0 {
		return nil, "the file has no requests"
	}
	return lines, ""
}

func writeBatchNotFound(w http.ResponseWriter, c *controls, id string) {
	writeError(w, c.enc, http.StatusNotFound, "No batch found with id '"+id+"'.", "invalid_request_error", "")
}

// getBatch answers GET /v1/batches/{id}, advancing the batch one step:
// validating → in_progress → completed (after SetBatchPolls GETs), and
// cancelling → cancelled. The GET that completes the batch runs every line
// through the synchronous endpoint's code, writes the output and error
// files and bills each line.
func (s *Server) getBatch(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	s.omu.Lock()
	b := s.batches[id]
	if b == nil {
		s.omu.Unlock()
		writeBatchNotFound(w, c, id)
		return
	}
	now := time.Now().Unix()
	run := false
	switch b.obj.Status {
	case batchValidating, batchInProgress:
		if b.obj.InProgressAt == nil {
			b.obj.InProgressAt = &now
			b.obj.RequestCounts.Total = len(b.lines)
		}
		b.pollsLeft--
		if b.pollsLeft <= 0 {
			// Other GETs see "finalizing" while this one runs the lines.
			b.obj.Status = batchFinalizing
			b.obj.FinalizingAt = &now
			run = true
		} else {
			b.obj.Status = batchInProgress
		}
	case batchCancelling:
		b.obj.Status = batchCancelled
		b.obj.CancelledAt = &now
	}
	obj := b.obj
	s.omu.Unlock()
	if run {
		obj = s.runBatch(b)
	}
	s.writeRaw(w, r, c, marshalLine(obj))
}

// runBatch runs every line of b, stores the output and error files and
// marks b completed; it returns b's object then.
func (s *Server) runBatch(b *storedBatch) batchObject {
	out, errs := getBuf(), getBuf()
	defer putBuf(out)
	defer putBuf(errs)
	var counts requestCounts
	for i := range b.lines {
		ln := &b.lines[i]
		status, body, reqID := s.runBatchLine(b, ln)
		line := batchOutputLine{
			ID:       s.newID("batch_req_"),
			CustomID: ln.CustomID,
			Response: &batchResponse{StatusCode: status, RequestID: reqID, Body: body},
		}
		if status == http.StatusOK {
			out.Write(marshalLine(line))
			counts.Completed++
		} else {
			errs.Write(marshalLine(line))
			counts.Failed++
		}
	}
	counts.Total = len(b.lines)
	var outID, errID *string
	if out.Len() > 0 {
		f := s.addFile(b.obj.ID+"_output.jsonl", PurposeBatchOutput, bytes.Clone(out.Bytes()))
		outID = &f.ID
	}
	if errs.Len() > 0 {
		f := s.addFile(b.obj.ID+"_error.jsonl", PurposeBatchOutput, bytes.Clone(errs.Bytes()))
		errID = &f.ID
	}
	now := time.Now().Unix()
	s.omu.Lock()
	defer s.omu.Unlock()
	b.obj.Status = batchCompleted
	b.obj.CompletedAt = &now
	b.obj.OutputFileID, b.obj.ErrorFileID = outID, errID
	b.obj.RequestCounts = counts
	return b.obj
}

// runBatchLine runs one line through its endpoint's handler, non-streamed,
// as the batch's creator, and returns the status, the JSON body and the
// request id of the answer.
func (s *Server) runBatchLine(b *storedBatch, ln *batchLine) (int, json.RawMessage, string) {
	rec := &lineRecorder{h: make(http.Header)}
	r, err := http.NewRequestWithContext(context.Background(), http.MethodPost, ln.URL, nil)
	if err != nil {
		panic("fakeopenai: batch line request: " + err.Error())
	}
	if b.auth != "" {
		r.Header.Set("Authorization", b.auth)
	}
	c := b.ctl
	s.batchEndpoint(ln.URL)(rec, r, ln.Body, &c)
	reqID := rec.h.Get("X-Request-Id")
	if reqID == "" {
		reqID = s.newID("req_")
	}
	return cmp.Or(rec.status, http.StatusOK), bytes.TrimSpace(rec.body.Bytes()), reqID
}

// lineRecorder is the ResponseWriter a batch line is answered into.
type lineRecorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (l *lineRecorder) Header() http.Header { return l.h }

func (l *lineRecorder) WriteHeader(status int) {
	if l.status == 0 {
		l.status = status
	}
}

func (l *lineRecorder) Write(p []byte) (int, error) {
	l.WriteHeader(http.StatusOK)
	return l.body.Write(p)
}

// cancelBatch answers POST /v1/batches/{id}/cancel: a validating or
// in-progress batch becomes "cancelling", and "cancelled" on the next GET;
// none of its lines is run or billed. Cancelling a cancelling or cancelled
// batch answers it unchanged; a finalizing or completed one is a 400.
func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	s.omu.Lock()
	b := s.batches[id]
	if b == nil {
		s.omu.Unlock()
		writeBatchNotFound(w, c, id)
		return
	}
	switch b.obj.Status {
	case batchValidating, batchInProgress:
		now := time.Now().Unix()
		b.obj.Status = batchCancelling
		b.obj.CancellingAt = &now
	case batchCancelling, batchCancelled:
	default:
		st := b.obj.Status
		s.omu.Unlock()
		writeBadRequest(w, c, "Cannot cancel a batch with status '"+st+"'.")
		return
	}
	obj := b.obj
	s.omu.Unlock()
	s.writeRaw(w, r, c, marshalLine(obj))
}

// listBatches answers GET /v1/batches, newest first, on one page.
func (s *Server) listBatches(w http.ResponseWriter, r *http.Request, c *controls) {
	s.omu.Lock()
	bs := make([]*storedBatch, 0, len(s.batches))
	for _, b := range s.batches {
		bs = append(bs, b)
	}
	slices.SortFunc(bs, func(a, b *storedBatch) int { return cmp.Compare(b.seq, a.seq) })
	objs := make([]batchObject, len(bs))
	for i, b := range bs {
		objs[i] = b.obj
	}
	s.omu.Unlock()
	s.writeRaw(w, r, c, marshalLine(newList(objs, func(b *batchObject) string { return b.ID })))
}
