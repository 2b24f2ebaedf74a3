package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// item is one entry being delivered.
type item struct {
	streamID string
	values   map[string]any
	entry    Entry
	attempts int64 // deliveries so far, as Redis counts them

	// Per backend, indexed like Options.Backends. Each delivery goroutine
	// writes only its own backend's element.
	accepted  []bool
	permanent []bool
	errs      []error

	// fatal, when set, sends the entry to the dead-letter stream without
	// delivering it (malformed, or delivered too often).
	fatal error
}

func (it *item) pending(b int) bool { return !it.accepted[b] && !it.permanent[b] }

func (it *item) allAccepted() bool {
	for _, ok := range it.accepted {
		if !ok {
			return false
		}
	}
	return true
}

// settled reports whether no backend is left to retry.
func (it *item) settled() bool {
	for b := range it.accepted {
		if it.pending(b) {
			return false
		}
	}
	return true
}

// parseMessage reads the event id and JSON from a stream entry.
func parseMessage(m redis.XMessage) (Entry, error) {
	ev, _ := m.Values["event"].(string)
	if ev == "" {
		return Entry{}, errors.New(`entry has no "event" field`)
	}
	if !json.Valid([]byte(ev)) {
		return Entry{}, errors.New(`entry's "event" field is not JSON`)
	}
	id, _ := m.Values["id"].(string)
	if id == "" {
		var probe struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal([]byte(ev), &probe)
		id = probe.ID
	}
	if id == "" {
		return Entry{}, errors.New("entry has no event id")
	}
	return Entry{ID: id, JSON: []byte(ev)}, nil
}

// process delivers one batch until every entry is acknowledged,
// dead-lettered, or left pending because ctx ended. claimed batches came
// from XAUTOCLAIM, so their delivery counts are read from Redis first.
func (d *Dispatcher) process(ctx context.Context, msgs []redis.XMessage, claimed bool) {
	items, fatal, gone := d.newItems(msgs)
	if len(gone) > 0 {
		d.log.Warn().Int("entries", len(gone)).Msg("pending entries were deleted from the stream before delivery")
		d.ack(ctx, gone)
	}
	if claimed && len(items) > 0 {
		var ok bool
		if items, ok = d.refreshCounts(ctx, items); !ok {
			// Still ours and pending: the next claim pass retries them.
			d.deadLetter(ctx, fatal)
			return
		}
		var exhausted []*item
		items, exhausted = d.dropExhausted(items)
		fatal = append(fatal, exhausted...)
	}
	d.deadLetter(ctx, fatal)
	if len(items) == 0 {
		return
	}

	stopLease := d.lease(ctx, streamIDs(items))
	defer stopLease()

	for round := 1; ; round++ {
		d.deliverRound(ctx, items)

		ack, dead, rest, wait := d.triage(items)
		if n := d.ack(ctx, ack); n > 0 {
			d.delivered.Add(n)
		}
		d.deadLetter(ctx, dead)
		items = rest
		if len(items) == 0 {
			return
		}
		if ctx.Err() != nil {
			d.log.Info().Int("entries", len(items)).Msg("stopping: undelivered entries stay pending")
			return
		}
		delay := d.retryDelay(round, wait)
		d.log.Warn().Int("entries", len(items)).Int64("attempts", items[0].attempts).
			Dur("retry_in", delay).Msg("delivery failed; retrying")
		if !d.sleep(ctx, delay) {
			d.log.Info().Int("entries", len(items)).Msg("stopping: undelivered entries stay pending")
			return
		}
		d.retries.Add(1)
		items = d.reclaim(ctx, items)
		if len(items) == 0 {
			return
		}
	}
}

// newItems turns a batch's stream entries into items: those to deliver,
// those that cannot be delivered (fatal: malformed), and the ids of entries
// deleted from the stream while pending (gone).
func (d *Dispatcher) newItems(msgs []redis.XMessage) (items, fatal []*item, gone []string) {
	nb := len(d.o.Backends)
	for _, m := range msgs {
		if m.Values == nil {
			// Deleted from the stream (trimmed) while pending: nothing to deliver.
			gone = append(gone, m.ID)
			continue
		}
		it := &item{streamID: m.ID, values: m.Values, attempts: 1,
			accepted: make([]bool, nb), permanent: make([]bool, nb), errs: make([]error, nb)}
		it.entry, it.fatal = parseMessage(m)
		if it.fatal != nil {
			fatal = append(fatal, it)
			continue
		}
		items = append(items, it)
	}
	return items, fatal, gone
}

func streamIDs(items []*item) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.streamID
	}
	return ids
}

// deliveryContext is the context of one delivery round: it outlives ctx by
// StopTimeout, so a round in flight when the dispatcher is stopped may still
// finish and be acknowledged.
func (d *Dispatcher) deliveryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(d.o.StopTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-dctx.Done():
		}
	})
	return dctx, func() {
		stop()
		cancel()
	}
}

// deliverRound gives every backend, in parallel, the entries it has not
// accepted yet, and records the outcome per entry.
func (d *Dispatcher) deliverRound(ctx context.Context, items []*item) {
	dctx, cancel := d.deliveryContext(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for b, backend := range d.o.Backends {
		var batch []Entry
		var its []*item
		for _, it := range items {
			if it.pending(b) {
				batch = append(batch, it.entry)
				its = append(its, it)
			}
		}
		if len(batch) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := backend.Deliver(dctx, batch)
			failed := d.record(b, its, err)
			ev := d.log.Debug()
			if failed > 0 {
				ev = d.log.Warn().Err(err)
			}
			ev.Str("backend", backend.Name()).Int("entries", len(batch)).Int("failed", failed).
				Dur("took", time.Since(start)).Msg("delivered batch")
		}()
	}
	wg.Wait()
}

// record applies a Deliver result to the entries it covered and returns how
// many failed.
func (d *Dispatcher) record(b int, its []*item, err error) int {
	var be *BatchError
	batchErr := errors.As(err, &be)
	failed := 0
	for _, it := range its {
		e := err
		if batchErr {
			e = be.Failed[it.entry.ID]
		}
		if e == nil {
			it.accepted[b] = true
			it.errs[b] = nil
			continue
		}
		failed++
		it.errs[b] = e
		it.permanent[b] = IsPermanent(e)
	}
	return failed
}

// lease keeps the batch's entries from looking idle while they are being
// delivered (XCLAIM … JUSTID to ourselves resets the idle time without
// counting a delivery), until the returned func is called.
func (d *Dispatcher) lease(ctx context.Context, ids []string) (stop func()) {
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(d.o.ClaimIdle/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
				err := d.rdb.XClaimJustID(lctx, &redis.XClaimArgs{
					Stream: d.o.Stream, Group: d.o.Group, Consumer: d.o.Consumer, Messages: ids,
				}).Err()
				if err != nil && lctx.Err() == nil {
					d.log.Debug().Err(err).Msg("renew claim")
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// ack acknowledges ids and returns how many Redis acknowledged. A failure is
// logged: the entries stay pending and are delivered again once claimed.
func (d *Dispatcher) ack(ctx context.Context, ids []string) int64 {
	if len(ids) == 0 {
		return 0
	}
	rctx, cancel := d.redisContext(ctx)
	defer cancel()
	n, err := d.rdb.XAck(rctx, d.o.Stream, d.o.Group, ids...).Result()
	if err != nil {
		d.log.Error().Err(err).Int("entries", len(ids)).Msg("acknowledge delivered entries; they will be delivered again")
		return 0
	}
	return n
}
