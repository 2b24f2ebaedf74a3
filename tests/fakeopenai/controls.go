package fakeopenai

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Control request headers; see the package documentation for their meaning.
const (
	HeaderStatus          = "X-Fake-Status"
	HeaderDelay           = "X-Fake-Delay"
	HeaderChunkDelay      = "X-Fake-Chunk-Delay"
	HeaderWords           = "X-Fake-Words"
	HeaderHold            = "X-Fake-Hold"
	HeaderBreak           = "X-Fake-Break"
	HeaderCachedTokens    = "X-Fake-Cached-Tokens"
	HeaderReasoningTokens = "X-Fake-Reasoning-Tokens"
	HeaderFail            = "X-Fake-Fail"
	HeaderEncoding        = "X-Fake-Encoding"
)

// controls are the parsed x-fake-* headers, plus how the answer is encoded
// and whether it is a batch line.
type controls struct {
	status     int
	delay      time.Duration
	chunkDelay time.Duration
	words      int // -1: echo
	hold       string
	breakAfter int // -1: none
	cached     int // x-fake-cached-tokens (0: none)
	reasoning  int // x-fake-reasoning-tokens (0: none)
	failID     string
	failStatus int
	failCount  int

	enc      encoding // the negotiated Content-Encoding
	forceEnc bool     // x-fake-encoding chose enc
	batch    bool     // a line of a batch: bill at the Batch API's price, never stream or store
}

type badHeader struct{ name, value string }

func (e *badHeader) Error() string {
	return "fakeopenai: invalid " + strings.ToLower(e.name) + " header value " + strconv.Quote(e.value)
}

func parseControls(h http.Header) (controls, error) {
	c := controls{words: -1, breakAfter: -1}
	if v := h.Get(HeaderStatus); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 400 || n > 599 {
			return c, &badHeader{HeaderStatus, v}
		}
		c.status = n
	}
	var err error
	if c.delay, err = parseDelay(h, HeaderDelay); err != nil {
		return c, err
	}
	if c.chunkDelay, err = parseDelay(h, HeaderChunkDelay); err != nil {
		return c, err
	}
	if c.words, err = parseCount(h, HeaderWords, -1); err != nil {
		return c, err
	}
	c.hold = strings.TrimSpace(h.Get(HeaderHold))
	if v := h.Get(HeaderBreak); v != "" {
		num, ok := strings.CutPrefix(strings.TrimSpace(v), "after-")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 0 {
			return c, &badHeader{HeaderBreak, v}
		}
		c.breakAfter = n
	}
	if c.cached, err = parseCount(h, HeaderCachedTokens, 0); err != nil {
		return c, err
	}
	if c.reasoning, err = parseCount(h, HeaderReasoningTokens, 0); err != nil {
		return c, err
	}
	if v := h.Get(HeaderEncoding); v != "" {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "gzip":
			c.enc = encGzip
		case "br":
			c.enc = encBrotli
		case "identity":
			c.enc = encIdentity
		default:
			return c, &badHeader{HeaderEncoding, v}
		}
		c.forceEnc = true
	}
	if v := h.Get(HeaderFail); v != "" {
		if c.failID, c.failStatus, c.failCount, err = parseFail(v); err != nil {
			return c, err
		}
	}
	return c, nil
}

// parseCount parses a header holding a count in [0, maxWords]; absent is def.
func parseCount(h http.Header, name string, def int) (int, error) {
	v := h.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > maxWords {
		return def, &badHeader{name, v}
	}
	return n, nil
}

// parseFail parses "<id>:<status>:<count>"; the id may itself hold colons.
func parseFail(v string) (id string, status, count int, err error) {
	t := strings.TrimSpace(v)
	i := strings.LastIndexByte(t, ':')
	if i < 0 {
		return "", 0, 0, &badHeader{HeaderFail, v}
	}
	j := strings.LastIndexByte(t[:i], ':')
	if j <= 0 {
		return "", 0, 0, &badHeader{HeaderFail, v}
	}
	status, err1 := strconv.Atoi(t[j+1 : i])
	count, err2 := strconv.Atoi(t[i+1:])
	if err1 != nil || err2 != nil || status < 400 || status > 599 || count < 0 {
		return "", 0, 0, &badHeader{HeaderFail, v}
	}
	return t[:j], status, count, nil
}

func parseDelay(h http.Header, name string) (time.Duration, error) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, &badHeader{name, v}
	}
	return d, nil
}

// bearer is the API key a request carries: its Authorization header without
// the "Bearer " scheme (the header verbatim when it has another scheme).
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if k, ok := strings.CutPrefix(a, "Bearer "); ok {
		return strings.TrimSpace(k)
	}
	return a
}
