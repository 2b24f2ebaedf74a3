package eventsink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

// usageStore is where the roll-up lands.
type usageStore interface {
	AddUsage(ctx context.Context, rows []store.UsageRecord) error
}

// Rollup sums settled requests per project, day, model and price-table
// version in memory and adds the sums to the store in one transaction per
// flush, so the request path never writes to the database. Record never
// blocks on I/O: it only updates a map entry.
//
// A failed flush keeps its sums for the next one; a crash loses what was
// recorded since the last successful flush (at most one interval).
type Rollup struct {
	store usageStore

	mu      sync.Mutex
	pending map[rollupKey]*store.UsageRecord // guarded by mu
}

type rollupKey struct{ project, day, model, version string }

// NewRollup returns a Rollup writing to s.
func NewRollup(s usageStore) *Rollup {
	return &Rollup{store: s, pending: make(map[rollupKey]*store.UsageRecord)}
}

// Record adds one request's usage. at decides the (UTC) day.
func (r *Rollup) Record(at time.Time, rec store.UsageRecord) {
	rec.Day = at.UTC().Format(time.DateOnly)
	k := rollupKey{rec.ProjectID, rec.Day, rec.Model, rec.PriceVersion}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pending[k]; ok {
		p.Add(rec)
		return
	}
	r.pending[k] = &rec
}

// Pending returns the unflushed cost of a project since the given day
// (inclusive), so budget checks can count what the store does not have yet.
func (r *Rollup) Pending(projectID, fromDay string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cost int64
	for k, v := range r.pending {
		if k.project == projectID && k.day >= fromDay {
			cost += v.CostMicroUSD
		}
	}
	return cost
}

// Flush writes the sums recorded since the last flush.
func (r *Rollup) Flush(ctx context.Context) error {
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.mu.Unlock()
		return nil
	}
	batch := make([]store.UsageRecord, 0, len(r.pending))
	for _, v := range r.pending {
		batch = append(batch, *v)
	}
	clear(r.pending)
	r.mu.Unlock()

	if err := r.store.AddUsage(ctx, batch); err != nil {
		r.mu.Lock()
		for _, rec := range batch {
			k := rollupKey{rec.ProjectID, rec.Day, rec.Model, rec.PriceVersion}
			if p, ok := r.pending[k]; ok {
				p.Add(rec)
			} else {
				r.pending[k] = &rec
			}
		}
		r.mu.Unlock()
		return fmt.Errorf("flush usage roll-up: %w", err)
	}
	return nil
}
