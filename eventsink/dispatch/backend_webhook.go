package dispatch

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook headers. Every request carries all three.
const (
	// SignatureHeader holds "sha256=" and the hex HMAC-SHA-256, under the
	// shared secret, of the timestamp, a ".", and the raw body.
	SignatureHeader = "X-LLM-Proxy-Signature"
	// TimestampHeader holds the Unix time in seconds at which the request
	// was signed. It is part of the signed bytes, so it cannot be changed
	// without breaking the signature.
	TimestampHeader = "X-LLM-Proxy-Timestamp"
	// IdempotencyHeader holds the event id; a receiver that sees an id again
	// is seeing a redelivery and should answer 2xx without acting twice.
	IdempotencyHeader = "Idempotency-Key"

	signaturePrefix = "sha256="

	// MinWebhookSecret is the shortest secret [NewWebhook] accepts.
	MinWebhookSecret = 16
)

// Errors of [VerifySignature].
var (
	ErrBadSignature   = errors.New("webhook signature does not match")
	ErrStaleTimestamp = errors.New("webhook timestamp outside the tolerated window")
)

// Webhook POSTs each event, one per request, to a URL. The body is the event
// JSON exactly as it was read from the stream. The request is signed (see
// [SignatureHeader]) and carries the event id as [IdempotencyHeader].
//
// A receiver verifies a request with [VerifySignature]: it recomputes the
// HMAC over "<timestamp>.<body>" with the shared secret, compares in
// constant time, and rejects timestamps more than a few minutes from its
// clock. Binding the timestamp into the MAC stops a captured request from
// being replayed later; within the window, the receiver drops replays and
// redeliveries alike by the Idempotency-Key. Each retry is signed afresh.
//
// 2xx is accepted; 408, 429, 5xx and network errors are retried; any other
// 4xx is permanent.
type Webhook struct {
	url         string
	secret      []byte
	client      *http.Client
	concurrency int
	now         func() time.Time
}

// WebhookOptions configure [NewWebhook].
type WebhookOptions struct {
	// URL receives the POSTs (http or https).
	URL string
	// Secret keys the signature; at least [MinWebhookSecret] bytes.
	Secret []byte
	HTTPOptions
	// Now is the clock for timestamps (nil: time.Now).
	Now func() time.Time
}

// NewWebhook checks the options and returns the backend.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if err := checkURL(o.URL); err != nil {
		return nil, err
	}
	if len(o.Secret) < MinWebhookSecret {
		return nil, fmt.Errorf("webhook secret must be at least %d bytes", MinWebhookSecret)
	}
	w := &Webhook{
		url:         o.URL,
		secret:      append([]byte(nil), o.Secret...),
		client:      o.client(),
		concurrency: o.concurrency(),
		now:         o.Now,
	}
	if w.now == nil {
		w.now = time.Now
	}
	return w, nil
}

// Name returns "webhook".
func (w *Webhook) Name() string { return "webhook" }

// Deliver POSTs every entry, [HTTPOptions.Concurrency] at a time.
func (w *Webhook) Deliver(ctx context.Context, entries []Entry) error {
	return deliverEach(ctx, entries, w.concurrency, w.send)
}

func (w *Webhook) send(ctx context.Context, e Entry) error {
	ts := w.now()
	h := http.Header{}
	h.Set(IdempotencyHeader, e.ID)
	h.Set(TimestampHeader, strconv.FormatInt(ts.Unix(), 10))
	h.Set(SignatureHeader, Sign(w.secret, ts, e.JSON))
	_, err := postJSON(ctx, w.client, w.url, e.JSON, h)
	return err
}

// Sign returns the [SignatureHeader] value for body signed at ts.
func Sign(secret []byte, ts time.Time, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a webhook request: signature and timestamp are the
// values of [SignatureHeader] and [TimestampHeader], body the raw body. It
// returns [ErrStaleTimestamp] when the timestamp is more than tolerance away
// from now, and [ErrBadSignature] when the MAC does not match.
func VerifySignature(secret []byte, signature, timestamp string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrStaleTimestamp, timestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStaleTimestamp
	}
	hexMAC, ok := strings.CutPrefix(signature, signaturePrefix)
	if !ok {
		return ErrBadSignature
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil || !hmac.Equal(got, mac(secret, timestamp, body)) {
		return ErrBadSignature
	}
	return nil
}

func checkURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", redactURL(u))
	}
	return nil
}
