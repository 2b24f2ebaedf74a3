package cachefilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The Redis value of an entry is a compact binary envelope:
//
//	magic 'C', version 2, flags (bit 0: stream),
//	uvarint status, varint stored-at (Unix ns), varint TTL (ns),
//	uvarint header count, then per header uvarint-length name and value,
//	uvarint-length path, then the body (the rest).
//
// Version 1 is the same without the path; it still decodes (Path "").
//
// It holds only what an Entry holds, and entries hold no secrets (see
// [StoredHeaders]).
const (
	codecMagic   = 'C'
	codecVersion = 2
	flagStream   = 1
)

var errCorrupt = errors.New("corrupt cache entry")

func encodeEntry(e *Entry) []byte {
	b := make([]byte, 0, len(e.Body)+len(e.Path)+64+32*len(e.Header))
	var flags byte
	if e.Stream {
		flags |= flagStream
	}
	b = append(b, codecMagic, codecVersion, flags)
	b = binary.AppendUvarint(b, uint64(e.Status))
	b = binary.AppendVarint(b, e.StoredAt.UnixNano())
	b = binary.AppendVarint(b, int64(e.TTL))
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	names := make([]string, 0, len(e.Header))
	for k := range e.Header {
		names = append(names, k)
	}
	slices.Sort(names) // deterministic bytes
	for _, k := range names {
		b = appendString(b, k)
		b = appendString(b, e.Header[k])
	}
	b = appendString(b, e.Path)
	return append(b, e.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeEntry parses what encodeEntry wrote; the body aliases b.
func decodeEntry(b []byte) (*Entry, error) {
	if len(b) < 3 || b[0] != codecMagic {
		return nil, errCorrupt
	}
	if b[1] != codecVersion && b[1] != 1 {
		return nil, fmt.Errorf("cache entry version %d: %w", b[1], errCorrupt)
	}
	d := decoder{b: b[3:]}
	e := &Entry{Stream: b[2]&flagStream != 0}
	e.Status = int(d.uvarint())
	e.StoredAt = time.Unix(0, d.varint())
	e.TTL = time.Duration(d.varint())
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each header takes at least two bytes
		return nil, errCorrupt
	}
	e.Header = make(map[string]string, n)
	for range n {
		k := d.string()
		e.Header[k] = d.string()
	}
	if b[1] >= 2 {
		e.Path = d.string()
	}
	if d.err != nil || e.Status < 100 || e.Status > 999 {
		return nil, errCorrupt
	}
	e.Body = d.b
	return e, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = errCorrupt, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = errCorrupt, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err, d.b = errCorrupt, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
