package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxBodyBytes bounds every request body; a larger one is refused with 413.
const maxBodyBytes = 1 << 20

// maxNameLen bounds project and token names, in characters.
const maxNameLen = 200

// validator is a request body that checks its own values after decoding.
type validator interface{ validate() error }

// decodeJSON reads the request body as exactly one JSON object into dst,
// refusing unknown fields and trailing data, then validates dst if it can.
// The body must be valid UTF-8 (encoding/json would quietly turn invalid
// bytes into U+FFFD), and null or any other non-object is refused rather
// than decoded as an empty object. Its errors are *apiError values that
// name the offending field where there is one.
func decodeJSON(r *http.Request, dst any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if isTooLarge(err) {
			return decodeError(err)
		}
		return invalid(codeInvalidJSON, "", "The request body could not be read.")
	}
	if !utf8.Valid(body) {
		return invalid(codeInvalidJSON, "", "The request body is not valid UTF-8.")
	}
	if kind := topLevelKind(body); kind != "" && kind != "object" {
		return invalid(codeInvalidType, "", "The request body must be a JSON object, not %s.", jsonKind(kind))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if rest := body[dec.InputOffset():]; len(bytes.Trim(rest, jsonSpace)) > 0 {
		return invalid(codeInvalidJSON, "", "The request body must be a single JSON object, with nothing after it.")
	}
	if v, ok := dst.(validator); ok {
		return v.validate()
	}
	return nil
}

// jsonSpace is the whitespace JSON allows between values.
const jsonSpace = " \t\r\n"

// topLevelKind names the JSON type of a body that is one well-formed JSON
// value ("object", "array", "string", "number", "bool", or "null"), or
// returns "" when it is not, leaving the decoder to say what is wrong.
func topLevelKind(body []byte) string {
	if !json.Valid(body) {
		return ""
	}
	switch b := bytes.TrimLeft(body, jsonSpace); b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// decodeError turns an encoding/json error into the 400 (or 413) a client sees.
func decodeError(err error) error {
	var (
		apiErr    *apiError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &apiErr):
		return apiErr // from a field's own UnmarshalJSON, already rendered
	case isTooLarge(err):
		return &apiError{
			Status:  http.StatusRequestEntityTooLarge,
			Type:    typeInvalidRequest,
			Code:    codeRequestTooLarge,
			Message: fmt.Sprintf("The request body is larger than %d bytes.", maxBodyBytes),
		}
	case errors.Is(err, io.EOF):
		return invalid(codeInvalidJSON, "", "The request body is empty; it must be a JSON object.")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid(codeInvalidJSON, "", "The request body is not valid JSON: it ends unexpectedly.")
	case errors.As(err, &syntaxErr):
		return invalid(codeInvalidJSON, "", "The request body is not valid JSON (at byte %d).", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return invalid(codeInvalidType, "", "The request body must be a JSON object, not %s.", jsonKind(typeErr.Value))
		}
		return invalid(codeInvalidType, typeErr.Field, "%s must be %s, not %s.",
			typeErr.Field, jsonTypeName(typeErr.Type), jsonKind(typeErr.Value))
	}
	// encoding/json reports unknown fields only as text: `json: unknown field "x"`.
	if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, uerr := strconv.Unquote(rest); uerr == nil {
			return invalid(codeUnknownField, name, "Unknown field %q.", name)
		}
		return invalid(codeUnknownField, "", "The request body has an unknown field.")
	}
	return invalid(codeInvalidJSON, "", "The request body is not valid JSON.")
}

// jsonKind describes what UnmarshalTypeError.Value saw ("number 1.5" -> "a non-integer or out-of-range number").
func jsonKind(value string) string {
	switch {
	case value == "string":
		return "a string"
	case value == "bool":
		return "a boolean"
	case value == "array":
		return "an array"
	case value == "object":
		return "an object"
	case value == "null":
		return "null"
	case value == "number":
		return "a number"
	case strings.HasPrefix(value, "number"):
		return "a non-integer or out-of-range number"
	}
	return "a " + value
}

// jsonTypeName names the JSON type a Go field type accepts.
func jsonTypeName(t reflect.Type) string {
	if t == nil {
		return "a different type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a different type"
}

// optional is a request field that may be absent, null, or a value. JSON null
// reaches UnmarshalJSON (encoding/json passes it to value-typed Unmarshalers),
// so Set and Null tell "absent" from "null" from "value".
type optional[T any] struct {
	Set   bool // the field was present in the body
	Null  bool // it was present as null
	Value T
}

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

// has reports whether the field carries a non-null value.
func (o optional[T]) has() bool { return o.Set && !o.Null }

// notNull refuses an explicit null for a field that cannot be cleared.
func notNull[T any](field string, o optional[T]) error {
	if o.Set && o.Null {
		return invalid(codeInvalidValue, field, "%s must not be null.", field)
	}
	return nil
}

// checkName validates a display name of 0 (if allowEmpty) or 1 to maxNameLen characters.
func checkName(field, name string, allowEmpty bool) error {
	n := utf8.RuneCountInString(name)
	switch {
	case n == 0 && allowEmpty:
		return nil
	case strings.TrimSpace(name) == "":
		return invalid(codeInvalidValue, field, "%s must not be empty or only whitespace.", field)
	case hasControl(name):
		return invalid(codeInvalidValue, field, "%s must not contain control characters.", field)
	case n > maxNameLen:
		return invalid(codeInvalidValue, field, "%s must be at most %d characters, got %d.", field, maxNameLen, n)
	}
	return nil
}

// expiry is a token expiry as requested: either relative (expires_in) or
// absolute (expires_at), never both. A set field holding null clears the expiry.
type expiry struct {
	In optional[string]
	At optional[string]
}

// resolve returns the requested expiry: change reports whether a field was
// given at all, at is nil when it was given as null. The expiry must lie after
// now; it is kept to whole seconds, rounding down.
func (e expiry) resolve(now time.Time) (at *time.Time, change bool, err error) {
	switch {
	case e.In.Set && e.At.Set:
		return nil, false, invalid(codeInvalidValue, "expires_at", "expires_in and expires_at are mutually exclusive; send at most one.")
	case e.In.Null || e.At.Null:
		return nil, true, nil
	case e.In.Set:
		d, err := parseExpiresIn(e.In.Value)
		if err != nil {
			return nil, false, invalid(codeInvalidValue, "expires_in", "expires_in %v.", err)
		}
		if d <= 0 {
			return nil, false, invalid(codeInvalidValue, "expires_in", "expires_in must be positive; the expiry would be in the past.")
		}
		t := now.Add(d).UTC().Truncate(time.Second)
		if !t.After(now) {
			return nil, false, invalid(codeInvalidValue, "expires_in", "expires_in must be at least one second.")
		}
		return &t, true, nil
	case e.At.Set:
		t, err := time.Parse(time.RFC3339, e.At.Value)
		if err != nil {
			return nil, false, invalid(codeInvalidValue, "expires_at", "expires_at must be an RFC 3339 timestamp such as \"2030-01-02T15:04:05Z\".")
		}
		t = t.UTC().Truncate(time.Second)
		if !t.After(now) {
			return nil, false, invalid(codeInvalidValue, "expires_at", "expires_at must be in the future.")
		}
		return &t, true, nil
	}
	return nil, false, nil
}

// maxDays keeps N*24h within time.Duration.
const maxDays = int64(1<<63-1) / int64(24*time.Hour)

// ParseLifetime reads a lifetime as the API's expires_in does: a Go
// duration ("720h", "90m") or whole days ("30d"); for the CLI's flags.
func ParseLifetime(s string) (time.Duration, error) { return parseExpiresIn(s) }

// parseExpiresIn accepts a Go duration ("720h", "90m") or whole days ("30d").
func parseExpiresIn(s string) (time.Duration, error) {
	if digits, ok := strings.CutSuffix(s, "d"); ok && digits != "" && strings.Trim(digits, "0123456789") == "" {
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n > maxDays {
			return 0, errors.New("is too long")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New(`must be a duration such as "720h", "90m" or "30d"`)
	}
	return d, nil
}

// checkMaxRequests validates a lifetime request cap.
func checkMaxRequests(o optional[int64]) error {
	if o.has() && o.Value < 1 {
		return invalid(codeInvalidValue, "max_requests", "max_requests must be at least 1, got %d.", o.Value)
	}
	return nil
}
