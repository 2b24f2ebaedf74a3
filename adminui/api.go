package adminui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/llm-proxy/llm-proxy/adminapi"
)

// actor is the audit log's name for changes made from the console.
const actor = "admin-ui"

// apiError is the management API's refusal as its body says it.
type apiError struct {
	Status  int
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

// apiCall is one in-process request to the management API.
type apiCall struct {
	method, path string
	body         any    // marshalled as JSON; nil sends none
	token        string // "" sends the console's management token
}

// call hands c to the management API in process, on behalf of the browser
// that sent r: audited as [actor] from r's client address. A 2xx answer is
// decoded into out (when not nil); anything else is returned as the API's
// *apiError.
func (u *UI) call(r *http.Request, c apiCall, out any) error {
	var body io.Reader = http.NoBody
	if c.body != nil {
		b, err := json.Marshal(c.body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", c.method, c.path, err)
		}
		body = bytes.NewReader(b)
	}
	ctx := adminapi.WithCaller(r.Context(), adminapi.Caller{Actor: actor, ClientAddress: u.clientAddress(r)})
	req, err := http.NewRequestWithContext(ctx, c.method, c.path, body)
	if err != nil {
		return fmt.Errorf("build %s %s: %w", c.method, c.path, err)
	}
	token := c.token
	if token == "" {
		token = u.mgmtToken
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if id := r.Header.Get("X-Request-Id"); id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	rec := &recorder{header: make(http.Header)}
	u.api.ServeHTTP(rec, req)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if status < 200 || status > 299 {
		var eb struct {
			Error apiError `json:"error"`
		}
		if err := json.Unmarshal(rec.body.Bytes(), &eb); err != nil || eb.Error.Message == "" {
			return &apiError{Status: status, Message: fmt.Sprintf("The management API answered %d.", status)}
		}
		eb.Error.Status = status
		return &eb.Error
	}
	if out != nil && status != http.StatusNoContent {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("decode %s %s: %w", c.method, c.path, err)
		}
	}
	return nil
}

// clientAddress is the browser's address as the API would read it.
func (u *UI) clientAddress(r *http.Request) string {
	return adminapi.ClientAddress(r, u.trustedHops)
}

// recorder is the http.ResponseWriter an in-process API call writes into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// listAll walks every page of a listing (path already holding its query,
// without cursor) up to max items.
func listAll[T any](u *UI, r *http.Request, path string, max int) ([]T, error) {
	var all []T
	cursor := ""
	for {
		p := path
		if cursor != "" {
			p += "&cursor=" + queryEscape(cursor)
		}
		var pg adminapi.List[T]
		if err := u.call(r, apiCall{method: "GET", path: p}, &pg); err != nil {
			return all, err
		}
		all = append(all, pg.Data...)
		if pg.NextCursor == nil || len(all) >= max {
			return all, nil
		}
		cursor = *pg.NextCursor
	}
}
