package cachefilter

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// keyVersion starts every hashed key; changing how keys are computed must
// change it, so that old entries are never read under a new meaning.
const keyVersion = "llm-proxy-cache-key-v2"

// variantHeaders are the request headers that select a representation and
// therefore belong in the key. Every other header (Origin, User-Agent,
// X-Request-Id, Authorization, ...) is ignored, so it cannot turn every
// request into a miss. Accept-Encoding is not one: entries hold identity
// bodies, and Envoy's compressor encodes each answer for its own client
// (it strips Accept-Encoding before the sidecar sees the request).
var variantHeaders = [...]string{"accept", "openai-beta"}

// KeyFor is the cache key of a request: the hex SHA-256 of the project id
// (entries are never shared between projects), the method (upper-cased),
// the path, the query with its parameters sorted by name, a hash of the body
// and the variant headers. Lookup and store must both compute keys with
// KeyFor, so they cannot disagree.
//
// A body that is valid UTF-8 JSON is hashed in canonical form: decoded (numbers
// kept as written) and re-encoded with object keys sorted and no white
// space, so key order and formatting do not matter; where a key repeats, the
// last value counts, as in encoding/json. Any other body is hashed as is.
//
// The variant headers are Accept and OpenAI-Beta, matched
// case-insensitively in variant. Their values are normalised: repeated
// headers joined, split on commas, trimmed, lower-cased, sorted and
// de-duplicated; an absent header equals an empty one.
//
// Keys reveal nothing of the request and are never shown to clients. The
// error reports a query that cannot be parsed.
func KeyFor(projectID, method, path, rawQuery string, body []byte, variant http.Header) (string, error) {
	q, err := canonicalQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf("cache key: %w", err)
	}
	h := sha256.New()
	field(h, keyVersion)
	field(h, projectID)
	field(h, strings.ToUpper(method))
	field(h, path)
	field(h, q)
	bh := BodyHash(body)
	field(h, string(bh[:]))
	for _, name := range variantHeaders {
		field(h, name)
		field(h, variantValue(variant, name))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// field writes s length-prefixed, so that no two field lists hash alike.
func field(h hash.Hash, s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	io.WriteString(h, s)
}

// canonicalQuery sorts the parameters by name; the values of a repeated
// parameter keep their order, which may be significant.
func canonicalQuery(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return "", fmt.Errorf("query: %w", err)
	}
	return v.Encode(), nil
}

// BodyHash is the SHA-256 of body as [KeyFor] sees it: canonical JSON when
// body is valid UTF-8 JSON, else the raw bytes (the two are told apart).
func BodyHash(body []byte) [sha256.Size]byte {
	if c, ok := canonicalJSON(body); ok {
		return sha256.Sum256(append([]byte{'j'}, c...))
	}
	return sha256.Sum256(append([]byte{'r'}, body...))
}

// canonicalJSON re-encodes one JSON value with sorted keys and no white
// space. It refuses invalid UTF-8 (which decoding would replace, making two
// different bodies alike) and trailing data.
func canonicalJSON(body []byte) ([]byte, bool) {
	if len(body) == 0 || !utf8.Valid(body) {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, false
	}
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, false
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), true
}

// variantValue is the normalised value of header name in h.
func variantValue(h http.Header, name string) string {
	var toks []string
	for k, vs := range h {
		if !strings.EqualFold(k, name) {
			continue
		}
		for _, v := range vs {
			for t := range strings.SplitSeq(v, ",") {
				if t = normToken(t); t != "" {
					toks = append(toks, t)
				}
			}
		}
	}
	slices.Sort(toks)
	return strings.Join(slices.Compact(toks), ",")
}

// normToken lower-cases a list element and removes white space around its
// parameters: " text/HTML ; q=0.5" → "text/html;q=0.5".
func normToken(t string) string {
	parts := strings.Split(strings.ToLower(t), ";")
	for i, p := range parts {
		name, val, ok := strings.Cut(p, "=")
		p = strings.TrimSpace(name)
		if ok {
			p += "=" + strings.TrimSpace(val)
		}
		parts[i] = p
	}
	return strings.Join(parts, ";")
}

// Variant picks the variant headers [KeyFor] uses out of lower-case request
// headers as Envoy sends them, so callers need not know which they are.
func Variant(h Header) http.Header {
	out := make(http.Header, len(variantHeaders))
	for _, name := range variantHeaders {
		if v, ok := h.Lookup(name); ok {
			out.Set(name, v)
		}
	}
	return out
}
