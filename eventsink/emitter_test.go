package eventsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// memSink keeps what it is given. fail makes the next that many writes fail.
type memSink struct {
	name string

	mu      sync.Mutex
	events  []*llmproxyv1.UsageEvent
	batches []int
	fail    int
	closed  bool
}

func (s *memSink) Name() string { return s.name }

func (s *memSink) Write(_ context.Context, events []*llmproxyv1.UsageEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("write after close")
	}
	if s.fail > 0 {
		s.fail--
		return errors.New("sink down")
	}
	s.events = append(s.events, events...)
	s.batches = append(s.batches, len(events))
	return nil
}

func (s *memSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *memSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func (s *memSink) wantRequestIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, len(s.events))
	for i, ev := range s.events {
		ids[i] = ev.GetRequestId()
	}
	return ids
}

// blockSink blocks every Write until release is closed (or the write's ctx
// ends), after telling entered.
type blockSink struct {
	entered chan struct{}
	release chan struct{}
	written atomic.Int64
}

func newBlockSink() *blockSink {
	return &blockSink{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *blockSink) Name() string { return "block" }

func (s *blockSink) Write(ctx context.Context, events []*llmproxyv1.UsageEvent) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
		s.written.Add(int64(len(events)))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *blockSink) Close() error { return nil }

func newTestEvent(i int) *llmproxyv1.UsageEvent {
	return &llmproxyv1.UsageEvent{Id: NewEventID(), RequestId: fmt.Sprintf("r%d", i)}
}

// start runs e until the returned stop is called; stop waits for Run.
func runEmitter(t *testing.T, e *Emitter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// counter returns the value of a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// seriesCount returns how many series reg has under each of names.
func seriesCount(t *testing.T, reg *prometheus.Registry, names ...string) map[string]int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int)
	for _, mf := range mfs {
		if slices.Contains(names, mf.GetName()) {
			got[mf.GetName()] = len(mf.GetMetric())
		}
	}
	return got
}

func TestEmitterBatches(t *testing.T) {
	sink := &memSink{name: "mem"}
	e := NewEmitter(EmitterOptions{Sinks: []Sink{sink}, BatchSize: 10, FlushInterval: time.Hour})
	stop := runEmitter(t, e)
	for i := range 25 {
		e.Emit(newTestEvent(i))
	}
	waitUntil(t, "two full batches", func() bool { return sink.len() == 20 })
	stop() // the drain writes the rest
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("r%d", i))
	}
	if got := sink.wantRequestIDs(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("written %v, want %v", got, want)
	}
	if fmt.Sprint(sink.batches) != "[10 10 5]" {
		t.Errorf("batches %v, want [10 10 5]", sink.batches)
	}
	if !sink.closed {
		t.Error("Run did not close the sink")
	}
	if got := counterValue(e.metrics.emitted); got != 25 {
		t.Errorf("emitted = %v, want 25", got)
	}
	if got := counterValue(e.metrics.sinkWritten.WithLabelValues("mem")); got != 25 {
		t.Errorf("written = %v, want 25", got)
	}
}

func TestEmitterFlushInterval(t *testing.T) {
	sink := &memSink{name: "mem"}
	e := NewEmitter(EmitterOptions{Sinks: []Sink{sink}, FlushInterval: 10 * time.Millisecond})
	runEmitter(t, e)
	for i := range 3 {
		e.Emit(newTestEvent(i))
	}
	waitUntil(t, "a partial batch flushed by time", func() bool { return sink.len() == 3 })
}

func TestEmitterFillsIDAndTime(t *testing.T) {
	sink := &memSink{name: "mem"}
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	e := NewEmitter(EmitterOptions{Sinks: []Sink{sink}, Now: func() time.Time { return now }})
	stop := runEmitter(t, e)
	e.Emit(&llmproxyv1.UsageEvent{RequestId: "r"})
	e.Emit(nil) // ignored
	stop()
	if sink.len() != 1 {
		t.Fatalf("%d events written, want 1", sink.len())
	}
	ev := sink.events[0]
	if !uuidV7.MatchString(ev.GetId()) || !ev.GetTime().AsTime().Equal(now) {
		t.Fatalf("id %q time %v: not filled in", ev.GetId(), ev.GetTime().AsTime())
	}
}

// The request path must never wait for a sink: with the only sink stuck,
// Emit returns at once, and every event is either written or counted as
// dropped (here there is no spill file: the write stuck when the queue
// filled is abandoned, and what the queue cannot hold is refused).
func TestEmitNeverBlocks(t *testing.T) {
	sink := newBlockSink()
	const queue = 10
	e := NewEmitter(EmitterOptions{
		Sinks: []Sink{sink}, QueueSize: queue, BatchSize: 1, WriteTimeout: time.Minute,
	})
	stop := runEmitter(t, e)
	e.Emit(newTestEvent(0))
	<-sink.entered // Run holds event 0 and is stuck in Write

	// With the sink stuck for a minute, an Emit that waited for it would
	// not return before then: returning at all is the proof (the bound is
	// only for reporting the hang; no test asserts how fast).
	const n = 1000
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		for i := range n {
			e.Emit(newTestEvent(i + 1))
		}
	}()
	select {
	case <-emitted:
	case <-time.After(30 * time.Second):
		t.Fatal("Emit blocked on a stuck sink")
	}
	if got := counterValue(e.metrics.dropped); got < n-queue {
		t.Fatalf("dropped = %v, want at least %d", got, n-queue)
	}

	close(sink.release)
	stop()
	written, dropped := float64(sink.written.Load()), counterValue(e.metrics.dropped)
	if written+dropped != n+1 {
		t.Errorf("written %v + dropped %v != %d emitted", written, dropped, n+1)
	}
	if got := counterValue(e.metrics.sinkWritten.WithLabelValues("block")); got != written {
		t.Errorf("llm_proxy_event_sink_written_total = %v, the sink got %v", got, written)
	}
}

func TestEmitterConcurrentEmit(t *testing.T) {
	sink := &memSink{name: "mem"}
	const goroutines, each = 8, 500
	e := NewEmitter(EmitterOptions{Sinks: []Sink{sink}, QueueSize: goroutines * each, BatchSize: 64, FlushInterval: time.Millisecond})
	stop := runEmitter(t, e)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				e.Emit(newTestEvent(g*each + i))
			}
		})
	}
	wg.Wait()
	stop()
	if got := sink.len(); got != goroutines*each {
		t.Fatalf("%d events written, want %d", got, goroutines*each)
	}
	seen := make(map[string]bool)
	for _, id := range sink.wantRequestIDs() {
		if seen[id] {
			t.Fatalf("%s written twice", id)
		}
		seen[id] = true
	}
}

func TestEmitterRetries(t *testing.T) {
	t.Run("recovers", func(t *testing.T) {
		sink := &memSink{name: "flaky", fail: 2}
		e := NewEmitter(EmitterOptions{Sinks: []Sink{sink}, BatchSize: 3, RetryBackoff: time.Millisecond})
		stop := runEmitter(t, e)
		for i := range 3 {
			e.Emit(newTestEvent(i))
		}
		waitUntil(t, "the batch after two failures", func() bool { return sink.len() == 3 })
		stop()
		if got := counterValue(e.metrics.sinkErrors.WithLabelValues("flaky")); got != 2 {
			t.Errorf("sink errors = %v, want 2", got)
		}
		if got := counterValue(e.metrics.sinkDropped.WithLabelValues("flaky")); got != 0 {
			t.Errorf("sink dropped = %v, want 0", got)
		}
	})
	// A sink that keeps failing is retried for as long as the queue has
	// room (far beyond the three retries of old), without holding back what
	// the healthy sink receives; at shutdown its batch goes to its spill
	// file, or, without one, is counted as dropped.
	for _, tc := range []struct {
		name     string
		spill    bool
		wantLost float64
	}{
		{name: "spilled at shutdown", spill: true, wantLost: 0},
		{name: "lost without a spill file", spill: false, wantLost: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			down := &memSink{name: "down", fail: 1 << 30}
			up := &memSink{name: "up"}
			reg := prometheus.NewRegistry()
			var dir string
			if tc.spill {
				dir = t.TempDir()
			}
			e := NewEmitter(EmitterOptions{
				Sinks: []Sink{down, up}, BatchSize: 3, RetryBackoff: time.Millisecond, RetryMaxBackoff: 2 * time.Millisecond,
				SpillDir: dir, Registerer: reg, Logger: zerolog.New(&lockedWriter{w: &logs}),
			})
			stop := runEmitter(t, e)
			for i := range 3 {
				e.Emit(newTestEvent(i))
			}
			waitUntil(t, "ten failed writes", func() bool {
				return counterValue(e.metrics.sinkErrors.WithLabelValues("down")) >= 10
			})
			if up.len() != 3 {
				t.Errorf("healthy sink got %d events, want 3", up.len())
			}
			stop()
			if got := counterValue(e.metrics.dropped); got != tc.wantLost {
				t.Errorf("llm_proxy_events_dropped_total = %v, want %v", got, tc.wantLost)
			}
			if got := counterValue(e.metrics.sinkDropped.WithLabelValues("down")); got != tc.wantLost {
				t.Errorf("llm_proxy_event_sink_dropped_total{down} = %v, want %v", got, tc.wantLost)
			}
			if tc.spill {
				if got := readRequestIDs(t, filepath.Join(dir, "events-spill-down.jsonl")); fmt.Sprint(got) != "[r0 r1 r2]" {
					t.Errorf("spill file holds %v, want [r0 r1 r2]", got)
				}
				if got := counterValue(e.metrics.sinkSpilled.WithLabelValues("down")); got != 3 {
					t.Errorf("llm_proxy_event_sink_spilled_total{down} = %v, want 3", got)
				}
			}
			if !strings.Contains(logs.String(), `"sink":"down"`) {
				t.Errorf("no log line names the failing sink: %s", logs.String())
			}
			got := seriesCount(t, reg,
				"llm_proxy_events_emitted_total", "llm_proxy_events_dropped_total", "llm_proxy_events_queue_length",
				"llm_proxy_event_sink_errors_total", "llm_proxy_event_sink_written_total", "llm_proxy_event_sink_dropped_total",
				"llm_proxy_event_sink_spilled_total")
			want := map[string]int{
				"llm_proxy_events_emitted_total": 1, "llm_proxy_events_dropped_total": 1, "llm_proxy_events_queue_length": 1,
				"llm_proxy_event_sink_errors_total": 2, "llm_proxy_event_sink_written_total": 2, "llm_proxy_event_sink_dropped_total": 2,
				"llm_proxy_event_sink_spilled_total": 2,
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("series %v, want %v", got, want)
			}
		})
	}
}

// At shutdown Run writes what is queued; a sink that does not answer is cut
// off after DrainTimeout and the rest is spilled, or, without a spill file,
// counted as dropped.
func TestEmitterDrain(t *testing.T) {
	t.Run("writes the queue", func(t *testing.T) {
		sink := &memSink{name: "mem"}
		e := NewEmitter(EmitterOptions{Sinks: []Sink{sink}, BatchSize: 7, FlushInterval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		for i := range 100 {
			e.Emit(newTestEvent(i))
		}
		cancel() // before Run even starts
		if err := e.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if sink.len() != 100 {
			t.Fatalf("%d of 100 queued events written", sink.len())
		}
	})
	for _, spill := range []bool{true, false} {
		t.Run(fmt.Sprintf("bounded, spill %v", spill), func(t *testing.T) {
			sink := newBlockSink()
			var dir string
			if spill {
				dir = t.TempDir()
			}
			e := NewEmitter(EmitterOptions{
				Sinks: []Sink{sink}, BatchSize: 5, FlushInterval: time.Hour,
				WriteTimeout: time.Minute, DrainTimeout: 50 * time.Millisecond, SpillDir: dir,
			})
			ctx, cancel := context.WithCancel(context.Background())
			for i := range 12 {
				e.Emit(newTestEvent(i))
			}
			cancel()
			began := time.Now()
			if err := e.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(began); d > 5*time.Second {
				t.Fatalf("Run took %v to give up draining", d)
			}
			wantLost := 12.0
			if spill {
				wantLost = 0
				if got := readRequestIDs(t, filepath.Join(dir, "events-spill-block.jsonl")); fmt.Sprint(got) != fmt.Sprint(wantRequestIDs(0, 12)) {
					t.Errorf("spill file holds %v, want r0…r11", got)
				}
			}
			if got := counterValue(e.metrics.sinkDropped.WithLabelValues("block")); got != wantLost {
				t.Errorf("sink dropped = %v, want %v", got, wantLost)
			}
			if got := counterValue(e.metrics.dropped); got != wantLost {
				t.Errorf("dropped = %v, want %v", got, wantLost)
			}
			e.Emit(newTestEvent(99))
			if got := counterValue(e.metrics.dropped); got != wantLost+1 {
				t.Errorf("Emit after Run: dropped = %v, want %v", got, wantLost+1)
			}
		})
	}
}

func TestEmitterRunTwice(t *testing.T) {
	e := NewEmitter(EmitterOptions{})
	runEmitter(t, e)
	waitUntil(t, "Run to start", e.running.Load)
	if err := e.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

// Drops are logged at most once per 10 seconds, with the count since the
// last line.
func TestEmitterDropLogRate(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	e := NewEmitter(EmitterOptions{QueueSize: 1, Now: clock, Logger: zerolog.New(&lockedWriter{w: &logs})})
	e.Emit(newTestEvent(0)) // fills the queue (Run is not running)
	for i := range 100 {
		e.Emit(newTestEvent(i))
	}
	advance(9 * time.Second)
	e.Emit(newTestEvent(0))
	if got := strings.Count(logs.String(), "\n"); got != 1 {
		t.Fatalf("%d log lines within 10s, want 1:\n%s", got, logs.String())
	}
	advance(time.Second)
	e.Emit(newTestEvent(0))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"dropped":1,`) || !strings.Contains(lines[1], `"dropped":101,`) {
		t.Fatalf("log lines:\n%s", logs.String())
	}
	if got := counterValue(e.metrics.dropped); got != 102 {
		t.Errorf("dropped = %v, want 102", got)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

type discardSink struct{}

func (discardSink) Write(context.Context, []*llmproxyv1.UsageEvent) error { return nil }
func (discardSink) Close() error                                          { return nil }

// BenchmarkEmit measures the cost Emit adds to the request path when the
// event is queued: one goroutine, the queue emptied outside the timer.
func BenchmarkEmit(b *testing.B) {
	e := NewEmitter(EmitterOptions{Registerer: prometheus.NewRegistry()})
	ev := newTestEvent(0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if len(e.queue) == cap(e.queue) {
			b.StopTimer()
			for len(e.queue) > 0 {
				<-e.queue
			}
			b.StartTimer()
		}
		e.Emit(ev)
	}
	b.StopTimer()
	if d := counterValue(e.metrics.dropped); d != 0 {
		b.Fatalf("%v events dropped", d)
	}
}

// BenchmarkEmitParallel emits from every CPU while Run writes to a sink that
// discards: the contended case, where Run cannot keep up and most events
// are dropped (drops/op).
func BenchmarkEmitParallel(b *testing.B) {
	e := NewEmitter(EmitterOptions{Sinks: []Sink{discardSink{}}, Registerer: prometheus.NewRegistry()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	ev := newTestEvent(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Emit(ev)
		}
	})
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(counterValue(e.metrics.dropped)/float64(b.N), "drops/op")
}

// BenchmarkEmitFull measures Emit when the queue is full and every event is
// dropped (the overload path).
func BenchmarkEmitFull(b *testing.B) {
	e := NewEmitter(EmitterOptions{QueueSize: 1})
	ev := newTestEvent(0)
	e.Emit(ev)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Emit(ev)
		}
	})
}
