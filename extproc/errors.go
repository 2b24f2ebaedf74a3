package extproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/upstream"
)

// Errors raised by the steps of this package.
var (
	errUnknownURL   = errors.New("unknown request URL")
	errMissingToken = errors.New("missing bearer token")
	errUnknownPhase = errors.New("unknown ext_proc phase")
	errNotJSON      = errors.New("JSON endpoint called without a JSON content type")
)

// limitAPIError is OpenAI's answer to a limit: 429 rate_limit_exceeded with
// retry-after for rates, 429 insufficient_quota (and no retry) for budgets and
// lifetime caps, which waiting does not cure.
func limitAPIError(le *ratelimit.LimitError, err error) *apiError {
	switch le.Kind {
	case ratelimit.KindBudget:
		return &apiError{Status: http.StatusTooManyRequests, Type: "insufficient_quota", Code: "insufficient_quota",
			Message: "This project has used its monthly budget.",
			Header:  map[string]string{"x-should-retry": "false"}, Err: err}
	case ratelimit.KindLifetime:
		return &apiError{Status: http.StatusTooManyRequests, Type: "insufficient_quota", Code: "insufficient_quota",
			Message: "This proxy token has used all of its allowed requests.",
			Header:  map[string]string{"x-should-retry": "false"}, Err: err}
	}
	typ, what := "requests", "requests per minute (RPM)"
	switch le.Kind {
	case ratelimit.KindTokens:
		typ, what = "tokens", "tokens per minute (TPM)"
	case ratelimit.KindConcurrency:
		what = "concurrent requests"
		// A slot frees when some request ends; there is no schedule to wait for.
		le.RetryAfter = max(le.RetryAfter, time.Second)
	}
	owner := "proxy token"
	if strings.HasPrefix(le.Scope, "project:") {
		owner = "project"
	}
	ae := &apiError{Status: http.StatusTooManyRequests, Type: typ, Code: "rate_limit_exceeded",
		Message: fmt.Sprintf("Rate limit reached for this %s on %s: limit %d. Please try again in %s.", owner, what, le.Limit, resetString(le.RetryAfter)),
		Err:     err}
	if le.RetryAfter <= 0 {
		// Larger than the whole limit: waiting will not help.
		ae.Message = fmt.Sprintf("Request too large for this %s's %s: limit %d.", owner, what, le.Limit)
		ae.Header = map[string]string{"x-should-retry": "false"}
		return ae
	}
	secs := int64((le.RetryAfter + time.Second - 1) / time.Second)
	ae.Header = map[string]string{
		"retry-after":    strconv.FormatInt(secs, 10),
		"retry-after-ms": strconv.FormatInt(le.RetryAfter.Milliseconds(), 10),
	}
	return ae
}

// ruleAPIError is the answer to a request its project's or token's rules
// refuse (stream_rules.go): 403 permission_error for a model, like the
// proxy's other refusals of what a project may not do, so SDKs raise their
// permission error; 400 invalid_request_error naming the parameter for a
// request that could be sent again differently; 413 and 411 for the body's
// size.
func ruleAPIError(re *ruleError, err error) *apiError {
	ae := &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Err: err}
	if re.param != "" {
		ae.Param = &re.param
	}
	switch re.rule {
	case ruleModel:
		ae.Status, ae.Type, ae.Code = http.StatusForbidden, "permission_error", "model_not_allowed"
		named := "names no model"
		if re.model != "" {
			named = fmt.Sprintf("names the model `%s`", truncate(re.model, 200))
		}
		switch {
		case re.line > 0:
			ae.Message = fmt.Sprintf("Line %d of the batch's input file %s, which is not allowed for this proxy token.", re.line, named)
		case re.model == "":
			ae.Message = "This proxy token may use only the models its rules allow: name one in `model`."
		default:
			ae.Message = fmt.Sprintf("The model `%s` is not allowed for this proxy token.", truncate(re.model, 200))
		}
	case ruleBodySize:
		ae.Status, ae.Code = http.StatusRequestEntityTooLarge, "request_too_large"
		ae.Message = fmt.Sprintf("The request body is %d bytes, over this proxy token's limit of %d bytes.", re.value, re.limit)
	case ruleLength:
		ae.Status, ae.Code = http.StatusLengthRequired, "length_required"
		ae.Message = fmt.Sprintf("This proxy token's request bodies are limited to %d bytes: send the upload with a Content-Length header.", re.limit)
	case ruleCeiling:
		ae.Code = "max_tokens_exceeded"
		ae.Message = fmt.Sprintf("%s is %d, over this proxy token's limit of %d output tokens.", re.param, re.value, re.limit)
	case ruleParam:
		ae.Code = "parameter_not_allowed"
		allowed := "none: leave it out"
		if len(re.allowed) > 0 {
			vs := make([]string, len(re.allowed))
			for i, v := range re.allowed {
				vs[i] = compact(v)
			}
			allowed = truncate(strings.Join(vs, ", "), 200)
		}
		ae.Message = fmt.Sprintf("The value %s of `%s` is not allowed for this proxy token; allowed: %s.", re.raw, re.param, allowed)
	case ruleTools:
		ae.Code = "tools_not_allowed"
		ae.Message = fmt.Sprintf("This proxy token may not offer the model tools: remove `%s`.", re.param)
	}
	return ae
}

// methodError: the path exists, but not for this method.
type methodError struct {
	method, path string
	allowed      []string
}

func (e *methodError) Error() string {
	return fmt.Sprintf("method %s not allowed on %s", e.method, e.path)
}

// tokenError carries the rejected token so the client message can show its
// masked form, as OpenAI does; the token itself is never in Error().
type tokenError struct {
	err   error
	token string
}

func (e *tokenError) Error() string { return e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// apiError is what a client is told (Status, Type, Code, Message, Param) and
// what is kept for the log (Err). It is the only place where internal errors
// become client-visible ones.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Message string
	Param   *string
	Header  map[string]string // extra response headers, e.g. allow
	Err     error             // the cause, for logs only
}

// reason is a short, secret-free label of the cause for the request log.
func (e *apiError) reason() string {
	if e.Err == nil {
		return e.Code
	}
	return e.Err.Error()
}

// toAPIError maps any error of a step onto the OpenAI error a client gets.
// Unknown errors become a 500 whose message reveals nothing.
func toAPIError(err error) *apiError {
	var (
		fle *authz.FailureLimitError
		me  *methodError
		te  *tokenError
		le  *ratelimit.LimitError
		bre *badRequestError
		re  *ruleError
	)
	switch {
	case errors.Is(err, errUnknownURL):
		return &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
			Message: "Unknown request URL: " + truncate(strings.TrimPrefix(err.Error(), errUnknownURL.Error()+": "), 200) + ". Please check the URL for typos, or see the docs at https://platform.openai.com/docs/api-reference/.",
			Err:     err}
	case errors.As(err, &me):
		return &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed",
			Message: fmt.Sprintf("Method %s is not allowed on %s; allowed: %s.", truncate(me.method, 16), truncate(me.path, 200), strings.Join(me.allowed, ", ")),
			Header:  map[string]string{"allow": strings.Join(me.allowed, ", ")}, Err: err}
	case errors.As(err, &fle):
		secs := int64((fle.RetryAfter + time.Second - 1) / time.Second)
		return &apiError{Status: http.StatusTooManyRequests, Type: "invalid_request_error", Code: "too_many_failed_authentications",
			Message: fmt.Sprintf("Too many requests with invalid proxy tokens from this address. Please try again in %ds.", max(secs, 1)),
			Header:  map[string]string{"retry-after": strconv.FormatInt(max(secs, 1), 10)}, Err: err}
	case errors.Is(err, errMissingToken):
		return &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
			Message: "You didn't provide an API key. You need to provide your proxy token in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_TOKEN).",
			Err:     err}
	case errors.Is(err, authz.ErrInvalidToken), errors.Is(err, authz.ErrTokenRevoked), errors.Is(err, authz.ErrTokenExpired):
		shown := "(none)"
		if errors.As(err, &te) {
			shown = authz.Mask(te.token)
		}
		return &apiError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
			Message: "Incorrect API key provided: " + shown + ". The proxy token is unknown, revoked or expired.", Err: err}
	case errors.Is(err, authz.ErrProjectInactive):
		return &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: "project_inactive",
			Message: "The project of this proxy token is deactivated.", Err: err}
	case errors.As(err, &le):
		return limitAPIError(le, err)
	case errors.Is(err, ratelimit.ErrUnavailable):
		return &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "rate_limiter_unavailable",
			Message: "The proxy cannot check rate limits right now. Please retry.", Err: err}
	case errors.As(err, &re):
		return ruleAPIError(re, err)
	case errors.As(err, &bre):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_request_body",
			Message: "We could not parse the JSON body of your request: " + truncate(bre.err.Error(), 200), Err: err}
	case errors.Is(err, errBackgroundRefused), errors.Is(err, errBatchRefused):
		code, param := "background_not_allowed", "background"
		if errors.Is(err, errBatchRefused) {
			code, param = "batches_not_allowed", ""
		}
		ae := &apiError{Status: http.StatusForbidden, Type: "permission_error", Code: code,
			Message: "The proxy refuses this request: " + err.Error() + ".", Err: err}
		if param != "" {
			ae.Param = &param
		}
		return ae
	case errors.Is(err, errBatchTooLarge):
		param := "input_file_id"
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "batch_input_too_large",
			Message: "The batch's input file is larger than this proxy reads to reserve its cost (LLM_PROXY_MAX_BATCH_INPUT_BYTES); split it into smaller batches.",
			Param:   &param, Err: err}
	case errors.Is(err, errBatchUnavailable) && upstream.NotFound(err):
		param := "input_file_id"
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "input_file_not_found",
			Message: "The batch's input file does not exist for this project.", Param: &param, Err: err}
	case errors.Is(err, errBatchUnavailable):
		return &apiError{Status: http.StatusBadGateway, Type: "server_error", Code: "batch_input_unavailable",
			Message: "The proxy could not read the batch's input file to reserve its cost. Please retry.", Err: err}
	case errors.Is(err, errOverloaded):
		return &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "proxy_overloaded",
			Message: "The proxy is holding too many large requests right now. Please retry.",
			Header:  map[string]string{"retry-after": "1"}, Err: err}
	case errors.Is(err, errNotJSON):
		return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_content_type",
			Message: "This endpoint takes a JSON body: send Content-Type: application/json.", Err: err}
	default:
		return &apiError{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error",
			Message: "The proxy failed to process the request. Retry, and contact the operator if it persists.", Err: err}
	}
}

// errorBody is OpenAI's error document.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// immediate renders the error as Envoy's ImmediateResponse.
func (e *apiError) immediate(requestID string) *extprocv3.ProcessingResponse {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Param, b.Error.Code = e.Message, e.Type, e.Param, e.Code
	body, _ := json.Marshal(b) // cannot fail: strings and a pointer to string
	headers := []*corev3.HeaderValueOption{
		setHeader("content-type", "application/json"),
		setHeader("x-request-id", requestID),
	}
	for k, v := range e.Header {
		headers = append(headers, setHeader(k, v))
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(e.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: headers},
			Body:    body,
			Details: "llm_proxy_" + e.Code,
		},
	}}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
