package dispatch

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testRedis returns a client of the test Redis and a stream name no other
// test uses; both streams it may create are deleted at the end.
func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	rdb := testenv.RedisClient(t)
	stream := fmt.Sprintf("test:dispatch:%s:%d", t.Name(), time.Now().UnixNano())
	t.Cleanup(func() {
		// One key per call: on a Redis Cluster the two may live on different nodes.
		rdb.Del(context.Background(), stream)
		rdb.Del(context.Background(), stream+DeadLetterSuffix)
	})
	return rdb, stream
}

// memBackend records what it accepted. fail, when set, decides the outcome
// of each call (numbered from 1) before anything is recorded.
type memBackend struct {
	name string
	fail func(call int, entries []Entry) error

	mu    sync.Mutex
	calls int
	got   map[string]int // event id → times accepted
}

func newMem(name string) *memBackend { return &memBackend{name: name, got: map[string]int{}} }

func (m *memBackend) Name() string { return m.name }

func (m *memBackend) Deliver(ctx context.Context, entries []Entry) error {
	m.mu.Lock()
	m.calls++
	call := m.calls
	m.mu.Unlock()
	var err error
	if m.fail != nil {
		err = m.fail(call, entries)
	}
	var be *BatchError
	errors.As(err, &be)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range entries {
		if err == nil || (be != nil && be.Failed[e.ID] == nil) {
			m.got[e.ID]++
		}
	}
	return err
}

func (m *memBackend) count(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.got[id]
}

func (m *memBackend) distinct() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.got)
}

func (m *memBackend) callCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// testEvent is the event the tests deliver under id.
func testEvent(id string) *llmproxyv1.UsageEvent {
	return &llmproxyv1.UsageEvent{
		Id: id, Time: timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 678e6, time.UTC)),
		RequestId: "req-" + id, ProjectId: "p1", TokenId: "tok_pub", Method: "POST", Path: "/v1/chat/completions",
		Model: "gpt-4.1-mini", Status: 200, CacheStatus: "miss", Outcome: "forwarded", LatencyMs: 250,
		Usage:       &llmproxyv1.Usage{PromptTokens: 12, CompletionTokens: 5, CachedTokens: 4, TotalTokens: 17},
		UsageSource: "provider", CostUsd: 0.0001, CostMicroUsd: 100, PriceVersion: "2025-01",
	}
}

// eventJSON is testEvent(id) as the producer encodes it.
func eventJSON(id string) string { return marshal(testEvent(id)) }

func marshal(ev *llmproxyv1.UsageEvent) string {
	b, err := eventsink.MarshalEvent(ev)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// produce XADDs n events with ids prefix-0 … prefix-(n-1), as the Redis
// Stream sink writes them, and returns the ids.
func produce(t *testing.T, rdb redis.UniversalClient, stream, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	pipe := rdb.Pipeline()
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{"id", ids[i], "event", eventJSON(ids[i])}})
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ids
}

func newDispatcher(t *testing.T, rdb redis.UniversalClient, o Options) *Dispatcher {
	t.Helper()
	if o.Block == 0 {
		o.Block = 50 * time.Millisecond
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 10 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 50 * time.Millisecond
	}
	o.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	o.Rand = mrand.New(mrand.NewPCG(1, 2))
	d, err := New(rdb, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// start runs d until the returned stop is called (or the test ends); stop
// returns once Run has.
func start(t *testing.T, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pendingCount(t *testing.T, rdb redis.UniversalClient, stream, group string) int64 {
	t.Helper()
	p, err := rdb.XPending(context.Background(), stream, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func deadEntries(t *testing.T, rdb redis.UniversalClient, stream string) []redis.XMessage {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), stream+DeadLetterSuffix, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestDeliversEveryEntryToEveryBackend(t *testing.T) {
	rdb, stream := testRedis(t)
	// Written before any group exists: the group starts at "0", so these count.
	early := produce(t, rdb, stream, "early", 5)
	a, b := newMem("a"), newMem("b")
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{a, b}, BatchSize: 100})
	stop := start(t, d)
	late := produce(t, rdb, stream, "late", 250)
	all := append(early, late...)
	waitFor(t, "every entry acknowledged", 20*time.Second, func() bool { return d.Stats().Delivered == int64(len(all)) })
	stop()

	for _, id := range all {
		if a.count(id) != 1 || b.count(id) != 1 {
			t.Fatalf("%s delivered %d times to a and %d times to b, want once each", id, a.count(id), b.count(id))
		}
	}
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
	if s := d.Stats(); s.DeadLettered != 0 || s.Retries != 0 {
		t.Errorf("stats %+v: nothing should have failed", s)
	}
	// A consumer that stopped with nothing pending leaves the group.
	cs, err := rdb.XInfoConsumers(context.Background(), stream, DefaultGroup).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == d.Consumer() {
			t.Errorf("consumer %s still in the group after a clean stop", c.Name)
		}
	}
}

// One backend failing holds back the acknowledgement; the backend that
// accepted is not given the entries again; Redis counts each attempt.
func TestAcknowledgesOnlyWhenEveryBackendAccepted(t *testing.T) {
	rdb, stream := testRedis(t)
	ids := produce(t, rdb, stream, "ev", 20)
	ok := newMem("ok")
	type seen struct {
		pending int64
		counts  map[string]int64
	}
	var mu sync.Mutex
	var during []seen
	var d *Dispatcher
	flaky := newMem("flaky")
	flaky.fail = func(call int, entries []Entry) error {
		// What Redis holds while the backend is being called.
		p, err := rdb.XPending(context.Background(), stream, DefaultGroup).Result()
		if err != nil {
			return err
		}
		ext, err := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: stream, Group: DefaultGroup, Start: "-", End: "+", Count: 100, Consumer: d.Consumer()}).Result()
		if err != nil {
			return err
		}
		s := seen{pending: p.Count, counts: map[string]int64{}}
		for _, e := range ext {
			s.counts[e.ID] = e.RetryCount
		}
		mu.Lock()
		during = append(during, s)
		mu.Unlock()
		if call <= 3 {
			return errors.New("receiver is down")
		}
		return nil
	}
	d = newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{ok, flaky}, MaxAttempts: 10})
	stop := start(t, d)
	waitFor(t, "every entry acknowledged", 20*time.Second, func() bool { return d.Stats().Delivered == int64(len(ids)) })
	stop()

	if flaky.callCount() != 4 {
		t.Errorf("flaky backend called %d times, want 4 (3 failures, 1 success)", flaky.callCount())
	}
	for _, id := range ids {
		if ok.count(id) != 1 {
			t.Errorf("%s given %d times to the backend that accepted it, want 1", id, ok.count(id))
		}
		if flaky.count(id) != 1 {
			t.Errorf("%s accepted %d times by the flaky backend, want 1", id, flaky.count(id))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range during {
		if s.pending != int64(len(ids)) {
			t.Errorf("attempt %d: %d entries pending, want all %d (nothing acknowledged before every backend accepted)", i+1, s.pending, len(ids))
		}
		for id, c := range s.counts {
			if c != int64(i+1) {
				t.Errorf("attempt %d: Redis delivery count of %s is %d, want %d", i+1, id, c, i+1)
				break
			}
		}
	}
	if d.Stats().Retries != 3 {
		t.Errorf("retries = %d, want 3", d.Stats().Retries)
	}
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 0 {
		t.Errorf("%d entries still pending", n)
	}
}

func TestDeadLettersAfterMaxAttempts(t *testing.T) {
	rdb, stream := testRedis(t)
	ids := produce(t, rdb, stream, "ev", 3)
	ok := newMem("ok")
	down := newMem("down")
	down.fail = func(int, []Entry) error { return &StatusError{Code: 503, Body: "maintenance"} }
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{ok, down}, MaxAttempts: 3})
	stop := start(t, d)
	waitFor(t, "entries dead-lettered", 20*time.Second, func() bool { return d.Stats().DeadLettered == 3 })
	stop()

	if down.callCount() != 3 {
		t.Errorf("failing backend called %d times, want MaxAttempts = 3", down.callCount())
	}
	dead := deadEntries(t, rdb, stream)
	if len(dead) != 3 {
		t.Fatalf("%d dead-letter entries, want 3", len(dead))
	}
	for i, m := range dead {
		v := m.Values
		if v["id"] != ids[i] || v["event"] != eventJSON(ids[i]) {
			t.Errorf("dead entry %d = %v, want the original id and event", i, v)
		}
		if v[DeadFieldBackends] != "down" || v[DeadFieldAttempts] != "3" {
			t.Errorf("dead entry %d: backends %v attempts %v, want down and 3", i, v[DeadFieldBackends], v[DeadFieldAttempts])
		}
		if e, _ := v[DeadFieldError].(string); !strings.Contains(e, "down: http status 503: maintenance") {
			t.Errorf("dead entry %d: error %q lacks the last error", i, e)
		}
		if v[DeadFieldSourceID] == "" || v[DeadFieldTime] == "" {
			t.Errorf("dead entry %d lacks source id or time: %v", i, v)
		}
		if ok.count(ids[i]) != 1 {
			t.Errorf("%s given %d times to the working backend, want 1", ids[i], ok.count(ids[i]))
		}
	}
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 0 {
		t.Errorf("%d entries still pending after dead-lettering", n)
	}
}

func TestPermanentFailureDeadLettersAtOnce(t *testing.T) {
	rdb, stream := testRedis(t)
	ids := produce(t, rdb, stream, "ev", 4)
	picky := newMem("picky")
	picky.fail = func(_ int, entries []Entry) error {
		for _, e := range entries {
			if e.ID == ids[2] {
				return &BatchError{Failed: map[string]error{e.ID: &StatusError{Code: 422, Body: "bad event"}}}
			}
		}
		return nil
	}
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{picky}, MaxAttempts: 10})
	stop := start(t, d)
	waitFor(t, "3 delivered, 1 dead", 20*time.Second, func() bool {
		s := d.Stats()
		return s.Delivered == 3 && s.DeadLettered == 1
	})
	stop()
	if picky.callCount() != 1 || d.Stats().Retries != 0 {
		t.Errorf("%d calls, %d retries: a permanent failure must not be retried", picky.callCount(), d.Stats().Retries)
	}
	dead := deadEntries(t, rdb, stream)
	if len(dead) != 1 || dead[0].Values["id"] != ids[2] || dead[0].Values[DeadFieldAttempts] != "1" {
		t.Fatalf("dead letters = %v, want %s after 1 attempt", dead, ids[2])
	}
}

func TestMalformedEntriesAreDeadLettered(t *testing.T) {
	rdb, stream := testRedis(t)
	ctx := context.Background()
	for _, vals := range [][]any{
		{"id", "no-event"},
		{"id", "bad-json", "event", "{not json"},
		{"event", `{"model":"gpt-4.1"}`}, // no id anywhere
		{"event", eventJSON("id-from-json")},
	} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: vals}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := newMem("b")
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{b}})
	stop := start(t, d)
	waitFor(t, "1 delivered, 3 dead", 20*time.Second, func() bool {
		s := d.Stats()
		return s.Delivered == 1 && s.DeadLettered == 3
	})
	stop()
	if b.count("id-from-json") != 1 || b.distinct() != 1 {
		t.Errorf("backend got %v, want only id-from-json (id taken from the event JSON)", b.got)
	}
	wantErr := []string{`no "event" field`, "not JSON", "no event id"}
	for i, m := range deadEntries(t, rdb, stream) {
		if e, _ := m.Values[DeadFieldError].(string); !strings.Contains(e, wantErr[i]) {
			t.Errorf("dead entry %d error %q, want it to mention %q", i, e, wantErr[i])
		}
	}
}

// A consumer that read entries and died leaves them pending; a dispatcher
// claims them once they have been idle for ClaimIdle.
func TestClaimsEntriesOfADeadConsumer(t *testing.T) {
	rdb, stream := testRedis(t)
	ctx := context.Background()
	ids := produce(t, rdb, stream, "ev", 30)
	if err := rdb.XGroupCreateMkStream(ctx, stream, DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The dead consumer read the first 20 and never acknowledged them.
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: DefaultGroup, Consumer: "crashed",
		Streams: []string{stream, ">"}, Count: 20}).Err(); err != nil {
		t.Fatal(err)
	}
	b := newMem("b")
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{b},
		ClaimIdle: 300 * time.Millisecond, ClaimInterval: 50 * time.Millisecond})
	began := time.Now()
	stop := start(t, d)
	waitFor(t, "the 10 unread entries", 10*time.Second, func() bool { return b.distinct() >= 10 })
	for _, id := range ids[:20] {
		if b.count(id) != 0 && time.Since(began) < 300*time.Millisecond {
			t.Fatalf("%s claimed before it had been idle for ClaimIdle", id)
		}
	}
	waitFor(t, "all 30 acknowledged", 10*time.Second, func() bool { return d.Stats().Delivered == 30 })
	stop()
	for _, id := range ids {
		if b.count(id) != 1 {
			t.Errorf("%s delivered %d times, want 1", id, b.count(id))
		}
	}
	if s := d.Stats(); s.Claimed != 20 {
		t.Errorf("claimed %d, want the dead consumer's 20", s.Claimed)
	}
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 0 {
		t.Errorf("%d still pending", n)
	}
}

// An entry handed out more than MaxAttempts times without an ack (say, one
// that crashes every dispatcher) is dead-lettered without another try.
func TestEntryDeliveredTooOftenIsDeadLettered(t *testing.T) {
	rdb, stream := testRedis(t)
	ctx := context.Background()
	ids := produce(t, rdb, stream, "ev", 1)
	if err := rdb.XGroupCreateMkStream(ctx, stream, DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	msgs, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: DefaultGroup, Consumer: "crash-1", Streams: []string{stream, ">"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"crash-2", "crash-3"} {
		if err := rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: DefaultGroup, Consumer: c,
			Messages: []string{msgs[0].Messages[0].ID}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := newMem("b")
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{b}, MaxAttempts: 3,
		ClaimIdle: 100 * time.Millisecond, ClaimInterval: 50 * time.Millisecond})
	stop := start(t, d)
	waitFor(t, "dead letter", 10*time.Second, func() bool { return d.Stats().DeadLettered == 1 })
	stop()
	if b.callCount() != 0 {
		t.Errorf("backend called %d times; the entry had used up its attempts", b.callCount())
	}
	dead := deadEntries(t, rdb, stream)
	if len(dead) != 1 || dead[0].Values["id"] != ids[0] || dead[0].Values[DeadFieldAttempts] != "4" ||
		!strings.Contains(dead[0].Values[DeadFieldError].(string), "delivered 4 times") {
		t.Errorf("dead letters = %v", dead)
	}
}

// blocking is a backend that waits for its context, or for release.
type blocking struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	got     int
}

func (b *blocking) Name() string { return "blocking" }

func (b *blocking) Deliver(ctx context.Context, entries []Entry) error {
	b.once.Do(func() { close(b.entered) })
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-b.release:
		b.mu.Lock()
		b.got += len(entries)
		b.mu.Unlock()
		return nil
	}
}

// Stopping mid-delivery never acknowledges what was not accepted: the
// entries stay pending for the next dispatcher.
func TestStopLeavesUndeliveredEntriesPending(t *testing.T) {
	rdb, stream := testRedis(t)
	produce(t, rdb, stream, "ev", 10)
	b := &blocking{entered: make(chan struct{}), release: make(chan struct{})}
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{b}, StopTimeout: 100 * time.Millisecond})
	stop := start(t, d)
	<-b.entered
	began := time.Now()
	stop()
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("stop took %s with StopTimeout 100ms", took)
	}
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 10 {
		t.Errorf("%d pending after stop, want all 10", n)
	}
	if s := d.Stats(); s.Delivered != 0 {
		t.Errorf("delivered = %d, want 0", s.Delivered)
	}
	// The consumer stays, holding its entries for another to claim.
	p, _ := rdb.XPending(context.Background(), stream, DefaultGroup).Result()
	if p.Consumers[d.Consumer()] != 10 {
		t.Errorf("pending by consumer = %v", p.Consumers)
	}
}

// A delivery in flight when the stop comes may finish within StopTimeout,
// and is then acknowledged.
func TestStopFinishesTheDeliveryInFlight(t *testing.T) {
	rdb, stream := testRedis(t)
	produce(t, rdb, stream, "ev", 10)
	b := &blocking{entered: make(chan struct{}), release: make(chan struct{})}
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{b}, StopTimeout: 5 * time.Second})
	stop := start(t, d)
	<-b.entered
	time.AfterFunc(200*time.Millisecond, func() { close(b.release) })
	stop()
	if n := pendingCount(t, rdb, stream, DefaultGroup); n != 0 {
		t.Errorf("%d pending, want 0: the in-flight batch was accepted", n)
	}
	if s := d.Stats(); s.Delivered != 10 {
		t.Errorf("delivered = %d, want 10", s.Delivered)
	}
}

// While a slow backend works, the batch's entries do not look idle, so a
// second dispatcher's XAUTOCLAIM does not take them.
func TestSlowDeliveryKeepsItsClaim(t *testing.T) {
	rdb, stream := testRedis(t)
	produce(t, rdb, stream, "ev", 5)
	slow := newMem("slow")
	slow.fail = func(int, []Entry) error { time.Sleep(1200 * time.Millisecond); return nil }
	d := newDispatcher(t, rdb, Options{Stream: stream, Backends: []Backend{slow}, ClaimIdle: 300 * time.Millisecond})
	stop := start(t, d)
	waitFor(t, "delivery to start", 5*time.Second, func() bool { return slow.callCount() == 1 })
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		stolen, _, err := rdb.XAutoClaim(context.Background(), &redis.XAutoClaimArgs{Stream: stream, Group: DefaultGroup,
			Consumer: "thief", MinIdle: 300 * time.Millisecond, Start: "0-0", Count: 100}).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(stolen) > 0 {
			t.Fatalf("another consumer claimed %d entries still being delivered", len(stolen))
		}
		time.Sleep(30 * time.Millisecond)
	}
	waitFor(t, "acknowledged", 5*time.Second, func() bool { return d.Stats().Delivered == 5 })
	stop()
	if slow.callCount() != 1 {
		t.Errorf("%d calls, want 1", slow.callCount())
	}
}

func TestConsumerNamesDiffer(t *testing.T) {
	a, b := consumerName(), consumerName()
	if a == b || !strings.Contains(a, fmt.Sprintf("-%d-", os.Getpid())) {
		t.Errorf("consumer names %q and %q", a, b)
	}
}

func TestBackoffGrowsWithJitterAndIsBounded(t *testing.T) {
	d := &Dispatcher{o: Options{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Rand: mrand.New(mrand.NewPCG(3, 4))}}
	for attempt, ceil := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 60: time.Second,
	} {
		seen := map[time.Duration]bool{}
		for range 50 {
			got := d.backoff(attempt)
			if got < ceil/2 || got > ceil {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, got, ceil/2, ceil)
			}
			seen[got] = true
		}
		if len(seen) < 2 {
			t.Errorf("backoff(%d) has no jitter", attempt)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for name, o := range map[string]Options{
		"no stream":       {Backends: []Backend{newMem("a")}},
		"no backends":     {Stream: "s"},
		"duplicate names": {Stream: "s", Backends: []Backend{newMem("a"), newMem("a")}},
		"dead is source":  {Stream: "s", DeadLetterStream: "s", Backends: []Backend{newMem("a")}},
	} {
		if _, err := New(rdb, o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	d, err := New(rdb, Options{Stream: "s", Backends: []Backend{newMem("a")}})
	if err != nil {
		t.Fatal(err)
	}
	if d.o.DeadLetterStream != "s:dead" || d.o.Group != DefaultGroup || d.o.ClaimInterval != DefaultClaimIdle/2 {
		t.Errorf("defaults not applied: %+v", d.o)
	}
}
