package cachefilter

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	in := &Entry{
		Status:   200,
		Header:   map[string]string{"content-type": "text/event-stream", "openai-model": "gpt"},
		Body:     []byte("data: [DONE]\n\n"),
		Stream:   true,
		StoredAt: time.Unix(1_700_000_000, 123456789),
		TTL:      90 * time.Second,
		Path:     "/v1/chat/completions",
	}
	b := encodeEntry(in)
	out, err := decodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := entryDiff(out, in); d != "" {
		t.Fatalf("round trip: %s", d)
	}
	if !bytes.Equal(b, encodeEntry(in)) {
		t.Fatal("encoding is not deterministic")
	}
	for i := range len(b) - len(in.Body) { // every truncation inside the envelope
		if _, err := decodeEntry(b[:i]); err == nil {
			t.Fatalf("truncated envelope of %d bytes decoded", i)
		}
	}
	bad := append([]byte(nil), b...)
	bad[1] = 9
	if _, err := decodeEntry(bad); err == nil {
		t.Fatal("unknown version decoded")
	}
}

// An entry written before entries kept their path (version 1) still
// decodes, without one.
func TestCodecDecodesVersion1(t *testing.T) {
	t.Parallel()
	v1 := []byte{codecMagic, 1, flagStream, 0xc8, 0x01, 0x00, 0x02, 0x01, 0x01, 'k', 0x01, 'v', 'b', 'o', 'd', 'y'}
	e, err := decodeEntry(v1)
	if err != nil {
		t.Fatal(err)
	}
	want := &Entry{Status: 200, Header: map[string]string{"k": "v"}, Body: []byte("body"), Stream: true, StoredAt: time.Unix(0, 0), TTL: 1}
	if d := entryDiff(e, want); d != "" {
		t.Fatalf("version 1: %s", d)
	}
}

// entryDiff says how got differs from want, field by field; "" if in none.
func entryDiff(got, want *Entry) string {
	var diffs []string
	if got.Status != want.Status {
		diffs = append(diffs, fmt.Sprintf("status %d, want %d", got.Status, want.Status))
	}
	if !maps.Equal(got.Header, want.Header) {
		diffs = append(diffs, fmt.Sprintf("header %q, want %q", got.Header, want.Header))
	}
	if !bytes.Equal(got.Body, want.Body) {
		diffs = append(diffs, fmt.Sprintf("body %q, want %q", got.Body, want.Body))
	}
	if got.Stream != want.Stream {
		diffs = append(diffs, fmt.Sprintf("stream %v, want %v", got.Stream, want.Stream))
	}
	if !got.StoredAt.Equal(want.StoredAt) || got.StoredAt.UnixNano() != want.StoredAt.UnixNano() {
		diffs = append(diffs, fmt.Sprintf("stored at %v, want %v", got.StoredAt, want.StoredAt))
	}
	if got.TTL != want.TTL {
		diffs = append(diffs, fmt.Sprintf("TTL %v, want %v", got.TTL, want.TTL))
	}
	if got.Path != want.Path {
		diffs = append(diffs, fmt.Sprintf("path %q, want %q", got.Path, want.Path))
	}
	return strings.Join(diffs, "; ")
}

// FuzzDecodeEntry: whatever decodeEntry accepts is a valid entry whose body
// is the rest of the input; it re-encodes to bytes that decode to the same
// entry in every field, and re-encoding that gives the same bytes again (the
// encoding is canonical).
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(&Entry{Status: 200, Header: map[string]string{"a": "b"}, Body: []byte("x"), TTL: time.Second}))
	f.Add(encodeEntry(&Entry{Status: 999, Header: map[string]string{"": "", "content-type": "text/event-stream"},
		Stream: true, StoredAt: time.Unix(-1, 5), TTL: -time.Nanosecond}))
	f.Add([]byte{codecMagic, codecVersion, 0xff, 0xe4, 0x00, 0x80, 0x00, 0x00, 0x01, 0x01, 'k', 0x00, 'b', 'o', 'd', 'y'})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		if e.Status < 100 || e.Status > 999 || e.Header == nil {
			t.Fatalf("decoded %+v", e)
		}
		if !bytes.Equal(e.Body, b[len(b)-len(e.Body):]) {
			t.Fatalf("body %q is not the end of the input %q", e.Body, b)
		}
		enc := encodeEntry(e)
		again, err := decodeEntry(enc)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", e, err)
		}
		if d := entryDiff(again, e); d != "" {
			t.Fatalf("re-encoding a decoded entry: %s", d)
		}
		if !bytes.Equal(encodeEntry(again), enc) {
			t.Fatalf("encoding is not canonical: %q, then %q", enc, encodeEntry(again))
		}
	})
}

// FuzzEncodeEntry: an entry with a status of three digits decodes back equal
// in every field, and no cut of its envelope decodes; any other status is
// refused.
func FuzzEncodeEntry(f *testing.F) {
	f.Add(200, true, int64(1_700_000_000_123_456_789), int64(90*time.Second), "content-type", "text/event-stream", "openai-model", "gpt", []byte("data: [DONE]\n\n"))
	f.Add(99, false, int64(0), int64(0), "", "", "", "", []byte(nil))
	f.Add(1000, false, int64(-1), int64(-1), "a", "\x00\xff", "a", "", []byte{0})
	f.Fuzz(func(t *testing.T, status int, stream bool, storedAt, ttl int64, k1, v1, k2, v2 string, body []byte) {
		path := k1 + v2 // a path of the fuzzer's choosing without another argument
		in := &Entry{
			Status:   status,
			Header:   map[string]string{k1: v1, k2: v2},
			Body:     body,
			Stream:   stream,
			StoredAt: time.Unix(0, storedAt),
			TTL:      time.Duration(ttl),
			Path:     path,
		}
		b := encodeEntry(in)
		out, err := decodeEntry(b)
		if status < 100 || status > 999 {
			if err == nil {
				t.Fatalf("status %d decoded as %+v", status, out)
			}
			return
		}
		if err != nil {
			t.Fatalf("decoding %+v: %v", in, err)
		}
		if d := entryDiff(out, in); d != "" {
			t.Fatalf("round trip: %s", d)
		}
		for i := range len(b) - len(body) {
			if e, err := decodeEntry(b[:i]); err == nil {
				t.Fatalf("the first %d bytes of a %d-byte envelope decoded as %+v", i, len(b)-len(body), e)
			}
		}
	})
}
