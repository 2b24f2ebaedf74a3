package fakeopenai

import (
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
)

// encoding is a negotiated response Content-Encoding.
type encoding uint8

const (
	encIdentity encoding = iota
	encGzip
	encBrotli
)

func (e encoding) String() string {
	switch e {
	case encGzip:
		return "gzip"
	case encBrotli:
		return "br"
	}
	return "identity"
}

// brotliLevel is the brotli quality used: 4, what CDNs pick for dynamic
// content (fast, still smaller than gzip).
const brotliLevel = 4

// negotiate picks the response encoding for the request's Accept-Encoding
// header values the way the CDN in front of api.openai.com does: br when it
// is acceptable, else gzip when it is acceptable, else identity. A coding is
// acceptable when it is listed (or matched by "*") with a q-value above 0;
// q=0 refuses it. "x-gzip" counts as gzip.
func negotiate(values []string) encoding {
	qBr, qGzip, qStar := -1.0, -1.0, -1.0 // -1: not listed
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			name, params, _ := strings.Cut(item, ";")
			name = strings.TrimSpace(name)
			q := parseQ(params)
			switch {
			case strings.EqualFold(name, "br"):
				qBr = q
			case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
				qGzip = q
			case name == "*":
				qStar = q
			}
		}
	}
	if qBr < 0 {
		qBr = qStar
	}
	if qGzip < 0 {
		qGzip = qStar
	}
	switch {
	case qBr > 0:
		return encBrotli
	case qGzip > 0:
		return encGzip
	}
	return encIdentity
}

// parseQ reads the q parameter of an Accept-Encoding item ("; q=0.5"); 1
// when absent, 0 when malformed.
func parseQ(params string) float64 {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0
		}
		return q
	}
	return 1
}

// compressor is what *gzip.Writer and *brotli.Writer have in common.
type compressor interface {
	io.Writer
	Flush() error
	Close() error
	Reset(dst io.Writer)
}

var (
	gzipPool = sync.Pool{New: func() any {
		z, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
		return z
	}}
	brotliPool = sync.Pool{New: func() any { return brotli.NewWriterLevel(nil, brotliLevel) }}
)

// getCompressor returns a pooled compressor for e writing to dst.
func getCompressor(e encoding, dst io.Writer) compressor {
	var z compressor
	if e == encBrotli {
		z = brotliPool.Get().(*brotli.Writer)
	} else {
		z = gzipPool.Get().(*gzip.Writer)
	}
	z.Reset(dst)
	return z
}

// putCompressor returns a closed compressor to its pool.
func putCompressor(z compressor) {
	z.Reset(io.Discard)
	switch z := z.(type) {
	case *brotli.Writer:
		brotliPool.Put(z)
	case *gzip.Writer:
		gzipPool.Put(z)
	}
}

// setEncodingHeaders marks a response as compressed with e. Any
// Content-Length set before is for the identity body, so it goes.
func setEncodingHeaders(h http.Header, e encoding) {
	h.Set("Content-Encoding", e.String())
	h.Add("Vary", "Accept-Encoding")
	h.Del("Content-Length")
}

// writeCompressed writes a whole (non-streamed) body compressed with e, with
// Content-Length set to the compressed length. breakAfter >= 0 is
// x-fake-break: after-0 aborts before anything is written, after-N sends the
// headers and the first N bytes of the uncompressed body (compressed and
// flushed, so a decoding client sees exactly them) and aborts.
func writeCompressed(w http.ResponseWriter, e encoding, status int, body []byte, breakAfter int) {
	h := w.Header()
	setEncodingHeaders(h, e)
	out := getBuf()
	defer putBuf(out)
	z := getCompressor(e, out)
	if breakAfter >= 0 {
		if breakAfter == 0 {
			panic(http.ErrAbortHandler)
		}
		_, _ = z.Write(body[:min(breakAfter, len(body))])
		_ = z.Flush()
		putCompressor(z)
		w.WriteHeader(status)
		_, _ = w.Write(out.Bytes())
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}
	_, _ = z.Write(body)
	_ = z.Close()
	putCompressor(z)
	h.Set("Content-Length", strconv.Itoa(out.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(out.Bytes())
}

// eventWriter writes a server-sent event stream: every event is flushed to
// the client at once and, when the stream is compressed, the compressor is
// flushed first, so a decoding client sees each event as soon as it is
// written, as it does behind OpenAI's CDN.
type eventWriter struct {
	w  http.ResponseWriter
	rc http.ResponseController // by value, so that an eventWriter on the stack allocates nothing
	z  compressor              // nil: identity
}

// start sends the 200 status and headers (the caller set the others),
// compressing with e unless it is identity.
func (ew *eventWriter) start(w http.ResponseWriter, e encoding) {
	ew.w = w
	ew.rc = *http.NewResponseController(w)
	if e != encIdentity {
		setEncodingHeaders(w.Header(), e)
		ew.z = getCompressor(e, w)
	}
	w.WriteHeader(http.StatusOK)
}

// event writes and flushes one event.
func (ew *eventWriter) event(b []byte) error {
	if ew.z == nil {
		if _, err := ew.w.Write(b); err != nil {
			return err
		}
		return ew.rc.Flush()
	}
	if _, err := ew.z.Write(b); err != nil {
		return err
	}
	if err := ew.z.Flush(); err != nil {
		return err
	}
	return ew.rc.Flush()
}

// flush flushes what was written so far.
func (ew *eventWriter) flush() { _ = ew.rc.Flush() }

// finish ends a compressed stream (its trailer) and flushes.
func (ew *eventWriter) finish() {
	if ew.z == nil {
		return
	}
	_ = ew.z.Close()
	putCompressor(ew.z)
	ew.z = nil
	_ = ew.rc.Flush()
}
