package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Entry is one event read from the stream.
type Entry struct {
	// ID is the event id: the idempotency key a backend hands on.
	ID string
	// JSON is the event as the producer encoded it.
	JSON []byte
}

// A Backend is one place events are delivered to.
//
// Deliver returns nil when the backend accepted every entry. To accept some
// entries and not others it returns a [*BatchError]; any other error fails
// the whole call. An error for which [IsPermanent] reports true is not
// retried: the entries it covers go to the dead-letter stream. Deliver must
// be safe to call again with entries it already accepted (the dispatcher
// delivers at least once) and must honour ctx.
type Backend interface {
	Name() string
	Deliver(ctx context.Context, entries []Entry) error
}

// BatchError is returned by [Backend.Deliver] when only some entries were
// accepted. Failed maps the [Entry.ID] of each entry that was not accepted
// to its error; every other entry of the call was accepted.
type BatchError struct {
	Failed map[string]error
}

func (e *BatchError) Error() string {
	ids := make([]string, 0, len(e.Failed))
	for id := range e.Failed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	const show = 3
	var b strings.Builder
	fmt.Fprintf(&b, "%d entries failed", len(ids))
	for i, id := range ids {
		if i == show {
			fmt.Fprintf(&b, "; …")
			break
		}
		fmt.Fprintf(&b, "; %s: %v", id, e.Failed[id])
	}
	return b.String()
}

// Permanent marks err as a failure that retrying cannot fix (a payload the
// receiver rejects, bad credentials): [IsPermanent] reports true for it and
// for any error wrapping it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// IsPermanent reports whether err, or an error it wraps, has a
// `Permanent() bool` method that returns true: errors made by [Permanent],
// and a [*StatusError] with a 4xx status other than 408 and 429.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// retryAfter returns the delay a receiver asked for (Retry-After), if any.
func retryAfter(err error) time.Duration {
	var r interface{ RetryAfter() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfter()
	}
	return 0
}

// StatusError is an HTTP backend's answer that was not 2xx.
type StatusError struct {
	// Code is the HTTP status.
	Code int
	// Body is the start of the response body, for the log and the
	// dead-letter entry.
	Body string
	// After is the delay the Retry-After header asked for, or 0.
	After time.Duration
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("http status %d", e.Code)
	}
	return fmt.Sprintf("http status %d: %s", e.Code, e.Body)
}

// Permanent reports whether retrying cannot help: a 4xx other than 408
// (request timeout) and 429 (too many requests). 5xx statuses are retried.
func (e *StatusError) Permanent() bool {
	return e.Code >= 400 && e.Code < 500 && e.Code != 408 && e.Code != 429
}

// RetryAfter returns the delay the receiver asked for.
func (e *StatusError) RetryAfter() time.Duration { return e.After }
