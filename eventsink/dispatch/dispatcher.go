package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
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
