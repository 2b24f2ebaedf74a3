package cachefilter

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"
)

// memKey scopes a key to its project; no key of one project can name an
// entry of another.
type memKey struct{ project, key string }

// memory keeps entries in an otter cache bounded by bytes.
type memory struct {
	c *otter.Cache[memKey, *Entry]
}

// NewMemory returns a Cache held in this process, bounded by o.MaxBytes.
// Beyond it, otter evicts the entries least likely to be used again
// (W-TinyLFU), and each entry expires at the end of its TTL. One entry may
// take at most a quarter of MaxBytes, whatever o.MaxEntryBytes says. o's
// Redis-only fields are ignored.
//
// The cache starts no goroutine: maintenance (eviction, removal of expired
// entries) runs on the calling goroutines.
func NewMemory(o Options) *Cache {
	maxBytes := o.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	m := &memory{}
	c := newCache(m, o)
	now := c.now
	c.maxEntry = int(min(int64(c.maxEntry), maxBytes/4))
	oc, err := otter.New(&otter.Options[memKey, *Entry]{
		MaximumWeight: uint64(maxBytes),
		Weigher: func(k memKey, e *Entry) uint32 {
			return uint32(min(e.size()+len(k.project)+len(k.key), math.MaxUint32))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[memKey, *Entry]) time.Duration {
			return e.Value.Remaining(now())
		}),
		Clock:    clock{now},
		Executor: func(fn func()) { fn() },
	})
	if err != nil {
		panic("cachefilter: otter options: " + err.Error()) // static options: a programming error
	}
	m.c = oc
	return c
}

// clock gives otter the cache's time and no ticks, so otter runs no
// background goroutine.
type clock struct{ now func() time.Time }

func (c clock) NowNano() int64                    { return c.now().UnixNano() }
func (clock) Tick(time.Duration) <-chan time.Time { return nil }

func (m *memory) get(_ context.Context, project, key string) (*Entry, error) {
	e, _ := m.c.GetIfPresent(memKey{project, key})
	return e, nil
}

func (m *memory) set(_ context.Context, project, key string, e *Entry, _ time.Duration) error {
	m.c.Set(memKey{project, key}, e)
	return nil
}

func (m *memory) del(_ context.Context, project, key string) (int, error) {
	if _, ok := m.c.Invalidate(memKey{project, key}); ok {
		return 1, nil
	}
	return 0, nil
}

func (m *memory) delProject(_ context.Context, project string) (int, error) {
	return m.delWhere(func(k memKey, _ *Entry) bool { return k.project == project }), nil
}

func (m *memory) delAll(context.Context) (int, error) {
	return m.delWhere(func(memKey, *Entry) bool { return true }), nil
}

// delPrefix finds entries by the path each keeps; project "" matches every
// project.
func (m *memory) delPrefix(_ context.Context, project, prefix string) (int, error) {
	return m.delWhere(func(k memKey, e *Entry) bool {
		return (project == "" || k.project == project) && strings.HasPrefix(e.Path, prefix)
	}), nil
}

func (m *memory) delWhere(match func(memKey, *Entry) bool) int {
	var keys []memKey
	for k, e := range m.c.All() {
		if match(k, e) {
			keys = append(keys, k)
		}
	}
	n := 0
	for _, k := range keys {
		if _, ok := m.c.Invalidate(k); ok {
			n++
		}
	}
	return n
}
