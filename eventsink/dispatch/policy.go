package dispatch

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fields a dead-letter entry carries besides the original entry's fields.
const (
	DeadFieldError    = "error"     // the last error of each backend that did not accept the entry
	DeadFieldBackends = "backends"  // comma-separated names of those backends
	DeadFieldAttempts = "attempts"  // times the entry was delivered (XPENDING's count)
	DeadFieldSourceID = "source_id" // the entry's id in the source stream
	DeadFieldTime     = "dead_at"   // when it was dead-lettered, RFC 3339
)

// triage sorts the items after a delivery round into the stream ids of
// those every backend accepted (to acknowledge), those with no retry left
// (a backend refused them for good, or MaxAttempts is spent: to
// dead-letter), and the rest, to retry no sooner than wait, the longest
// delay a receiver asked for.
func (d *Dispatcher) triage(items []*item) (ack []string, dead, rest []*item, wait time.Duration) {
	for _, it := range items {
		switch {
		case it.allAccepted():
			ack = append(ack, it.streamID)
		case it.settled() || it.attempts >= int64(d.o.MaxAttempts):
			dead = append(dead, it)
		default:
			rest = append(rest, it)
			for _, err := range it.errs {
				wait = max(wait, retryAfter(err))
			}
		}
	}
	return ack, dead, rest, wait
}

// dropExhausted splits off the items Redis has already delivered more than
// MaxAttempts times (claimed entries other consumers kept failing), marked
// to go to the dead-letter stream without another delivery.
func (d *Dispatcher) dropExhausted(items []*item) (keep, exhausted []*item) {
	keep = items[:0]
	for _, it := range items {
		if it.attempts > int64(d.o.MaxAttempts) {
			it.fatal = fmt.Errorf("delivered %d times without being acknowledged", it.attempts)
			exhausted = append(exhausted, it)
			continue
		}
		keep = append(keep, it)
	}
	return keep, exhausted
}

// retryDelay is the wait before the retry that follows round: the backoff,
// or longer when a receiver asked for it (wait), but never over MaxBackoff.
func (d *Dispatcher) retryDelay(round int, wait time.Duration) time.Duration {
	return min(max(d.backoff(round), wait), d.o.MaxBackoff)
}

// backoff is the wait after the attempt-th failure in a row: MinBackoff
// doubled per earlier failure, at most MaxBackoff, with jitter.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	max := d.o.MaxBackoff
	b := d.o.MinBackoff
	for i := 1; i < attempt && b < max; i++ {
		b *= 2
	}
	if b > max || b <= 0 {
		b = max
	}
	// Equal jitter: somewhere in [b/2, b].
	half := b / 2
	var j int64
	if d.o.Rand != nil {
		j = d.o.Rand.Int64N(int64(b-half) + 1)
	} else {
		j = mrand.Int64N(int64(b-half) + 1)
	}
	return half + time.Duration(j)
}

// sleep waits for dur or until ctx ends, and reports whether it waited it out.
func (d *Dispatcher) sleep(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reclaim starts a new attempt: it claims the entries again for this
// consumer (XCLAIM, which counts a delivery) and reads their counts. Entries
// no longer pending (acknowledged elsewhere, or trimmed) are dropped.
func (d *Dispatcher) reclaim(ctx context.Context, items []*item) []*item {
	rctx, cancel := d.redisContext(ctx)
	defer cancel()
	msgs, err := d.rdb.XClaim(rctx, &redis.XClaimArgs{
		Stream: d.o.Stream, Group: d.o.Group, Consumer: d.o.Consumer, Messages: streamIDs(items),
	}).Result()
	if err != nil {
		d.log.Warn().Err(err).Msg("claim entries for retry")
		for _, it := range items {
			it.attempts++
		}
		return items
	}
	still := map[string]bool{}
	for _, m := range msgs {
		if m.Values != nil {
			still[m.ID] = true
		}
	}
	keep := items[:0]
	for _, it := range items {
		if still[it.streamID] {
			keep = append(keep, it)
			continue
		}
		d.log.Warn().Str("stream_id", it.streamID).Str("event_id", it.entry.ID).
			Msg("entry is no longer pending (acknowledged by another consumer, or trimmed); dropping it")
	}
	items, ok := d.refreshCounts(ctx, keep)
	if !ok {
		// The claim counted a delivery; count it here too, so a Redis
		// that cannot answer XPENDING still cannot retry an entry forever.
		for _, it := range items {
			it.attempts++
		}
	}
	return items
}

// refreshCounts reads the delivery count of each item from XPENDING. Items
// not pending on this consumer are dropped. On a Redis error the items are
// returned unchanged with ok false.
func (d *Dispatcher) refreshCounts(ctx context.Context, items []*item) ([]*item, bool) {
	if len(items) == 0 {
		return items, true
	}
	rctx, cancel := d.redisContext(ctx)
	defer cancel()
	want := map[string]*item{}
	lo, hi := items[0].streamID, items[0].streamID
	for _, it := range items {
		want[it.streamID] = it
		if lessID(it.streamID, lo) {
			lo = it.streamID
		}
		if lessID(hi, it.streamID) {
			hi = it.streamID
		}
	}
	found := map[string]bool{}
	start := lo
	count := int64(len(items))
	for {
		res, err := d.rdb.XPendingExt(rctx, &redis.XPendingExtArgs{
			Stream: d.o.Stream, Group: d.o.Group, Start: start, End: hi, Count: count, Consumer: d.o.Consumer,
		}).Result()
		if err != nil {
			d.log.Warn().Err(err).Msg("read delivery counts")
			return items, false
		}
		for _, p := range res {
			if it, ok := want[p.ID]; ok {
				it.attempts = p.RetryCount
				found[p.ID] = true
			}
		}
		if int64(len(res)) < count || len(found) == len(want) {
			break
		}
		start = "(" + res[len(res)-1].ID
	}
	keep := items[:0]
	for _, it := range items {
		if found[it.streamID] {
			keep = append(keep, it)
		}
	}
	return keep, true
}

// lessID orders stream ids ("<ms>-<seq>").
func lessID(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if am != bm {
		return am < bm
	}
	return as < bs
}

func splitID(id string) (ms, seq uint64) {
	l, r, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(l, 10, 64)
	seq, _ = strconv.ParseUint(r, 10, 64)
	return ms, seq
}

// failure describes why the entry is dead-lettered, for the dead-letter
// entry and the log.
func (it *item) failure(names []string) (backends []string, msg string) {
	if it.fatal != nil {
		return names, it.fatal.Error()
	}
	var parts []string
	for b, ok := range it.accepted {
		if ok {
			continue
		}
		backends = append(backends, names[b])
		err := it.errs[b]
		if err == nil {
			err = errors.New("not delivered")
		}
		parts = append(parts, names[b]+": "+err.Error())
	}
	return backends, strings.Join(parts, "; ")
}

// deadLetter copies the items to the dead-letter stream, then acknowledges
// those copied. An item whose copy failed stays pending.
func (d *Dispatcher) deadLetter(ctx context.Context, items []*item) {
	if len(items) == 0 {
		return
	}
	rctx, cancel := d.redisContext(ctx)
	defer cancel()
	names := d.backendNames()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(items))
	for i, it := range items {
		backends, msg := it.failure(names)
		vals := make(map[string]any, len(it.values)+5)
		for k, v := range it.values {
			vals[k] = v
		}
		vals[DeadFieldError] = msg
		vals[DeadFieldBackends] = strings.Join(backends, ",")
		vals[DeadFieldAttempts] = it.attempts
		vals[DeadFieldSourceID] = it.streamID
		vals[DeadFieldTime] = now
		cmds[i] = pipe.XAdd(rctx, &redis.XAddArgs{Stream: d.o.DeadLetterStream, Values: vals})
		d.log.Error().Str("stream_id", it.streamID).Str("event_id", it.entry.ID).Int64("attempts", it.attempts).
			Strs("backends", backends).Str("error", msg).Str("dead_letter_stream", d.o.DeadLetterStream).
			Msg("entry could not be delivered; dead-lettering it")
	}
	_, _ = pipe.Exec(rctx)
	var ack []string
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			d.log.Error().Err(err).Str("stream_id", items[i].streamID).Msg("copy to dead-letter stream failed; entry stays pending")
			continue
		}
		ack = append(ack, items[i].streamID)
	}
	if n := d.ack(ctx, ack); n > 0 {
		d.dead.Add(n)
	}
}
