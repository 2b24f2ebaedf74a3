package usage

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	tiktoken "github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"
)

// The encodings a [Tokenizer] loads; see encodingFor for which model uses which.
const (
	encodingO200k  = "o200k_base"
	encodingCL100k = "cl100k_base"
)

// installOfflineLoader points tiktoken-go at the BPE ranks embedded in
// tiktoken-go-loader. tiktoken-go keeps its loader in a package variable
// (tiktoken.SetBpeLoader) whose default downloads the rank files and caches
// them in a temp directory; this is the one piece of mutable package state in
// this package, forced by that API. It runs once per process, before the first
// encoding is loaded, and nothing in llm-proxy may call tiktoken-go except
// through [NewTokenizer].
var installOfflineLoader = sync.OnceFunc(func() {
	tiktoken.SetBpeLoader(tiktokenloader.NewOfflineLoader())
})

// Counting constants, after OpenAI's cookbook "How to count tokens with
// tiktoken" for chat models and its vision pricing guide.
const (
	tokensPerMessage = 3 // <|start|>{role}<|message|>…<|end|> around each message
	tokensPerName    = 1 // a message's "name"
	tokensPriming    = 3 // every reply is primed with <|start|>assistant<|message|>
	imageTokensLow   = 85
	imageTokensHigh  = 765 // a 1024×1024 image at high detail: 85 + 4 tiles × 170
)

// exactTextLimit is how many bytes of text one count tokenizes exactly;
// tiktoken-go runs at roughly 2–3 MB/s, so this caps a count near 25 ms. Text
// beyond it is estimated at the tokens-per-byte ratio of the text counted
// exactly in the same call.
const exactTextLimit = 64 << 10

// Tokenizer counts tokens offline with tiktoken's BPE encodings, embedded in
// the binary: it never touches the network or the file system. It is safe for
// concurrent use.
//
// An encoding is loaded when a count first needs it (about 0.25 s and 15 MB
// each), not when the Tokenizer is made: a sidecar that has served nothing
// holds neither, and one whose clients use only recent models never loads
// cl100k_base. A process makes one Tokenizer and shares it.
//
// tiktoken-go tokenizes at only 2–3 MB/s, so a Tokenizer remembers the counts
// of texts of 256 bytes or more (up to 32768 of them, about 2 MB): clients
// resend a conversation's earlier turns, its system prompt and its tools with
// every request, and those are then counted at memory speed.
type Tokenizer struct {
	// encodings[encID] returns the encoding, loading it on the first call;
	// loaded[encID] says whether it has been.
	encodings [2]func() loadedEncoding
	loaded    *[2]atomic.Bool
	counts    *countCache
}

// loadedEncoding is one encoding and the counts of the message roles in it.
type loadedEncoding struct {
	enc   *tiktoken.Tiktoken
	roles map[string]int64
}

// roleNames are the roles a message may have; every prompt repeats them.
var roleNames = [...]string{"system", "developer", "user", "assistant", "tool", "function"}

// NewTokenizer returns a Tokenizer of the o200k_base and cl100k_base
// encodings embedded by tiktoken-go-loader. Its first count installs that
// offline loader in tiktoken-go, process-wide.
func NewTokenizer() *Tokenizer {
	t := &Tokenizer{loaded: new([2]atomic.Bool), counts: newCountCache(countCacheEntries)}
	for id, name := range [2]string{encodingO200k, encodingCL100k} {
		t.encodings[id] = sync.OnceValue(func() loadedEncoding {
			defer t.loaded[id].Store(true)
			return loadEncoding(name)
		})
	}
	return t
}

// Loaded reports whether model's encoding is loaded: when it is not, the
// next count of that model first loads it (a quarter of a second on an idle
// machine, more on a busy one).
func (t *Tokenizer) Loaded(model string) bool {
	return t.loaded[t.encID(model)].Load()
}

// encID is the index of model's encoding in encodings and loaded.
func (t *Tokenizer) encID(model string) uint8 {
	if encodingFor(model) == encodingCL100k {
		return 1
	}
	return 0
}

// Load loads every encoding now rather than at its first count.
func (t *Tokenizer) Load() {
	for _, get := range t.encodings {
		get()
	}
}

// loadEncoding loads an encoding from the ranks compiled into the binary. It
// cannot fail but for a broken build, which it reports by panicking (a test
// loads both encodings).
func loadEncoding(name string) loadedEncoding {
	installOfflineLoader()
	enc, err := tiktoken.GetEncoding(name)
	if err != nil {
		panic(fmt.Sprintf("usage: load the embedded %s encoding: %v", name, err))
	}
	e := loadedEncoding{enc: enc, roles: make(map[string]int64, len(roleNames))}
	for _, role := range roleNames {
		e.roles[role] = int64(len(enc.EncodeOrdinary(role)))
	}
	return e
}

// encodingFor returns the encoding OpenAI uses for model. A fine-tuned model
// ("ft:gpt-4o-mini-2024-07-18:org::id") uses its base model's. cl100k_base:
// gpt-4 and gpt-4-*, gpt-3.5*, gpt-35* (Azure's spelling), text-embedding-3-*,
// text-embedding-ada-002, davinci-002, babbage-002. Everything else is
// o200k_base: the gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4, chatgpt-4o and
// gpt-oss families, and any model not known here.
func encodingFor(model string) string {
	if base, ok := strings.CutPrefix(model, "ft:"); ok {
		model, _, _ = strings.Cut(base, ":")
	}
	switch {
	case family(model, "gpt-4"),
		strings.HasPrefix(model, "gpt-3.5"),
		strings.HasPrefix(model, "gpt-35"),
		strings.HasPrefix(model, "text-embedding-3-"),
		family(model, "text-embedding-ada-002"),
		family(model, "davinci-002"),
		family(model, "babbage-002"):
		return encodingCL100k
	}
	return encodingO200k
}

// family reports whether model is name or a version of it ("name-…").
func family(model, name string) bool {
	return strings.HasPrefix(model, name) && (len(model) == len(name) || model[len(name)] == '-')
}

// counter starts a count in model's encoding.
func (t *Tokenizer) counter(model string) counter {
	c := counter{encID: t.encID(model), budget: exactTextLimit, cache: t.counts}
	e := t.encodings[c.encID]()
	c.enc, c.roles = e.enc, e.roles
	return c
}

// encoding returns model's encoding.
func (t *Tokenizer) encoding(model string) *tiktoken.Tiktoken { return t.counter(model).enc }

// CountText returns the number of tokens of text in model's encoding, with no
// message overhead. Special tokens such as <|endoftext|> count as plain text.
// The first 64 KiB are tokenized exactly; the rest is estimated at their
// tokens-per-byte ratio.
func (t *Tokenizer) CountText(model, text string) int64 {
	c := t.counter(model)
	c.text(text)
	return c.total()
}

// CountPrompt estimates the prompt tokens of a JSON request body for model,
// for any of the endpoints that take text:
//
//   - "messages" (chat completions): per OpenAI's cookbook, 3 tokens per
//     message plus its role, name (+1), content — a string or the text and
//     refusal of content parts — and tool calls' names and arguments; 3 more
//     prime the reply.
//   - "input": a string or an array of strings, token ids or token-id arrays
//     (embeddings, moderations), or of items (Responses API: counted like
//     messages, including function call arguments and outputs).
//   - "instructions" (Responses API): one message.
//   - "prompt" (completions): a string, strings, token ids or token-id arrays.
//   - "tools", "functions", and a json_schema in "response_format" or
//     "text.format": roughly, as the tokens of their compact JSON.
//
// Each image part counts a fixed 765 tokens (a 1024×1024 image at high
// detail), 85 with "detail": "low"; the image itself is never fetched. Audio
// and file parts count nothing. The upstream's usage corrects all of this when
// the request settles. Across the body, the first 64 KiB of text are tokenized
// exactly and the rest is estimated at their tokens-per-byte ratio; texts
// counted before come from the Tokenizer's memory, as they were counted then,
// and cost none of those 64 KiB. A body that is not a well-formed JSON object
// counts one token per 4 bytes.
func (t *Tokenizer) CountPrompt(model string, body []byte) int64 {
	c := t.counter(model)
	r := reader{b: body}
	if !r.openObject() {
		return bytesEstimate(len(body))
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "messages":
			c.messages(&r)
		case "input", "prompt":
			c.input(&r)
		case "instructions":
			if r.peek() == '"' {
				c.tokens += tokensPerMessage
			}
			c.stringValue(&r)
		case "tools", "functions":
			c.jsonValue(&r)
		case "response_format":
			c.schema(&r, "json_schema")
		case "text":
			c.textFormat(&r)
		default:
			r.skip()
		}
	}
	if r.err {
		return bytesEstimate(len(body))
	}
	return c.total()
}

func bytesEstimate(n int) int64 { return (int64(n) + 3) / 4 }

// counter adds up the tokens of one count.
type counter struct {
	enc         *tiktoken.Tiktoken
	encID       uint8 // for the cache: 0 o200k_base, 1 cl100k_base
	cache       *countCache
	roles       map[string]int64 // counts of role names, may be nil
	budget      int              // bytes of text still to tokenize exactly
	tokens      int64            // overheads, token ids and text counted exactly
	exactBytes  int64            // text counted exactly, for the ratio
	exactTokens int64
	deferred    int64 // bytes of text past the budget, estimated at the end
	buf         []byte
}

func (c *counter) total() int64 {
	t := c.tokens
	if c.deferred > 0 {
		ratio := 0.25
		if c.exactBytes > 0 {
			ratio = float64(c.exactTokens) / float64(c.exactBytes)
		}
		t += int64(math.Ceil(float64(c.deferred) * ratio))
	}
	return t
}

// exact adds the tokens of size bytes of text counted exactly.
func (c *counter) exact(tokens int64, size int) {
	c.tokens += tokens
	c.exactTokens += tokens
	c.exactBytes += int64(size)
}

// tokenize counts s with tiktoken and spends the budget on it.
func (c *counter) tokenize(s string) int64 {
	c.budget -= len(s)
	if s == "" {
		return 0
	}
	return int64(len(c.enc.EncodeOrdinary(s)))
}

// text counts s: from the cache, else exactly within the budget and the rest
// estimated. A text past the budget is remembered as it was counted then: the
// exact count of its prefix and the length of the rest.
func (c *counter) text(s string) {
	if n, ok := c.roles[s]; ok {
		c.exact(n, len(s))
		return
	}
	key, e, ok := c.cache.lookupString(c.encID, s)
	if !ok {
		e.size = len(s)
		if len(s) > c.budget {
			e.size = cutPoint(s[:c.budget])
		}
		e.tokens, e.rest = c.tokenize(s[:e.size]), len(s)-e.size
		c.cache.put(key, e)
	}
	c.add(e)
}

// add adds a text's count: its exact part, and the rest to estimate.
func (c *counter) add(e countEntry) {
	c.exact(e.tokens, e.size)
	c.deferred += int64(e.rest)
}

// stringValue counts a JSON string value, and skips any other value. The
// cache is keyed on the raw JSON, so a text seen before is neither decoded
// nor tokenized again.
func (c *counter) stringValue(r *reader) {
	if r.peek() != '"' {
		r.skip()
		return
	}
	raw := r.span()
	if len(raw) >= 2 {
		if n, ok := c.roles[string(raw[1:len(raw)-1])]; ok {
			c.exact(n, len(raw)-2)
			return
		}
	}
	key, e, ok := c.cache.lookupJSON(c.encID, raw)
	if !ok {
		sr := reader{b: raw}
		var n int
		c.buf, n = sr.str(c.buf[:0], c.budget)
		if sr.err {
			r.fail()
			return
		}
		s := string(c.buf)
		if n > len(s) {
			s = s[:cutPoint(s)] // only a prefix fit in the budget; estimate the rest
		}
		e = countEntry{tokens: c.tokenize(s), size: len(s), rest: n - len(s)}
		c.cache.put(key, e)
	}
	c.add(e)
}

// cutPoint returns where to cut a prefix of a longer text: before the last
// white space in its final KiB, so no word is split, else after its last
// complete rune.
func cutPoint(prefix string) int {
	for i := len(prefix) - 1; i > 0 && i >= len(prefix)-1024; i-- {
		switch prefix[i] {
		case ' ', '\n', '\t':
			return i
		}
	}
	for j := len(prefix) - 1; j >= 0 && j >= len(prefix)-utf8.UTFMax; j-- {
		if utf8.RuneStart(prefix[j]) {
			if !utf8.FullRuneInString(prefix[j:]) {
				return j
			}
			break
		}
	}
	return len(prefix)
}

// jsonValue counts the compact JSON of a value.
func (c *counter) jsonValue(r *reader) {
	raw := r.span()
	if raw == nil || string(raw) == "null" {
		return
	}
	c.buf = appendCompact(c.buf[:0], raw)
	c.text(string(c.buf))
}

// schema counts the compact JSON of the named member of an object value.
func (c *counter) schema(r *reader, name string) {
	if !r.openObject() {
		r.skip()
		return
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		if string(key) == name {
			c.jsonValue(r)
		} else {
			r.skip()
		}
	}
}

// textFormat counts the json_schema of a Responses API "text": {"format": {…}}.
func (c *counter) textFormat(r *reader) {
	if !r.openObject() {
		r.skip()
		return
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		if string(key) == "format" {
			c.schema(r, "schema")
		} else {
			r.skip()
		}
	}
}

// messages counts a chat "messages" array.
func (c *counter) messages(r *reader) {
	if !r.openArray() {
		r.skip()
		return
	}
	primed := false
	for r.nextElem() {
		if !r.openObject() {
			r.skip()
			continue
		}
		c.tokens += tokensPerMessage
		primed = true
		c.item(r)
	}
	if primed {
		c.tokens += tokensPriming
	}
}

// input counts an "input" or "prompt" value.
func (c *counter) input(r *reader) {
	switch r.peek() {
	case '"':
		c.stringValue(r)
		return
	case '[':
	default:
		r.skip() // null, or a Responses API prompt template reference
		return
	}
	r.openArray()
	primed := false
	for r.nextElem() {
		switch r.peek() {
		case '"':
			c.stringValue(r)
		case '[':
			r.openArray()
			for r.nextElem() {
				c.tokenID(r)
			}
		case '{':
			r.openObject()
			c.tokens += tokensPerMessage
			primed = true
			c.item(r)
		default:
			c.tokenID(r)
		}
	}
	if primed {
		c.tokens += tokensPriming
	}
}

// tokenID counts one element of a token-id array.
func (c *counter) tokenID(r *reader) {
	if ch := r.peek(); ch == '-' || ch >= '0' && ch <= '9' {
		c.tokens++
	}
	r.skip()
}

// item counts the members of a chat message or a Responses API input item,
// after its '{'.
func (c *counter) item(r *reader) {
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "role", "arguments", "input", "refusal", "text":
			c.stringValue(r)
		case "name":
			if r.peek() == '"' {
				c.tokens += tokensPerName
			}
			c.stringValue(r)
		case "content", "output", "summary":
			c.content(r)
		case "tool_calls":
			if !r.openArray() {
				r.skip()
				continue
			}
			for r.nextElem() {
				c.toolCall(r)
			}
		case "function_call":
			c.call(r)
		default:
			r.skip()
		}
	}
}

// toolCall counts a chat tool call: {"function": {…}} or {"custom": {…}}.
func (c *counter) toolCall(r *reader) {
	if !r.openObject() {
		r.skip()
		return
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "function", "custom":
			c.call(r)
		default:
			r.skip()
		}
	}
}

// call counts a function or custom tool call: its name and arguments (input).
func (c *counter) call(r *reader) {
	if !r.openObject() {
		r.skip()
		return
	}
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "name", "arguments", "input":
			c.stringValue(r)
		default:
			r.skip()
		}
	}
}

// content counts a message content: a string or an array of parts.
func (c *counter) content(r *reader) {
	if r.peek() == '"' {
		c.stringValue(r)
		return
	}
	if !r.openArray() {
		r.skip()
		return
	}
	for r.nextElem() {
		switch r.peek() {
		case '"':
			c.stringValue(r)
		case '{':
			c.part(r)
		default:
			r.skip()
		}
	}
}

// part counts one content part: its text, or a fixed estimate for an image.
func (c *counter) part(r *reader) {
	r.openObject()
	image, low := false, false
	for key, more := r.nextKey(); more; key, more = r.nextKey() {
		switch string(key) {
		case "type":
			switch string(r.span()) {
			case `"image_url"`, `"input_image"`:
				image = true
			}
		case "text", "refusal":
			c.stringValue(r)
		case "detail":
			low = string(r.span()) == `"low"`
		case "image_url":
			if !r.openObject() {
				r.skip()
				continue
			}
			for k, more := r.nextKey(); more; k, more = r.nextKey() {
				if string(k) == "detail" {
					low = string(r.span()) == `"low"`
				} else {
					r.skip()
				}
			}
		default:
			r.skip()
		}
	}
	switch {
	case image && low:
		c.tokens += imageTokensLow
	case image:
		c.tokens += imageTokensHigh
	}
}
