package eventsink

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// emitWithRoom emits events from..to-1, each once the queue has room: the
// test stands for traffic the emitter keeps up with, so that a drop can only
// come from the emitter itself.
func emitWithRoom(t *testing.T, e *Emitter, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		waitUntil(t, "room in the queue", func() bool { return len(e.queue) < cap(e.queue) })
		e.Emit(newTestEvent(i))
	}
}

// While the only sink is down, its batches wait in the queue until it is
// 90% full, then go to the spill file — in order, and none lost.
func TestEmitterSpillsWhenQueueFills(t *testing.T) {
	down := &memSink{name: "down", fail: 1 << 30}
	dir := t.TempDir()
	e := NewEmitter(EmitterOptions{
		Sinks: []Sink{down}, QueueSize: 20, BatchSize: 5, FlushInterval: time.Millisecond,
		RetryBackoff: time.Hour, SpillDir: dir,
	})
	stop := runEmitter(t, e)
	const n = 200
	emitWithRoom(t, e, 0, n)
	stop()
	if got := readRequestIDs(t, filepath.Join(dir, "events-spill-down.jsonl")); fmt.Sprint(got) != fmt.Sprint(wantRequestIDs(0, n)) {
		t.Errorf("spill file holds %v, want r0…r%d in order", got, n-1)
	}
	if got := counterValue(e.metrics.sinkSpilled.WithLabelValues("down")); got != n {
		t.Errorf("spilled = %v, want %d", got, n)
	}
	if got := counterValue(e.metrics.dropped); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
	// One write, then the hour of backoff: the batches spilled meanwhile
	// were not tried.
	if got := counterValue(e.metrics.sinkErrors.WithLabelValues("down")); got != 1 {
		t.Errorf("sink errors = %v, want 1", got)
	}
}

// hangSink fails its first Write, then blocks every Write until its ctx
// ends, after telling hung.
type hangSink struct {
	calls int // only Run's goroutine calls Write
	hung  chan struct{}
}

func (s *hangSink) Name() string { return "hang" }

func (s *hangSink) Write(ctx context.Context, _ []*llmproxyv1.UsageEvent) error {
	s.calls++
	if s.calls == 1 {
		return fmt.Errorf("sink down")
	}
	select {
	case s.hung <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *hangSink) Close() error { return nil }

// A retry that hangs (a sink that does not answer, WriteTimeout a minute) is
// abandoned as soon as the queue is 90% full, and its batch spilled.
func TestEmitterAbandonsHungRetry(t *testing.T) {
	sink := &hangSink{hung: make(chan struct{}, 1)}
	dir := t.TempDir()
	e := NewEmitter(EmitterOptions{
		Sinks: []Sink{sink}, QueueSize: 10, BatchSize: 1, FlushInterval: time.Millisecond,
		WriteTimeout: time.Minute, RetryBackoff: time.Millisecond, DrainTimeout: 100 * time.Millisecond,
		SpillDir: dir,
	})
	stop := runEmitter(t, e)
	e.Emit(newTestEvent(0))
	<-sink.hung // the first retry of r0
	emitWithRoom(t, e, 1, 10)
	waitUntil(t, "the hung retry to be abandoned", func() bool {
		return counterValue(e.metrics.sinkSpilled.WithLabelValues("hang")) >= 1
	})
	stop()
	if got := readRequestIDs(t, filepath.Join(dir, "events-spill-hang.jsonl")); fmt.Sprint(got) != fmt.Sprint(wantRequestIDs(0, 10)) {
		t.Errorf("spill file holds %v, want r0…r9", got)
	}
	if got := counterValue(e.metrics.dropped); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
}

// An event that cannot be encoded (a time beyond the year 9999) is lost and counted once;
// the rest of its batch is written, or spilled, and the sink is not taken
// for down.
func TestEmitterUnencodableEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink func(dir string) Sink
		file string // where the encodable events end up
	}{
		{
			name: "written",
			sink: func(dir string) Sink {
				f, err := NewFileSink(filepath.Join(dir, "events.jsonl"), 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				return f
			},
			file: "events.jsonl",
		},
		{
			name: "spilled",
			sink: func(string) Sink { return &memSink{name: "down", fail: 1 << 30} },
			file: "events-spill-down.jsonl",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sink := tc.sink(dir)
			e := NewEmitter(EmitterOptions{Sinks: []Sink{sink}, RetryBackoff: time.Hour, SpillDir: dir})
			for i := range 3 {
				ev := newTestEvent(i)
				if i == 1 {
					ev.Time = &timestamppb.Timestamp{Seconds: maxTimestampSeconds + 1}
				}
				e.Emit(ev)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := e.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if got := readRequestIDs(t, filepath.Join(dir, tc.file)); fmt.Sprint(got) != "[r0 r2]" {
				t.Errorf("%s holds %v, want [r0 r2]", tc.file, got)
			}
			name := sinkName(sink, 0)
			if got := counterValue(e.metrics.dropped); got != 1 {
				t.Errorf("dropped = %v, want 1", got)
			}
			if got := counterValue(e.metrics.sinkDropped.WithLabelValues(name)); got != 1 {
				t.Errorf("sink dropped = %v, want 1", got)
			}
			if tc.name == "written" {
				if got := counterValue(e.metrics.sinkErrors.WithLabelValues(name)); got != 0 {
					t.Errorf("sink errors = %v, want 0: the sink is not at fault", got)
				}
			}
		})
	}
}

// A spill file stops taking events at SpillMaxBytes: what does not fit is
// counted as dropped.
func TestEmitterSpillMaxBytes(t *testing.T) {
	dir := t.TempDir()
	e := NewEmitter(EmitterOptions{
		Sinks: []Sink{&memSink{name: "down", fail: 1 << 30}}, BatchSize: 5, FlushInterval: time.Hour,
		RetryBackoff: time.Hour, SpillDir: dir, SpillMaxBytes: 1,
	})
	for i := range 10 {
		e.Emit(newTestEvent(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readRequestIDs(t, filepath.Join(dir, "events-spill-down.jsonl")); fmt.Sprint(got) != fmt.Sprint(wantRequestIDs(0, 5)) {
		t.Errorf("spill file holds %v, want r0…r4", got)
	}
	if got := counterValue(e.metrics.dropped); got != 5 {
		t.Errorf("dropped = %v, want 5", got)
	}
}

// Without SpillDir, the spill files go next to the first file sink.
func TestEmitterSpillDirDefault(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	f, err := NewFileSink(filepath.Join(dir, "events.jsonl"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEmitter(EmitterOptions{Sinks: []Sink{&memSink{name: "redis", fail: 1 << 30}, f}, RetryBackoff: time.Hour})
	e.Emit(newTestEvent(0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readRequestIDs(t, filepath.Join(dir, "events-spill-redis.jsonl")); fmt.Sprint(got) != "[r0]" {
		t.Errorf("spill file holds %v, want [r0]", got)
	}
	if got := readRequestIDs(t, filepath.Join(dir, "events.jsonl")); fmt.Sprint(got) != "[r0]" {
		t.Errorf("the file sink holds %v, want [r0]", got)
	}
}
