package authz

import "time"

// negativeCache remembers token hashes the store does not know, so a token
// repeated within ttl costs no store query. Every entry lives equally long,
// so insertion order is expiry order, and a ring of insertions both bounds
// the cache (the oldest entry goes first) and needs no sweeping: an expired
// entry is ignored by has and overwritten in time. It is not safe for
// concurrent use: the Authorizer's mu guards it.
type negativeCache struct {
	ttl   time.Duration // ≤ 0: the cache remembers nothing
	size  int
	until map[string]time.Time // by hash: when the entry expires
	ring  []negativeEntry      // insertions, oldest at head once full
	head  int                  // the oldest insertion, once len(ring) == size
}

type negativeEntry struct {
	hash  string
	until time.Time
}

func newNegativeCache(ttl time.Duration, size int) *negativeCache {
	return &negativeCache{ttl: ttl, size: size, until: make(map[string]time.Time)}
}

// has reports whether hash is remembered as unknown at now.
func (n *negativeCache) has(hash string, now time.Time) bool {
	until, ok := n.until[hash]
	return ok && now.Before(until)
}

// add remembers hash as unknown from now, forgetting the oldest entry if the
// cache is full.
func (n *negativeCache) add(hash string, now time.Time) {
	if n.ttl <= 0 {
		return
	}
	e := negativeEntry{hash: hash, until: now.Add(n.ttl)}
	if len(n.ring) < n.size {
		n.ring = append(n.ring, e)
	} else {
		old := n.ring[n.head]
		// The hash may have been added again since (two loads racing, or
		// after it expired): then the map entry is the later insertion's
		// (at worst one with the same expiry goes early: an extra query).
		if until, ok := n.until[old.hash]; ok && until.Equal(old.until) {
			delete(n.until, old.hash)
		}
		n.ring[n.head] = e
		n.head = (n.head + 1) % n.size
	}
	n.until[hash] = e.until
}

// clear forgets every entry.
func (n *negativeCache) clear() {
	clear(n.until)
	clear(n.ring) // drop the strings for the collector
	n.ring, n.head = n.ring[:0], 0
}
