package adminui

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/llm-proxy/llm-proxy/adminapi"
)

// The console never judges a value itself: a form field goes to the API as
// the JSON it most plausibly means, and the API's refusal names the field.

// number is the JSON for a numeric field: the number as typed, or, when the
// text is no JSON number, the text as a string, which the API refuses with
// its own message naming the field.
func number(v string) any {
	v = strings.TrimSpace(v)
	var n json.Number
	if json.Unmarshal([]byte(v), &n) == nil && v != "" && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return json.RawMessage(v)
	}
	return v
}

// setNumber sets body[name] from the form field: left out when empty, or
// null when empty and clear (a PATCH clearing the value).
func setNumber(body map[string]any, f url.Values, field, name string, clear bool) {
	v := strings.TrimSpace(f.Get(field))
	switch {
	case v != "":
		body[name] = number(v)
	case clear:
		body[name] = nil
	}
}

// limitsBody is the limits object from the form's rpm, tpm and concurrency
// fields; nil when create and none is set.
func limitsBody(f url.Values, clear bool) map[string]any {
	l := map[string]any{}
	setNumber(l, f, "requests_per_minute", "requests_per_minute", clear)
	setNumber(l, f, "tokens_per_minute", "tokens_per_minute", clear)
	setNumber(l, f, "max_concurrent", "max_concurrent", clear)
	if len(l) == 0 {
		return nil
	}
	return l
}

// checked reports whether a checkbox was ticked.
func checked(f url.Values, name string) bool { return f.Get(name) != "" }

// int64Field is an optional count for a form's initial value.
func int64Field(p *int64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatInt(*p, 10)
}

// limitsForm is the form fields of limits.
func limitsForm(f url.Values, l adminapi.Limits) {
	f.Set("requests_per_minute", int64Field(l.RequestsPerMinute))
	f.Set("tokens_per_minute", int64Field(l.TokensPerMinute))
	f.Set("max_concurrent", int64Field(l.MaxConcurrent))
}

// flag is a checkbox's form value.
func flag(b bool) string {
	if b {
		return "on"
	}
	return ""
}
