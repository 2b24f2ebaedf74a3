package eventsink

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
// deadline (the emitter also cancels ctx to abandon a retry). A Write that
// fails may have stored part of the batch: the emitter retries, or spills,
// the whole batch, so consumers see events at least once and deduplicate by
// event id. Close releases what the sink holds (not a client it was given).
//
// A sink may also have a Name() string method: the emitter uses it as the
// sink label of its metrics and logs (otherwise "sink0", "sink1", …).
type Sink interface {
	Write(ctx context.Context, events []*llmproxyv1.UsageEvent) error
	Close() error
}

// Defaults of [EmitterOptions].
const (
	DefaultQueueSize       = 10000
	DefaultBatchSize       = 500
	DefaultFlushInterval   = time.Second
	DefaultWriteTimeout    = 5 * time.Second
	DefaultRetryBackoff    = 200 * time.Millisecond
	DefaultRetryMaxBackoff = 10 * time.Second
	DefaultDrainTimeout    = 5 * time.Second
	DefaultSpillMaxBytes   = 1 << 30
)

// How full the queue may get (percent of QueueSize) before the retries of
// a failing sink give way to its spill file, and how far the spill empties
// it before that sink is retried again.
const (
	highWaterPercent = 90
	lowWaterPercent  = 50
)

// dropLogEvery is the least time between two log lines about dropped events.
const dropLogEvery = 10 * time.Second

// Log field names of the emitter's lines.
const (
	logSink      = "sink"
	logEvents    = "events"
	logDropped   = "dropped"
	logQueueSize = "queue_size"
	logSpillFile = "spill_file"
	logFailures  = "failures"
	logEventID   = "event_id"
	logSpilled   = "spilled"
)

// EmitterOptions configures an [Emitter]. Zero values take the defaults
// above.
type EmitterOptions struct {
	// Sinks receive every batch, concurrently when there are several. The
	// emitter owns them from here on: Run closes them when it returns. No
	// sinks: events are queued and discarded.
	Sinks []Sink
	// QueueSize is how many events may wait for the sinks; Emit drops what
	// does not fit. It is also the retry budget of a failing sink: see
	// [Emitter.Run].
	QueueSize int
	// BatchSize is the most events one Write receives.
	BatchSize int
	// FlushInterval is the longest an event waits for its batch to fill.
	FlushInterval time.Duration
	// WriteTimeout bounds one Write call.
	WriteTimeout time.Duration
	// RetryBackoff is the wait before the first retry of a sink that failed;
	// it doubles after each further failure, up to RetryMaxBackoff. Each
	// wait is jittered: between half of it and all of it. There is no limit
	// on the number of retries: the queue's room is the limit.
	RetryBackoff time.Duration
	// RetryMaxBackoff caps the wait between two retries, and so bounds how
	// long a sink that has come back waits before it is written to again.
	RetryMaxBackoff time.Duration
	// SpillDir is where the events a failing sink cannot wait for (the
	// queue is 90% full, or Run is shutting down) are written instead. Each
	// sink has its own spill file there, events-spill-<sink>.jsonl (for
	// example events-spill-redis.jsonl): one [MarshalEvent] line per event
	// the sink did not take, appended, never rotated nor read back by
	// llm-proxy — it is for an operator to replay. Empty: the directory of
	// the first [FileSink] among Sinks; with none, there is no spill file
	// and such events are lost.
	SpillDir string
	// SpillMaxBytes caps each spill file: once one holds that many bytes,
	// the events that would go to it are lost. Negative: no cap.
	SpillMaxBytes int64
	// DrainTimeout bounds the work Run does after its ctx ends: writing (and
	// retrying) what is queued. What is left then is spilled.
	DrainTimeout time.Duration
	// Registerer receives the emitter's metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger receives drops, sink failures and recoveries, and spills.
	Logger zerolog.Logger
	// Now is the clock (drop-log rate, missing event times); nil: time.Now.
	// Retry waits use real time.
	Now func() time.Time
}

// Emitter is the bounded, asynchronous event pipeline between the request
// path and the sinks. [Emitter.Emit] may be called from any goroutine and
// never blocks; [Emitter.Run], started once by main, writes the queue to the
// sinks.
type Emitter struct {
	queue chan *llmproxyv1.UsageEvent
	sinks []*sinkState

	// highWater is the queue length at which retries give way to spilling;
	// once the queue is down to lowWater, a failing sink is retried again.
	// Emit sends on filling (without waiting) when the queue is at highWater.
	highWater int
	lowWater  int
	filling   chan struct{}

	batchSize       int
	flushInterval   time.Duration
	writeTimeout    time.Duration
	retryBackoff    time.Duration
	retryMaxBackoff time.Duration
	spillMaxBytes   int64
	drainTimeout    time.Duration

	log     zerolog.Logger
	now     func() time.Time
	metrics *emitterMetrics

	running atomic.Bool
	stopped atomic.Bool  // set when Run has drained: Emit drops from then on
	unlog   atomic.Int64 // drops not yet logged
	lastLog atomic.Int64 // unix nanoseconds of the last drop log line
}

// NewEmitter returns an Emitter writing to o.Sinks. Nothing is written until
// [Emitter.Run] runs.
func NewEmitter(o EmitterOptions) *Emitter {
	size := orDefault(o.QueueSize, DefaultQueueSize)
	e := &Emitter{
		queue:         make(chan *llmproxyv1.UsageEvent, size),
		highWater:     max(size*highWaterPercent/100, 1),
		lowWater:      size * lowWaterPercent / 100,
		filling:       make(chan struct{}, 1),
		batchSize:     orDefault(o.BatchSize, DefaultBatchSize),
		flushInterval: orDefault(o.FlushInterval, DefaultFlushInterval),
		writeTimeout:  orDefault(o.WriteTimeout, DefaultWriteTimeout),
		retryBackoff:  orDefault(o.RetryBackoff, DefaultRetryBackoff),
		spillMaxBytes: orDefault(o.SpillMaxBytes, DefaultSpillMaxBytes),
		drainTimeout:  orDefault(o.DrainTimeout, DefaultDrainTimeout),
		log:           o.Logger,
		now:           o.Now,
	}
	e.retryMaxBackoff = max(orDefault(o.RetryMaxBackoff, DefaultRetryMaxBackoff), e.retryBackoff)
	if e.now == nil {
		e.now = time.Now
	}
	spillDir := o.SpillDir
	if spillDir == "" {
		if i := slices.IndexFunc(o.Sinks, func(s Sink) bool { _, ok := s.(*FileSink); return ok }); i >= 0 {
			spillDir = filepath.Dir(o.Sinks[i].(*FileSink).path)
		}
	}
	names := make([]string, len(o.Sinks))
	for i, s := range o.Sinks {
		names[i] = sinkName(s, i)
		st := &sinkState{name: names[i], Sink: s}
		if spillDir != "" {
			st.spillPath = filepath.Join(spillDir, spillFileName(names[i]))
		}
		e.sinks = append(e.sinks, st)
	}
	e.metrics = newEmitterMetrics(o.Registerer, func() float64 { return float64(len(e.queue)) }, names)
	return e
}

// spillFileName is the name of the spill file of the sink called name.
func spillFileName(name string) string {
	return "events-spill-" + strings.NewReplacer("/", "_", `\`, "_").Replace(name) + ".jsonl"
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
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

// Emit queues ev for the sinks and returns at once: it never waits, not even
// while a sink is down. When the queue is full, or Run has finished, ev is
// dropped: counted in llm_proxy_events_dropped_total and logged at most once
// per 10 seconds with the number dropped since. Emit takes ev over: the
// caller must not modify it afterwards. An event without an id gets one ([NewEventID]) before it is
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
		if len(e.queue) >= e.highWater {
			select { // wake a retry waiting in deliver: it must spill now
			case e.filling <- struct{}{}:
			default:
			}
		}
	default:
		e.drop(1)
	}
}

// drop counts n lost events in llm_proxy_events_dropped_total and logs them,
// at most once per dropLogEvery.
func (e *Emitter) drop(n int64) {
	if n <= 0 {
		return
	}
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
		e.log.Warn().Int64(logDropped, n).Int(logQueueSize, cap(e.queue)).
			Msg("usage events dropped (queue full, emitter stopped, not encodable, or neither written nor spilled): see llm_proxy_events_dropped_total")
	}
}

// Run writes queued events to the sinks, in batches of up to BatchSize at
// least every FlushInterval, until ctx ends. It then writes what is still
// queued — including events emitted meanwhile — for up to DrainTimeout,
// spills what is left (see [EmitterOptions.SpillDir]), closes the sinks and
// the spill files and returns nil. Events emitted after Run returned are
// dropped, so cancel ctx only once the producers (the gRPC server) have
// stopped.
//
// A sink that fails keeps its batch and is retried with capped, jittered
// exponential backoff (RetryBackoff, RetryMaxBackoff) while the queue is
// less than 90% full; the other sinks wait for it, and Emit goes on
// queueing. When the queue reaches 90% — a write in flight is then
// abandoned — the failing sink's batches are appended to its spill file
// instead, without waiting, until the queue is down to 50%; then the sink is
// retried again once its backoff has passed. At shutdown a failing sink is
// not waited for: its batches are spilled at once. An event is lost only
// when it cannot be encoded, or when its spill fails too (no spill file,
// the file full or not writable): each such event is counted once in
// llm_proxy_events_dropped_total, however many sinks missed it, and per
// sink in llm_proxy_event_sink_dropped_total. Run returns an error only
// when called a second time.
func (e *Emitter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("eventsink: Emitter.Run called twice")
	}
	defer e.closeSinks()

	// Writes live until DrainTimeout after ctx ends: a write in flight at
	// shutdown to a healthy sink finishes within the drain budget rather
	// than being cut at once (a retry is abandoned at once and spilled).
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
			e.drain(wctx, ctx, batch)
			return nil
		}
		e.deliver(wctx, ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// takeQueued appends what is queued to batch, without waiting, until the
// queue is empty or batch holds n events.
func (e *Emitter) takeQueued(batch []*llmproxyv1.UsageEvent, n int) []*llmproxyv1.UsageEvent {
	for len(batch) < n {
		select {
		case ev := <-e.queue:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}

// drain writes batch and whatever is queued until the queue is empty or ctx
// ends, spilling at once what a failing sink does not take (stopping has
// ended); then it stops the emitter and spills what is left.
func (e *Emitter) drain(ctx, stopping context.Context, batch []*llmproxyv1.UsageEvent) {
	for ctx.Err() == nil {
		batch = e.takeQueued(batch, e.batchSize)
		if len(batch) == 0 {
			break
		}
		e.deliver(ctx, stopping, batch)
		clear(batch)
		batch = batch[:0]
	}
	e.stopped.Store(true)
	// Left over: a batch and queue the drain deadline cut short, and events
	// that raced with stopped. No sink gets to try them: they are spilled.
	batch = e.takeQueued(batch, math.MaxInt)
	if len(batch) > 0 && len(e.sinks) > 0 {
		e.prepare(batch)
		lost := make([]int, len(e.sinks))
		for i, s := range e.sinks {
			lost[i] = e.spill(s, batch)
		}
		e.log.Warn().Int(logEvents, len(batch)).Int(logDropped, slices.Max(lost)).
			Msg("usage events left at the drain deadline: spilled")
		e.account(lost)
	}
	e.logDrops()
}

// deliver writes batch to every sink, concurrently; a sink that fails is
// retried or its batch spilled ([Emitter.send]). It returns once every sink
// has taken, spilled or lost the batch. ctx bounds the writes (it outlives
// Run's ctx by DrainTimeout); stopping is Run's ctx: once it has ended, a
// failing sink is no longer waited for.
func (e *Emitter) deliver(ctx, stopping context.Context, batch []*llmproxyv1.UsageEvent) {
	e.prepare(batch)
	if len(e.sinks) == 0 {
		return
	}
	full, stop := e.watchQueue(ctx)
	defer stop()
	lost := make([]int, len(e.sinks))
	if len(e.sinks) == 1 {
		lost[0] = e.send(ctx, full, stopping, e.sinks[0], batch)
	} else {
		var wg sync.WaitGroup
		for i, s := range e.sinks {
			wg.Go(func() { lost[i] = e.send(ctx, full, stopping, s, batch) })
		}
		wg.Wait()
	}
	e.account(lost)
}

// prepare gives the events of batch that lack them an id and a time.
func (e *Emitter) prepare(batch []*llmproxyv1.UsageEvent) {
	for _, ev := range batch {
		if ev.GetId() == "" {
			ev.Id = NewEventID()
		}
		if ev.GetTime() == nil {
			ev.Time = timestamppb.New(e.now())
		}
	}
}

// account counts the events of one batch that sinks lost, lost[i] for
// e.sinks[i]. What one sink lost is all of the batch, or its events that
// cannot be encoded, or nothing, so the largest count is the number of
// events lost for at least one sink: that is what llm_proxy_events_dropped_total
// counts.
func (e *Emitter) account(lost []int) {
	for i, n := range lost {
		if n > 0 {
			e.metrics.sinkDropped.WithLabelValues(e.sinks[i].name).Add(float64(n))
		}
	}
	if n := slices.Max(lost); n > 0 {
		e.drop(int64(n))
	}
}

func (e *Emitter) closeSinks() {
	for _, s := range e.sinks {
		if err := s.Close(); err != nil {
			e.log.Warn().Err(err).Str(logSink, s.name).Msg("close usage event sink")
		}
		if err := s.closeSpill(); err != nil {
			e.log.Warn().Err(err).Str(logSink, s.name).Str(logSpillFile, s.spillPath).Msg("close usage event spill file")
		}
	}
}
