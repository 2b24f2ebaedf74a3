package eventsink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// The emitter against a real Redis, killed (SIGKILL) and restarted mid-run:
// issue 10, item 8 measured 145 of 3,994 events lost in a 15 s outage,
// counted only per sink. The outages here last longer than the old retry
// budget (three retries from 200 ms: at most 1.4 s of waiting), and much
// longer than the queue takes to fill.

// outageStream is the stream key; each test has a Redis of its own.
const outageStream = "llmproxy:test:events"

// redisOutage is what runRedisOutage saw.
type redisOutage struct {
	e         *Emitter
	n         int      // events emitted: r0 … r(n-1)
	during    [2]int   // the request ids emitted while Redis was down: [from, to)
	stream    []string // request ids in the stream: read before the kill, and after Run returned
	spillPath string
}

// runRedisOutage runs an emitter on a Redis Stream sink, spilling to
// spillDir, and emits events all along: 100 with Redis up (written before
// the kill), one a millisecond (each once the queue has room) while Redis
// is down for outage, then 100 after its restart; then it stops the emitter.
func runRedisOutage(t *testing.T, spillDir string, outage time.Duration) redisOutage {
	t.Helper()
	r := testenv.NewOwnedRedis(t)
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.ContextTimeoutEnabled = true // as serve configures it
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	e := NewEmitter(EmitterOptions{
		Sinks:     []Sink{NewRedisStreamSink(c, outageStream, 0)},
		QueueSize: 1000, BatchSize: 50, FlushInterval: 5 * time.Millisecond,
		WriteTimeout: time.Second, RetryMaxBackoff: 500 * time.Millisecond, // RetryBackoff: the default
		SpillDir: spillDir, Registerer: prometheus.NewRegistry(),
	})
	stop := runEmitter(t, e)
	written := func() float64 { return counterValue(e.metrics.sinkWritten.WithLabelValues("redis")) }
	o := redisOutage{e: e, spillPath: filepath.Join(spillDir, "events-spill-redis.jsonl")}

	emitWithRoom(t, e, 0, 100)
	waitUntil(t, "the first events in the stream", func() bool { return written() == 100 })
	o.stream = streamIDs(t, c, outageStream) // the restarted server is empty

	r.Stop()
	o.during[0] = 100
	o.n = 100
	tick := time.NewTicker(time.Millisecond)
	for began := time.Now(); time.Since(began) < outage; <-tick.C {
		emitWithRoom(t, e, o.n, o.n+1)
		o.n++
	}
	tick.Stop()
	o.during[1] = o.n
	r.Start()

	w := written()
	emitWithRoom(t, e, o.n, o.n+100)
	o.n += 100
	waitUntil(t, "the sink to be written to again", func() bool { return written() > w })
	stop()
	o.stream = append(o.stream, streamIDs(t, c, outageStream)...)
	t.Logf("emitted %d (%d during the outage); stream %d, spilled %v, dropped %v, sink errors %v",
		o.n, o.during[1]-o.during[0], len(o.stream), counterValue(e.metrics.sinkSpilled.WithLabelValues("redis")),
		counterValue(e.metrics.dropped), counterValue(e.metrics.sinkErrors.WithLabelValues("redis")))
	return o
}

// countIDs counts each request id of lists; it fails t on an id that was
// not emitted (r0 … r(n-1)).
func countIDs(t *testing.T, n int, lists ...[]string) map[string]int {
	t.Helper()
	want := make(map[string]bool, n)
	for _, id := range wantRequestIDs(0, n) {
		want[id] = true
	}
	seen := make(map[string]int, n)
	for _, l := range lists {
		for _, id := range l {
			if !want[id] {
				t.Fatalf("unknown event %s", id)
			}
			seen[id]++
		}
	}
	return seen
}

// (1) Every event emitted before, during and after the outage is in the
// stream or in the spill file, exactly once, and none is counted as
// dropped. Before the change this lost events: each batch was given up
// after three retries and counted only in llm_proxy_event_sink_dropped_total.
func TestEmitterRedisOutage(t *testing.T) {
	o := runRedisOutage(t, t.TempDir(), 3*time.Second)
	spill := readRequestIDs(t, o.spillPath)
	seen := countIDs(t, o.n, o.stream, spill)
	if len(seen) != o.n || len(o.stream)+len(spill) != o.n {
		var missing []string
		for _, id := range wantRequestIDs(0, o.n) {
			if seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		t.Fatalf("%d events emitted; %d in the stream + %d in the spill file, %d distinct; missing %v",
			o.n, len(o.stream), len(spill), len(seen), missing)
	}
	if got := counterValue(o.e.metrics.dropped); got != 0 {
		t.Errorf("llm_proxy_events_dropped_total = %v, want 0", got)
	}
	if got := counterValue(o.e.metrics.sinkDropped.WithLabelValues("redis")); got != 0 {
		t.Errorf("llm_proxy_event_sink_dropped_total = %v, want 0", got)
	}
	if got := counterValue(o.e.metrics.sinkSpilled.WithLabelValues("redis")); got != float64(len(spill)) || got == 0 {
		t.Errorf("llm_proxy_event_sink_spilled_total = %v, the spill file holds %d (the queue must fill)", got, len(spill))
	}
	if got := counterValue(o.e.metrics.sinkWritten.WithLabelValues("redis")); got != float64(len(o.stream)) {
		t.Errorf("llm_proxy_event_sink_written_total = %v, the stream holds %d", got, len(o.stream))
	}
	// Retried, not only spilled: events that waited in the queue through
	// the outage reached Redis once it was back.
	if !slices.ContainsFunc(o.stream[100:], func(id string) bool {
		var i int
		_, _ = fmt.Sscanf(id, "r%d", &i)
		return i >= o.during[0] && i < o.during[1]
	}) {
		t.Error("no event emitted during the outage reached the stream after it")
	}
}

// (2) When the spill file cannot be written either (its directory is a
// file), the events lost are exactly those missing from the stream, each
// counted once in llm_proxy_events_dropped_total.
func TestEmitterRedisOutageSpillFails(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := runRedisOutage(t, filepath.Join(notDir, "spill"), 2*time.Second)
	seen := countIDs(t, o.n, o.stream)
	if len(seen) != len(o.stream) {
		t.Fatalf("the stream holds %d entries for %d events: duplicates make the count inexact", len(o.stream), len(seen))
	}
	lost := float64(o.n - len(seen))
	if lost == 0 {
		t.Fatal("no event was lost: the queue never filled")
	}
	if got := counterValue(o.e.metrics.dropped); got != lost {
		t.Errorf("llm_proxy_events_dropped_total = %v, want %v (%d emitted, %d in the stream)", got, lost, o.n, len(seen))
	}
	if got := counterValue(o.e.metrics.sinkDropped.WithLabelValues("redis")); got != lost {
		t.Errorf("llm_proxy_event_sink_dropped_total = %v, want %v", got, lost)
	}
	if got := counterValue(o.e.metrics.sinkSpilled.WithLabelValues("redis")); got != 0 {
		t.Errorf("llm_proxy_event_sink_spilled_total = %v, want 0", got)
	}
}

// (3) A shutdown under load writes every event: producers emit as fast as
// they can, and Run's ctx is cancelled as soon as they stop (serve cancels
// it once the gRPC server has stopped), with the queue still full of
// events. The SIGTERM measurement of issue 10 (11,282 requests forwarded,
// 11,282 events) as a test.
func TestEmitterShutdownUnderLoad(t *testing.T) {
	c, stream := newRedisTestClient(t)
	const producers, each = 2, 5641
	e := NewEmitter(EmitterOptions{
		Sinks: []Sink{NewRedisStreamSink(c, stream, 0)}, QueueSize: 2 * producers * each,
		Registerer: prometheus.NewRegistry(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				e.Emit(newTestEvent(p*each + i))
			}
		})
	}
	wg.Wait()
	queued := len(e.queue)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events queued at shutdown", queued)
	ids := streamIDs(t, c, stream)
	seen := countIDs(t, producers*each, ids)
	if len(ids) != producers*each || len(seen) != producers*each {
		t.Fatalf("the stream holds %d entries, %d distinct, want %d", len(ids), len(seen), producers*each)
	}
	for _, m := range []struct {
		name string
		c    prometheus.Counter
		want float64
	}{
		{"emitted", e.metrics.emitted, producers * each},
		{"dropped", e.metrics.dropped, 0},
		{"spilled", e.metrics.sinkSpilled.WithLabelValues("redis"), 0},
	} {
		if got := counterValue(m.c); got != m.want {
			t.Errorf("%s = %v, want %v", m.name, got, m.want)
		}
	}
}

// streamIDs returns the request ids of the events in stream.
func streamIDs(t *testing.T, c redis.UniversalClient, stream string) []string {
	t.Helper()
	msgs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ev, err := UnmarshalEvent([]byte(m.Values[StreamFieldEvent].(string)))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = ev.GetRequestId()
	}
	return ids
}

// (3, with Redis down) A shutdown while the sink is down does not wait for
// it: what is queued goes to the spill file, in order, and Run returns.
func TestEmitterShutdownRedisDown(t *testing.T) {
	r := testenv.NewOwnedRedis(t)
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	defer c.Close()
	dir := t.TempDir()
	const drain = 2 * time.Second
	e := NewEmitter(EmitterOptions{
		Sinks: []Sink{NewRedisStreamSink(c, outageStream, 0)}, BatchSize: 50,
		DrainTimeout: drain, SpillDir: dir, Registerer: prometheus.NewRegistry(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	r.Stop()
	const n = 2000
	emitWithRoom(t, e, 0, n)
	waitUntil(t, "a failed write", func() bool { return counterValue(e.metrics.sinkErrors.WithLabelValues("redis")) > 0 })
	cancel()
	// Run must return: a sink that is down is not waited for. The bound is
	// only for a hang (a test never asserts how fast): spilling 2000 events
	// under the race detector on a busy machine has taken over 15 s.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after its context ended: it waits for a sink that is down")
	}
	if got := readRequestIDs(t, filepath.Join(dir, "events-spill-redis.jsonl")); fmt.Sprint(got) != fmt.Sprint(wantRequestIDs(0, n)) {
		t.Errorf("spill file holds %d events, want r0…r%d in order", len(got), n-1)
	}
	if got := counterValue(e.metrics.dropped); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
}
