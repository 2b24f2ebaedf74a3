package cachefilter

import (
	"bytes"
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
	}
	b := encodeEntry(in)
	out, err := decodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != in.Status || !out.Stream || out.TTL != in.TTL || !out.StoredAt.Equal(in.StoredAt) ||
		!bytes.Equal(out.Body, in.Body) || len(out.Header) != 2 || out.Header["openai-model"] != "gpt" {
		t.Fatalf("round trip: %+v", out)
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

func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(&Entry{Status: 200, Header: map[string]string{"a": "b"}, Body: []byte("x"), TTL: time.Second}))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		again, err := decodeEntry(encodeEntry(e))
		if err != nil || again.Status != e.Status || !bytes.Equal(again.Body, e.Body) {
			t.Fatalf("re-encoding a decoded entry: %v", err)
		}
	})
}
