package eventsink

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// Sink is where an [Emitter] writes events. Write stores a batch, in order;
// it is called from one goroutine at a time per emitter, must not modify the
// events or keep the slice after it returns, and should honour ctx's
// deadline. A Write that fails may have stored part of the batch: the
// emitter retries the whole batch, so consumers see events at least once and
// deduplicate by event id. Close releases what the sink holds (not a client
// it was given).
//
// A sink may also have a Name() string method: the emitter uses it as the
// sink label of its metrics and logs (otherwise "sink0", "sink1", …).
type Sink interface {
	Write(ctx context.Context, events []*llmproxyv1.UsageEvent) error
	Close() error
}

// Defaults of [EmitterOptions].
const (
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 500
	DefaultFlushInterval = time.Second
	DefaultWriteTimeout  = 5 * time.Second
	DefaultRetries       = 3
	DefaultRetryBackoff  = 200 * time.Millisecond
	DefaultDrainTimeout  = 5 * time.Second
)

// dropLogEvery is the least time between two log lines about dropped events.
const dropLogEvery = 10 * time.Second

// EmitterOptions configures an [Emitter]. Zero values take the defaults
// above.
type EmitterOptions struct {
	// Sinks receive every batch, concurrently when there are several. The
	// emitter owns them from here on: Run closes them when it returns. No
	// sinks: events are queued and discarded.
	Sinks []Sink
	// QueueSize is how many events may wait for the sinks; Emit drops what
	// does not fit.
	QueueSize int
	// BatchSize is the most events one Write receives.
	BatchSize int
	// FlushInterval is the longest an event waits for its batch to fill.
	FlushInterval time.Duration
	// WriteTimeout bounds one Write call.
	WriteTimeout time.Duration
	// Retries is how many times a failed Write is tried again (with
	// exponential backoff from RetryBackoff, jittered) before the batch is
	// dropped for that sink. Negative: never retried.
	Retries int
	// RetryBackoff is the wait before the first retry; it doubles after
	// each.
	RetryBackoff time.Duration
	// DrainTimeout bounds the work Run does after its ctx ends: writing (and
	// retrying) what is queued. What is left then is dropped.
	DrainTimeout time.Duration
	// Registerer receives the emitter's metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger receives drops and sink failures.
	Logger zerolog.Logger
	// Now is the clock (drop-log rate, missing event times); nil: time.Now.
	Now func() time.Time
}

// Emitter is the bounded, asynchronous event pipeline between the request
// path and the sinks. [Emitter.Emit] may be called from any goroutine and
// never blocks; [Emitter.Run], started once by main, writes the queue to the
// sinks.
type Emitter struct {
	queue chan *llmproxyv1.UsageEvent
	sinks []namedSink

	batchSize     int
	flushInterval time.Duration
	writeTimeout  time.Duration
	retries       int
	retryBackoff  time.Duration
	drainTimeout  time.Duration

	log     zerolog.Logger
	now     func() time.Time
	metrics *emitterMetrics

	running atomic.Bool
	stopped atomic.Bool  // set when Run has drained: Emit drops from then on
	unlog   atomic.Int64 // drops not yet logged
	lastLog atomic.Int64 // unix nanoseconds of the last drop log line
}

type namedSink struct {
	name string
	Sink
}

// NewEmitter returns an Emitter writing to o.Sinks. Nothing is written until
// [Emitter.Run] runs.
func NewEmitter(o EmitterOptions) *Emitter {
	e := &Emitter{
		queue:         make(chan *llmproxyv1.UsageEvent, orDefault(o.QueueSize, DefaultQueueSize)),
		batchSize:     orDefault(o.BatchSize, DefaultBatchSize),
		flushInterval: orDefault(o.FlushInterval, DefaultFlushInterval),
		writeTimeout:  orDefault(o.WriteTimeout, DefaultWriteTimeout),
		retries:       max(orDefault(o.Retries, DefaultRetries), 0),
		retryBackoff:  orDefault(o.RetryBackoff, DefaultRetryBackoff),
		drainTimeout:  orDefault(o.DrainTimeout, DefaultDrainTimeout),
		log:           o.Logger,
		now:           o.Now,
	}
	if e.now == nil {
		e.now = time.Now
	}
	names := make([]string, len(o.Sinks))
	for i, s := range o.Sinks {
		names[i] = sinkName(s, i)
		e.sinks = append(e.sinks, namedSink{names[i], s})
	}
	e.metrics = newEmitterMetrics(o.Registerer, func() float64 { return float64(len(e.queue)) }, names)
	return e
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func sinkName(s Sink, i int) string {
	if n, ok := s.(interface{ Name() string }); ok && n.Name() != "" {
		return n.Name()
	}
	return "sink" + strconv.Itoa(i)
}

// Emit queues ev for the sinks and returns at once. When the queue is full,
// or Run has finished, ev is dropped: counted in
// llm_proxy_events_dropped_total and logged at most once per 10 seconds with
// the number dropped since. Emit takes ev over: the caller must not modify it
// afterwards. An event without an id gets one ([NewEventID]) before it is
// written, and one without a time gets the emitter's clock at that moment (a
// fallback: the time is meant to be the request's start). A nil ev is
// ignored.
func (e *Emitter) Emit(ev *llmproxyv1.UsageEvent) {
	if ev == nil {
		return
	}
	if e.stopped.Load() {
		e.drop(1)
		return
	}
	select {
	case e.queue <- ev:
		e.metrics.emitted.Inc()
	default:
		e.drop(1)
	}
}

// drop counts n events Emit refused and logs them, at most once per
// dropLogEvery.
func (e *Emitter) drop(n int64) {
	e.metrics.dropped.Add(float64(n))
	e.unlog.Add(n)
	now := e.now().UnixNano()
	last := e.lastLog.Load()
	if last != 0 && now-last < int64(dropLogEvery) || !e.lastLog.CompareAndSwap(last, now) {
		return
	}
	e.logDrops()
}

func (e *Emitter) logDrops() {
	if n := e.unlog.Swap(0); n > 0 {
		e.log.Warn().Int64("dropped", n).Int("queue_size", cap(e.queue)).
			Msg("usage events dropped: event queue full or emitter stopped")
	}
}

// Run writes queued events to the sinks, in batches of up to BatchSize at
// least every FlushInterval, until ctx ends. It then writes what is still
// queued — including events emitted meanwhile — for up to DrainTimeout,
// closes the sinks and returns nil. Events emitted after Run returned are
// dropped, so cancel ctx only once the producers (the gRPC server) have
// stopped. A sink that fails is retried (Retries, RetryBackoff); a batch it
// still refuses is dropped for that sink only, counted in
// llm_proxy_event_sink_dropped_total and logged. Run returns an error only
// when called a second time.
func (e *Emitter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("eventsink: Emitter.Run called twice")
	}
	defer e.closeSinks()

	// Writes live until DrainTimeout after ctx ends: a write in flight at
	// shutdown, and its retries, finish within the drain budget rather than
	// being cut at once.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(e.drainTimeout, cancel) })
	defer stop()

	tick := time.NewTicker(e.flushInterval)
	defer tick.Stop()
	batch := make([]*llmproxyv1.UsageEvent, 0, e.batchSize)
	for {
		select {
		case ev := <-e.queue:
			batch = append(batch, ev)
			if len(batch) < e.batchSize {
				continue
			}
		case <-tick.C:
			if len(batch) == 0 {
				continue
			}
		case <-ctx.Done():
			e.drain(wctx, batch)
			return nil
		}
		e.deliver(wctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// drain writes batch and whatever is queued until the queue is empty or ctx
// ends; then it stops the emitter and counts what is left as dropped.
func (e *Emitter) drain(ctx context.Context, batch []*llmproxyv1.UsageEvent) {
	for ctx.Err() == nil {
		for len(batch) < e.batchSize {
			select {
			case ev := <-e.queue:
				batch = append(batch, ev)
				continue
			default:
			}
			break
		}
		if len(batch) == 0 {
			break
		}
		e.deliver(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
	e.stopped.Store(true)
	// Left over: a batch and queue the drain deadline cut short, and events
	// that raced with stopped.
	n := len(batch)
	for {
		select {
		case <-e.queue:
			n++
			continue
		default:
		}
		break
	}
	if n > 0 {
		for _, s := range e.sinks {
			e.metrics.sinkDropped.WithLabelValues(s.name).Add(float64(n))
		}
		e.log.Error().Int("events", n).Msg("usage events dropped: drain timeout at shutdown")
	}
	e.logDrops()
}

// deliver writes batch to every sink, each sink retried on its own.
func (e *Emitter) deliver(ctx context.Context, batch []*llmproxyv1.UsageEvent) {
	for _, ev := range batch {
		if ev.GetId() == "" {
			ev.Id = NewEventID()
		}
		if ev.GetTime() == nil {
			ev.Time = timestamppb.New(e.now())
		}
	}
	switch len(e.sinks) {
	case 0:
	case 1:
		e.write(ctx, e.sinks[0], batch)
	default:
		var wg sync.WaitGroup
		for _, s := range e.sinks {
			wg.Go(func() { e.write(ctx, s, batch) })
		}
		wg.Wait()
	}
}

// write writes batch to s, retrying with backoff until it succeeds, the
// retries run out or ctx ends; then the batch is dropped for s.
func (e *Emitter) write(ctx context.Context, s namedSink, batch []*llmproxyv1.UsageEvent) {
	backoff := e.retryBackoff
	var err error
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, e.writeTimeout)
		err = s.Write(actx, batch)
		cancel()
		if err == nil {
			e.metrics.sinkWritten.WithLabelValues(s.name).Add(float64(len(batch)))
			return
		}
		e.metrics.sinkErrors.WithLabelValues(s.name).Inc()
		if attempt >= e.retries || !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
			break
		}
		backoff *= 2
	}
	e.metrics.sinkDropped.WithLabelValues(s.name).Add(float64(len(batch)))
	e.log.Error().Err(err).Str("sink", s.name).Int("events", len(batch)).
		Msg("usage event sink failed; batch dropped for this sink")
}

// sleep waits d, or less if ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *Emitter) closeSinks() {
	for _, s := range e.sinks {
		if err := s.Close(); err != nil {
			e.log.Warn().Err(err).Str("sink", s.name).Msg("close usage event sink")
		}
	}
}
