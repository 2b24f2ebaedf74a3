package fakeopenai

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"time"
)

// File purposes: the ones a client may upload with, and the ones the fake
// gives the files a batch writes.
const (
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"
)

// uploadPurposes are the purposes POST /v1/files accepts.
var uploadPurposes = []string{"assistants", PurposeBatch, "fine-tune", "vision", "user_data", "evals"}

// fileObject is OpenAI's File object.
type fileObject struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Bytes         int     `json:"bytes"`
	CreatedAt     int64   `json:"created_at"`
	ExpiresAt     *int64  `json:"expires_at"`
	Filename      string  `json:"filename"`
	Purpose       string  `json:"purpose"`
	Status        string  `json:"status"`
	StatusDetails *string `json:"status_details"`
}

type storedFile struct {
	obj     fileObject
	seq     int64
	content []byte
}

func (s *Server) routeFiles(w http.ResponseWriter, r *http.Request, body []byte, c *controls, rest string) {
	if rest == "" {
		switch r.Method {
		case http.MethodPost:
			s.uploadFile(w, r, body, c)
		case http.MethodGet:
			s.listFiles(w, r, c)
		default:
			writeMethodError(w, r, c)
		}
		return
	}
	id, sub, ok := cutID(rest)
	switch {
	case !ok || (sub != "" && sub != "content"):
		writeNotFound(w, r, c)
	case sub == "" && r.Method == http.MethodGet:
		s.getFile(w, r, c, id)
	case sub == "" && r.Method == http.MethodDelete:
		s.deleteFile(w, r, c, id)
	case sub == "content" && r.Method == http.MethodGet:
		s.fileContent(w, r, c, id)
	default:
		writeMethodError(w, r, c)
	}
}

// formFile is a multipart form: its fields and its one "file" part.
type formFile struct {
	fields   map[string]string
	filename string
	content  []byte // nil when there is no file part
}

// parseForm reads a multipart/form-data body.
func parseForm(r *http.Request, body []byte) (*formFile, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, errors.New("the request must be multipart/form-data")
	}
	f := &formFile{fields: make(map[string]string)}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return f, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		if p.FormName() == "file" {
			f.filename, f.content = p.FileName(), data
			if f.content == nil {
				f.content = []byte{}
			}
			continue
		}
		f.fields[p.FormName()] = string(data)
	}
}

// addFile stores content as a new processed file and returns its object.
func (s *Server) addFile(filename, purpose string, content []byte) fileObject {
	obj := fileObject{
		ID:        s.newID("file-"),
		Object:    "file",
		Bytes:     len(content),
		CreatedAt: time.Now().Unix(),
		Filename:  filename,
		Purpose:   purpose,
		Status:    "processed",
	}
	s.omu.Lock()
	s.objSeq++
	s.files[obj.ID] = &storedFile{obj: obj, seq: s.objSeq, content: content}
	s.omu.Unlock()
	return obj
}

// file returns the stored file id, or nil.
func (s *Server) file(id string) *storedFile {
	s.omu.Lock()
	defer s.omu.Unlock()
	return s.files[id]
}

func writeFileNotFound(w http.ResponseWriter, c *controls, id string) {
	writeError(w, c.enc, http.StatusNotFound, "No such File object: "+id, "invalid_request_error", "")
}

// uploadFile answers POST /v1/files (multipart: purpose, file).
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	form, err := parseForm(r, body)
	if err != nil {
		writeBadRequest(w, c, err.Error())
		return
	}
	purpose := form.fields["purpose"]
	if purpose == "" {
		writeBadRequest(w, c, "Missing required parameter: 'purpose'.")
		return
	}
	if !slices.Contains(uploadPurposes, purpose) {
		writeBadRequest(w, c, "'"+purpose+"' is not one of "+strings.Join(uploadPurposes, ", ")+" - 'purpose'")
		return
	}
	if form.content == nil {
		writeBadRequest(w, c, "Missing required parameter: 'file'.")
		return
	}
	s.writeRaw(w, r, c, marshalLine(s.addFile(form.filename, purpose, form.content)))
}

// listFiles answers GET /v1/files (newest first; ?purpose= filters).
func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, c *controls) {
	purpose := r.URL.Query().Get("purpose")
	s.omu.Lock()
	fs := make([]*storedFile, 0, len(s.files))
	for _, f := range s.files {
		if purpose == "" || f.obj.Purpose == purpose {
			fs = append(fs, f)
		}
	}
	s.omu.Unlock()
	slices.SortFunc(fs, func(a, b *storedFile) int { return cmp.Compare(b.seq, a.seq) })
	objs := make([]fileObject, len(fs))
	for i, f := range fs {
		objs[i] = f.obj
	}
	s.writeRaw(w, r, c, marshalLine(newList(objs, func(f *fileObject) string { return f.ID })))
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	f := s.file(id)
	if f == nil {
		writeFileNotFound(w, c, id)
		return
	}
	s.writeRaw(w, r, c, marshalLine(f.obj))
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	s.omu.Lock()
	_, ok := s.files[id]
	delete(s.files, id)
	s.omu.Unlock()
	if !ok {
		writeFileNotFound(w, c, id)
		return
	}
	s.writeRaw(w, r, c, marshalLine(deletedObject{ID: id, Object: "file", Deleted: true}))
}

// fileContent answers GET /v1/files/{id}/content with the raw bytes as
// application/octet-stream, never compressed (OpenAI serves file downloads
// that way).
func (s *Server) fileContent(w http.ResponseWriter, r *http.Request, c *controls, id string) {
	f := s.file(id)
	if f == nil {
		writeFileNotFound(w, c, id)
		return
	}
	s.writeBody(w, r, c, "application/octet-stream", f.content, false, nil)
}
