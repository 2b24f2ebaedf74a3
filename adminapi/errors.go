package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/store"
)

// Error types, as OpenAI spells them in the "type" member.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"
)

// Error codes this API returns in the "code" member; openapi.yaml lists them.
const (
	codeInvalidJSON      = "invalid_json"
	codeUnknownField     = "unknown_field"
	codeInvalidType      = "invalid_type"
	codeMissingField     = "missing_required_field"
	codeInvalidValue     = "invalid_value"
	codeInvalidAPIKey    = "invalid_api_key"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeRequestTooLarge  = "request_too_large"
	codeRateLimited      = "rate_limit_exceeded"
	codeInternal         = "internal_error"
)

// internalErrorMessage is all a client learns about a server error.
const internalErrorMessage = "The server had an error while processing your request."

// apiError is the one error type handlers return for anything a client should
// see. Message goes to the client; Err, when set, only to the log. Any other
// error reaching [writeError] becomes a 500 whose cause is logged.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Param   string // the offending request field; "" renders as null
	Message string
	Err     error
}

func (e *apiError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *apiError) Unwrap() error { return e.Err }

// invalid is a 400 about one request field (param may be "" for the body as a whole).
func invalid(code, param, format string, args ...any) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Type:    typeInvalidRequest,
		Code:    code,
		Param:   param,
		Message: fmt.Sprintf(format, args...),
	}
}

// storeError maps a store error about the kind ("project", "token") with
// id, met doing op, to what the client sees: [store.ErrNotFound] is a 404,
// anything else a 500.
func storeError(kind, id, op string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound(kind, id)
	}
	return fmt.Errorf("%s %s: %w", op, id, err)
}

// notFound is a 404 for a resource of the given kind ("project", "token").
// The id is quoted only when it has the form of one ([validID]): whatever
// else a client sent is not echoed.
func notFound(kind, id string) *apiError {
	msg := fmt.Sprintf("No %s with id %q.", kind, id)
	if !validID(id) {
		msg = fmt.Sprintf("No %s has this id: %s ids are letters, digits, '_' and '-', at most %d characters.", kind, kind, maxIDLen)
	}
	return &apiError{
		Status:  http.StatusNotFound,
		Type:    typeInvalidRequest,
		Code:    codeNotFound,
		Message: msg,
	}
}

// errorBody is the OpenAI error envelope.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// writeError renders err as an OpenAI-shaped error. It is the only place error
// responses are written. Server errors are logged here, once, with the
// request-scoped logger; their cause never reaches the client.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{
			Status:  http.StatusInternalServerError,
			Type:    typeServer,
			Code:    codeInternal,
			Message: internalErrorMessage,
			Err:     err,
		}
	}
	if ae.Status >= http.StatusInternalServerError {
		zerolog.Ctx(r.Context()).Error().Err(ae.Err).Int(logStatus, ae.Status).Msg("management request failed")
	}
	body := errorBody{Error: errorDetail{Message: ae.Message, Type: ae.Type, Code: ae.Code}}
	if ae.Param != "" {
		body.Error.Param = &ae.Param
	}
	writeJSON(w, ae.Status, body)
}

// writeJSON writes v as the JSON response body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only this package's response types get here, and they always marshal.
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: errorDetail{Message: internalErrorMessage, Type: typeServer, Code: codeInternal}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
