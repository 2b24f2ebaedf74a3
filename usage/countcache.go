package usage

import (
	"hash/maphash"
	"sync"
)

// countCacheEntries bounds a Tokenizer's cache of counts: about 2 MB.
const countCacheEntries = 1 << 15

// minCachedText is the shortest text whose count is cached; shorter texts
// are cheap to count and would crowd the cache.
const minCachedText = 256

// countCache remembers the token counts of texts seen before. Chat clients
// resend the whole conversation, and usually the same system prompt and tool
// definitions, with every request, so most of a prompt's text was counted
// before; tokenizing costs about 0.4 µs a byte and looking up a count about
// 1 ns a byte (hashing). Texts are keyed by a 64-bit maphash with a random
// seed, so no one can craft a collision; a collision by chance only misstates
// an estimate. When full it evicts an arbitrary entry (Go's random map
// iteration order). It is safe for concurrent use; a nil cache caches nothing.
type countCache struct {
	seed maphash.Seed
	max  int

	mu sync.Mutex
	m  map[countKey]countEntry // guarded by mu
}

type countKey struct {
	hash uint64
	n    int   // the text's length, a second check against collisions
	kind uint8 // the encoding, and whether the text is raw JSON
}

// countEntry is a text's count: the tokens of its first size bytes, counted
// exactly, and the length of the rest, which did not fit in the budget of the
// count that first saw it and is estimated.
type countEntry struct {
	tokens int64
	size   int
	rest   int
}

// kindJSON marks keys of raw JSON strings, which count their decoded text.
const kindJSON = 0x80

func newCountCache(max int) *countCache {
	return &countCache{seed: maphash.MakeSeed(), max: max, m: make(map[countKey]countEntry)}
}

// lookupString looks up the count of text in encoding enc; key is for put.
func (c *countCache) lookupString(enc uint8, text string) (key countKey, e countEntry, ok bool) {
	if c == nil || len(text) < minCachedText {
		return countKey{}, countEntry{}, false
	}
	key = countKey{hash: maphash.String(c.seed, text), n: len(text), kind: enc}
	return key, e, c.get(key, &e)
}

// lookupJSON looks up the count of the text of raw, a JSON string literal.
func (c *countCache) lookupJSON(enc uint8, raw []byte) (key countKey, e countEntry, ok bool) {
	if c == nil || len(raw) < minCachedText {
		return countKey{}, countEntry{}, false
	}
	key = countKey{hash: maphash.Bytes(c.seed, raw), n: len(raw), kind: enc | kindJSON}
	return key, e, c.get(key, &e)
}

func (c *countCache) get(key countKey, e *countEntry) (ok bool) {
	c.mu.Lock()
	*e, ok = c.m[key]
	c.mu.Unlock()
	return ok
}

// put remembers a count; a zero key (text too short to cache) is ignored.
func (c *countCache) put(key countKey, e countEntry) {
	if c == nil || key == (countKey{}) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[key] = e
}
