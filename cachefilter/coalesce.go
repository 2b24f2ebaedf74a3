package cachefilter

import (
	"context"
	"sync"
	"time"
)

// flightKey names a fill in progress.
type flightKey struct{ project, key string }

// flight is a fill in progress: done is closed when its leader releases.
type flight struct{ done chan struct{} }

// lockPoll is how often a replica that lost the cross-replica lock looks for
// the winner's fill.
const lockPoll = 25 * time.Millisecond

func noop() {}

// Acquire coalesces identical misses, so that they go upstream once. Call it
// after a miss of [Cache.Get] (it looks the key up again itself). Exactly one
// of the concurrent callers for projectID and key becomes the leader:
// leader is true, entry nil, and the leader must go upstream, [Cache.Set]
// the response if it may be stored, and then call release — also when it
// fails or stores nothing. The others wait up to wait for the leader's
// release: if an entry was stored by then they get it (leader false, entry
// set: answer it as a hit); else they too get leader true and go upstream,
// as does every caller whose ctx ends while waiting.
//
// A caller that arrives after a fill landed gets the entry at once. release
// is never nil, may be called more than once, and must be called by every
// caller that got leader true.
//
// Coalescing is within this process. With [Options].LockTTL a Redis cache
// coalesces across replicas too: a leader that finds another replica's lock
// polls for that fill for up to wait before going upstream itself.
func (c *Cache) Acquire(ctx context.Context, projectID, key string, wait time.Duration) (leader bool, entry *Entry, release func()) {
	fk := flightKey{projectID, key}
	c.mu.Lock()
	f, busy := c.flights[fk]
	if !busy {
		f = &flight{done: make(chan struct{})}
		c.flights[fk] = f
	}
	c.mu.Unlock()
	if busy {
		return c.follow(ctx, projectID, key, f.done, wait)
	}

	var once sync.Once
	unlock := noop
	release = func() {
		once.Do(func() {
			unlock()
			c.mu.Lock()
			delete(c.flights, fk)
			c.mu.Unlock()
			close(f.done)
		})
	}
	// A fill may have landed between the caller's Get and now.
	if e := c.peek(ctx, projectID, key); e != nil {
		release()
		return false, e, noop
	}
	lk, ok := c.b.(locker)
	if !ok || c.lockTTL <= 0 {
		return true, nil, release
	}
	won, ul, err := lk.lock(ctx, projectID, key, c.lockTTL)
	switch {
	case err != nil:
		c.m.backendError()
		return true, nil, release // fail open: go upstream
	case won:
		unlock = ul
		return true, nil, release
	}
	// Another replica is filling: look for its entry until wait is over.
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(lockPoll)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if e := c.peek(ctx, projectID, key); e != nil {
				c.m.coalesce()
				release() // local followers find it too
				return false, e, noop
			}
			continue
		case <-deadline.C:
		case <-ctx.Done():
		}
		return true, nil, release
	}
}

// follow waits for the leader of a flight.
func (c *Cache) follow(ctx context.Context, projectID, key string, done <-chan struct{}, wait time.Duration) (bool, *Entry, func()) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		if e := c.peek(ctx, projectID, key); e != nil {
			c.m.coalesce()
			return false, e, noop
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return true, nil, noop
}

// peek is Get without counting a lookup: the fresh entry or nil. A backend
// error counts as one and reads as nil.
func (c *Cache) peek(ctx context.Context, projectID, key string) *Entry {
	if projectID == "" {
		return nil
	}
	e, err := c.b.get(ctx, projectID, key)
	if err != nil {
		c.m.backendError()
		return nil
	}
	if e == nil || e.Remaining(c.now()) <= 0 {
		return nil
	}
	return e
}

// InFlight reports whether a leader in this process is filling projectID's
// key right now, i.e. whether [Cache.Acquire] would make the caller wait. The
// ext_proc server asks Envoy for a longer message timeout before such a wait.
func (c *Cache) InFlight(projectID, key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, busy := c.flights[flightKey{projectID, key}]
	return busy
}
