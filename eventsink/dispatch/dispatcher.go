package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Defaults of [Options].
const (
	DefaultGroup          = "dispatch"
	DefaultBatchSize      = 100
	DefaultBlock          = time.Second
	DefaultMaxAttempts    = 10
	DefaultClaimIdle      = 60 * time.Second
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultStopTimeout    = 5 * time.Second
	DefaultConsumerExpiry = time.Hour

	// DeadLetterSuffix is appended to the stream name to name the
	// dead-letter stream when [Options.DeadLetterStream] is empty.
	DeadLetterSuffix = ":dead"
)

// Fields a dead-letter entry carries besides the original entry's fields.
const (
	DeadFieldError    = "error"     // the last error of each backend that did not accept the entry
	DeadFieldBackends = "backends"  // comma-separated names of those backends
	DeadFieldAttempts = "attempts"  // times the entry was delivered (XPENDING's count)
	DeadFieldSourceID = "source_id" // the entry's id in the source stream
	DeadFieldTime     = "dead_at"   // when it was dead-lettered, RFC 3339
)

// Options configure a [Dispatcher]. Zero values take the defaults above.
type Options struct {
	// Stream is the Redis Stream the events are read from (required).
	Stream string
	// Group is the consumer group (default [DefaultGroup]); it is created,
	// with the stream, at the stream's start when missing.
	Group string
	// Consumer names this dispatcher in the group. Default: host name,
	// process id and a random suffix, so each process is a new consumer and
	// a restarted dispatcher claims its predecessor's entries like any other.
	Consumer string
	// DeadLetterStream receives entries that could not be delivered
	// (default Stream + [DeadLetterSuffix]). It is never trimmed.
	DeadLetterStream string
	// Backends receive every entry (at least one; names must differ).
	Backends []Backend

	// BatchSize is the most entries read (and delivered) at once.
	BatchSize int
	// Block is how long a read waits for new entries; it also bounds how
	// long a stop waits for a read in flight.
	Block time.Duration
	// MaxAttempts is how many deliveries an entry gets before it is
	// dead-lettered.
	MaxAttempts int
	// ClaimIdle is how long an entry must sit unacknowledged on another
	// consumer before this one claims it.
	ClaimIdle time.Duration
	// ClaimInterval is how often pending entries are looked for (default
	// ClaimIdle/2).
	ClaimInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts: it doubles
	// from MinBackoff per attempt, up to MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// StopTimeout is how long a delivery in flight may go on after the
	// context of [Dispatcher.Run] ends; it also bounds the acknowledgements
	// that follow it.
	StopTimeout time.Duration
	// ConsumerExpiry is how long a consumer with nothing pending must have
	// been idle before it is removed from the group (negative: never). Each
	// process is a new consumer, so without this the group would collect
	// the names of every past process.
	ConsumerExpiry time.Duration

	// Logger receives the dispatcher's logs.
	Logger zerolog.Logger
	// Rand draws the backoff jitter (nil: math/rand/v2's global source). It
	// is used by Run's goroutine only.
	Rand *mrand.Rand
}

// Stats counts what a [Dispatcher] did.
type Stats struct {
	// Delivered counts entries every backend accepted, acknowledged.
	Delivered int64
	// DeadLettered counts entries copied to the dead-letter stream.
	DeadLettered int64
	// Claimed counts entries taken over from idle consumers.
	Claimed int64
	// Retries counts delivery rounds after the first one of a batch.
	Retries int64
}

// Dispatcher reads a Redis Stream through a consumer group and delivers each
// entry to every backend; see the package documentation for the contract.
type Dispatcher struct {
	rdb redis.UniversalClient
	o   Options
	log zerolog.Logger

	delivered, dead, claimed, retries atomic.Int64
}

// New checks the options, applies the defaults and returns a dispatcher. It
// does not touch Redis; [Dispatcher.Run] does.
func New(rdb redis.UniversalClient, o Options) (*Dispatcher, error) {
	if rdb == nil {
		return nil, errors.New("dispatch: nil redis client")
	}
	if o.Stream == "" {
		return nil, errors.New("dispatch: no stream")
	}
	if len(o.Backends) == 0 {
		return nil, errors.New("dispatch: no backends")
	}
	seen := map[string]bool{}
	for _, b := range o.Backends {
		if seen[b.Name()] {
			return nil, fmt.Errorf("dispatch: two backends named %q", b.Name())
		}
		seen[b.Name()] = true
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Consumer == "" {
		o.Consumer = consumerName()
	}
	if o.DeadLetterStream == "" {
		o.DeadLetterStream = o.Stream + DeadLetterSuffix
	}
	if o.DeadLetterStream == o.Stream {
		return nil, errors.New("dispatch: the dead-letter stream is the stream itself")
	}
	setDefault(&o.BatchSize, DefaultBatchSize)
	setDefault(&o.Block, DefaultBlock)
	setDefault(&o.MaxAttempts, DefaultMaxAttempts)
	setDefault(&o.ClaimIdle, DefaultClaimIdle)
	setDefault(&o.ClaimInterval, o.ClaimIdle/2)
	setDefault(&o.MinBackoff, DefaultMinBackoff)
	setDefault(&o.MaxBackoff, DefaultMaxBackoff)
	setDefault(&o.StopTimeout, DefaultStopTimeout)
	if o.ConsumerExpiry == 0 {
		o.ConsumerExpiry = DefaultConsumerExpiry
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Block < time.Millisecond {
		// BLOCK 0 would wait forever and never see the context end.
		o.Block = time.Millisecond
	}
	return &Dispatcher{
		rdb: rdb,
		o:   o,
		log: o.Logger.With().Str("stream", o.Stream).Str("group", o.Group).Str("consumer", o.Consumer).Logger(),
	}, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func consumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "dispatch"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Consumer returns the dispatcher's consumer name in the group.
func (d *Dispatcher) Consumer() string { return d.o.Consumer }

// Stats returns the counts so far. It is safe to call while Run runs.
func (d *Dispatcher) Stats() Stats {
	return Stats{
		Delivered:    d.delivered.Load(),
		DeadLettered: d.dead.Load(),
		Claimed:      d.claimed.Load(),
		Retries:      d.retries.Load(),
	}
}

// Run delivers until ctx ends, then stops as the package documentation
// describes and returns nil. Redis failures are logged and retried, not
// returned. Run must be called at most once.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.log.Info().Strs("backends", d.backendNames()).Int("batch", d.o.BatchSize).
		Int("max_attempts", d.o.MaxAttempts).Dur("claim_idle", d.o.ClaimIdle).Msg("dispatcher started")
	failures := 0
	for ctx.Err() == nil {
		err := d.ensureGroup(ctx)
		if err == nil {
			break
		}
		failures++
		d.log.Warn().Err(err).Msg("create consumer group")
		d.sleep(ctx, d.backoff(failures))
	}

	failures = 0
	var nextClaim time.Time // zero: look for abandoned entries at once
	for ctx.Err() == nil {
		if !time.Now().Before(nextClaim) {
			d.claimPass(ctx)
			nextClaim = time.Now().Add(d.o.ClaimInterval)
			continue
		}
		msgs, err := d.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			d.log.Warn().Err(err).Msg("read stream")
			if isNoGroup(err) {
				_ = d.ensureGroup(ctx)
			}
			d.sleep(ctx, d.backoff(failures))
			continue
		}
		failures = 0
		if len(msgs) > 0 {
			d.process(ctx, msgs, false)
		}
	}
	d.leave(ctx)
	s := d.Stats()
	d.log.Info().Int64("delivered", s.Delivered).Int64("dead_lettered", s.DeadLettered).
		Int64("claimed", s.Claimed).Int64("retries", s.Retries).Msg("dispatcher stopped")
	return nil
}

func (d *Dispatcher) backendNames() []string {
	names := make([]string, len(d.o.Backends))
	for i, b := range d.o.Backends {
		names[i] = b.Name()
	}
	return names
}

// ensureGroup creates the group at the stream's start ("0", not "$": events
// written before the first dispatcher ran are delivered too).
func (d *Dispatcher) ensureGroup(ctx context.Context) error {
	err := d.rdb.XGroupCreateMkStream(ctx, d.o.Stream, d.o.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return err
	}
	return nil
}

func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}

func (d *Dispatcher) read(ctx context.Context) ([]redis.XMessage, error) {
	res, err := d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    d.o.Group,
		Consumer: d.o.Consumer,
		Streams:  []string{d.o.Stream, ">"},
		Count:    int64(d.o.BatchSize),
		Block:    d.o.Block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res[0].Messages, nil
}

// claimPass takes over entries idle on any consumer for ClaimIdle and
// delivers them, a batch at a time, then drops long-idle empty consumers.
func (d *Dispatcher) claimPass(ctx context.Context) {
	start := "0-0"
	for ctx.Err() == nil {
		msgs, next, err := d.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream:   d.o.Stream,
			Group:    d.o.Group,
			Consumer: d.o.Consumer,
			MinIdle:  d.o.ClaimIdle,
			Start:    start,
			Count:    int64(d.o.BatchSize),
		}).Result()
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn().Err(err).Msg("claim idle entries")
				if isNoGroup(err) {
					_ = d.ensureGroup(ctx)
				}
			}
			return
		}
		if len(msgs) > 0 {
			d.claimed.Add(int64(len(msgs)))
			d.log.Info().Int("entries", len(msgs)).Dur("min_idle", d.o.ClaimIdle).Msg("claimed entries left pending by another consumer")
			d.process(ctx, msgs, true)
		}
		if next == "" || next == "0-0" {
			break
		}
		start = next
	}
	d.expireConsumers(ctx)
}

func (d *Dispatcher) expireConsumers(ctx context.Context) {
	if d.o.ConsumerExpiry < 0 || ctx.Err() != nil {
		return
	}
	cs, err := d.rdb.XInfoConsumers(ctx, d.o.Stream, d.o.Group).Result()
	if err != nil {
		d.log.Debug().Err(err).Msg("list consumers")
		return
	}
	for _, c := range cs {
		if c.Name == d.o.Consumer || c.Pending > 0 || c.Idle < d.o.ConsumerExpiry {
			continue
		}
		if err := d.rdb.XGroupDelConsumer(ctx, d.o.Stream, d.o.Group, c.Name).Err(); err != nil {
			d.log.Debug().Err(err).Str("old_consumer", c.Name).Msg("remove idle consumer")
			continue
		}
		d.log.Info().Str("old_consumer", c.Name).Dur("idle", c.Idle).Msg("removed idle consumer with nothing pending")
	}
}

// leave removes this consumer from the group when it has nothing pending,
// so stopped processes do not pile up in XINFO CONSUMERS.
func (d *Dispatcher) leave(ctx context.Context) {
	rctx, cancel := d.redisContext(ctx)
	defer cancel()
	pend, err := d.rdb.XPendingExt(rctx, &redis.XPendingExtArgs{
		Stream: d.o.Stream, Group: d.o.Group, Start: "-", End: "+", Count: 1, Consumer: d.o.Consumer,
	}).Result()
	if err != nil || len(pend) > 0 {
		if len(pend) > 0 {
			d.log.Info().Msg("leaving entries pending for another dispatcher to claim")
		}
		return
	}
	_ = d.rdb.XGroupDelConsumer(rctx, d.o.Stream, d.o.Group, d.o.Consumer).Err()
}

// redisContext bounds the Redis calls that must happen even when ctx has
// ended: acknowledging what was delivered, dead-lettering.
func (d *Dispatcher) redisContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d.o.StopTimeout)
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

// sleep waits for d or until ctx ends, and reports whether it waited it out.
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
	nb := len(d.o.Backends)
	var items, fatal []*item
	var gone []string
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
		keep := items[:0]
		for _, it := range items {
			if it.attempts > int64(d.o.MaxAttempts) {
				it.fatal = fmt.Errorf("delivered %d times without being acknowledged", it.attempts)
				fatal = append(fatal, it)
				continue
			}
			keep = append(keep, it)
		}
		items = keep
	}
	d.deadLetter(ctx, fatal)
	if len(items) == 0 {
		return
	}

	stopLease := d.lease(ctx, streamIDs(items))
	defer stopLease()

	for round := 1; ; round++ {
		d.deliverRound(ctx, items)

		var ack []string
		var dead, rest []*item
		var wait time.Duration
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
		delay := min(max(d.backoff(round), wait), d.o.MaxBackoff)
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

func streamIDs(items []*item) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.streamID
	}
	return ids
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
