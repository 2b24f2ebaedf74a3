// Package policy holds what a project decides about its own requests beyond
// keys, limits and budgets: [Rules] (which models, parameter values and body
// sizes its requests may use, which browser origins may call it; a token's
// rules narrow its project's) and [Capture] (whether bodies are copied into
// usage events, and how they are redacted). Each is one type, stored with
// the project or token (store), shown and changed through the management
// API (adminapi), the CLI and the console, and read by the sidecar
// (extproc), so every one of them agrees on its fields, defaults and bounds.
package policy

import (
	"errors"
	"fmt"
)

// Capture says whether a project's request and response bodies are copied
// into its usage events (Lunary, Helicone and OpenTelemetry then show the
// conversation). It is off by default: prompts are the customer's data.
//
// What is captured is redacted before the event leaves the process (see
// package redact): secrets always, and the project's Redact patterns.
type Capture struct {
	Enabled bool `json:"enabled"`
	// RequestMaxBytes and ResponseMaxBytes cap each captured body; 0 means
	// the default. A longer body is cut and marked truncated.
	RequestMaxBytes  int `json:"request_max_bytes,omitempty"`
	ResponseMaxBytes int `json:"response_max_bytes,omitempty"`
	// Redact lists patterns replaced by a placeholder in captured bodies: a
	// preset name ("email", "card_number", …) or "re:" and an RE2 regexp.
	Redact []string `json:"redact,omitempty"`
}

// Default caps of captured bodies, as the predecessor proxy kept them.
const (
	DefaultRequestMaxBytes  = 64 << 10
	DefaultResponseMaxBytes = 256 << 10
)

// MaxBytes bounds either cap: an event carries both bodies, and events are
// queued in memory and Redis before they are delivered.
const MaxBytes = 1 << 20

// MaxPatterns bounds the Redact list; each pattern runs over every captured
// body.
const MaxPatterns = 32

// RequestCap is the request body cap in force.
func (c Capture) RequestCap() int { return orDefault(c.RequestMaxBytes, DefaultRequestMaxBytes) }

// ResponseCap is the response body cap in force.
func (c Capture) ResponseCap() int { return orDefault(c.ResponseMaxBytes, DefaultResponseMaxBytes) }

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// FieldError names the member of a policy that is wrong, as a JSON path
// ("capture.redact[2]"), so an API can point at it.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Validate checks c, with validPattern judging each Redact pattern (package
// redact's ValidatePattern; policy does not compile patterns itself). The
// first problem is returned as a *FieldError.
func (c Capture) Validate(validPattern func(string) error) error {
	for _, b := range []struct {
		field string
		v     int
	}{{"capture.request_max_bytes", c.RequestMaxBytes}, {"capture.response_max_bytes", c.ResponseMaxBytes}} {
		if b.v < 0 || b.v > MaxBytes {
			return &FieldError{b.field, fmt.Errorf("must be between 0 (the default) and %d", MaxBytes)}
		}
	}
	if len(c.Redact) > MaxPatterns {
		return &FieldError{"capture.redact", fmt.Errorf("at most %d patterns", MaxPatterns)}
	}
	for i, p := range c.Redact {
		if p == "" {
			return &FieldError{fmt.Sprintf("capture.redact[%d]", i), errors.New("empty pattern")}
		}
		if err := validPattern(p); err != nil {
			return &FieldError{fmt.Sprintf("capture.redact[%d]", i), err}
		}
	}
	return nil
}
