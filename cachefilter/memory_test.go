package cachefilter_test

import (
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cachefilter"
	"github.com/llm-proxy/llm-proxy/cachefilter/cachetest"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemory(t *testing.T) {
	t.Parallel()
	cachetest.Run(t, func(t *testing.T, maxEntryBytes int) cachetest.Harness {
		const maxBytes = 1 << 20
		clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		return cachetest.Harness{
			Cache:    cachefilter.NewMemory(cachefilter.Options{MaxBytes: maxBytes, MaxEntryBytes: maxEntryBytes, Now: clk.Now}),
			Advance:  clk.Advance,
			Now:      clk.Now,
			MaxBytes: maxBytes,
		}
	})
}
