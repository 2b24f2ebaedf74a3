package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/llm-proxy/llm-proxy/eventsink"
	"github.com/llm-proxy/llm-proxy/eventsink/dispatch"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// TestDispatcherDurability is the durability proof: 10,000 events in
// the stream; `llm-proxy dispatch` (the real binary) is killed with SIGKILL
// part-way, while a batch is in flight and unacknowledged; a new process
// claims what the dead one left pending and finishes. The webhook receiver
// must have seen every event id, and exactly 10,000 distinct ids; repeats
// are allowed (at least once) and counted.
func TestDispatcherDurability(t *testing.T) {
	const (
		events   = 10_000
		killAt   = 2_050 // distinct ids seen before the kill: mid-batch (batches are 100)
		deadline = 120 * time.Second
	)
	redisURL := testenv.Redis(t)
	bin := durabilityBuild(t)

	rdb := testenv.NewRedisClient(t, redisURL)
	ctx := context.Background()
	stream := fmt.Sprintf("test:durability:%d", time.Now().UnixNano())
	t.Cleanup(func() {
		// One key per call: on a Redis Cluster the two may live on different nodes.
		rdb.Del(context.Background(), stream)
		rdb.Del(context.Background(), stream+dispatch.DeadLetterSuffix)
	})

	// Produced by the real Redis Stream sink, as serve writes them.
	sink := eventsink.NewRedisStreamSink(rdb, stream, 0)
	ids := make([]string, events)
	for lo := 0; lo < events; lo += 1000 {
		batch := make([]*llmproxyv1.UsageEvent, 0, 1000)
		for i := lo; i < lo+1000; i++ {
			ids[i] = eventsink.NewEventID()
			batch = append(batch, &llmproxyv1.UsageEvent{
				Id: ids[i], Time: timestamppb.Now(), RequestId: fmt.Sprintf("req-%d", i), ProjectId: "proj-1", TokenId: "tok-1",
				Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4.1-mini", Status: 200, Outcome: "forwarded",
				LatencyMs: 120, Usage: &llmproxyv1.Usage{PromptTokens: 10, CompletionTokens: 2, TotalTokens: 12},
				UsageSource: "provider", CostUsd: 0.00001,
			})
		}
		if err := sink.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}

	secret := []byte("durability-test-webhook-secret")
	rcv := newDurabilityReceiver(secret, killAt)
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	defer rcv.open() // never leave a handler blocked on the gate

	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"TMPDIR=" + os.TempDir(),
		"LLM_PROXY_REDIS_URL=" + redisURL,
		"LLM_PROXY_EVENTS_STREAM=" + stream,
		"LLM_PROXY_DISPATCH_TARGETS=webhook",
		"LLM_PROXY_WEBHOOK_URL=" + srv.URL + "/events",
		"LLM_PROXY_WEBHOOK_SECRET=" + string(secret),
		"LLM_PROXY_DISPATCH_CLAIM_IDLE=2s",
		"LLM_PROXY_DISPATCH_TIMEOUT=2s",
		"LLM_PROXY_LOG_LEVEL=info",
	}

	// Run 1: deliver until killAt distinct ids were seen; the receiver then
	// holds every further request (as a receiver that processed an event but
	// whose answer was lost), and the dispatcher is killed mid-batch.
	first := durabilityStart(t, bin, env)
	select {
	case <-rcv.reached:
	case err := <-first.done:
		t.Fatalf("first dispatcher exited early: %v\n%s", err, first.logs)
	case <-time.After(deadline):
		t.Fatalf("receiver saw %d ids in %s\n%s", rcv.distinct(), deadline, first.logs)
	}
	// Every request from now on is held, so the batch in flight cannot
	// finish; give the dispatcher a moment to fill its request slots.
	for rcv.held.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if err := first.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-first.done
	killedAt := time.Now()
	seenAtKill, heldAtKill := rcv.distinct(), rcv.held.Load()
	p, err := rdb.XPending(ctx, stream, "dispatch").Result()
	if err != nil {
		t.Fatal(err)
	}
	leftPending := p.Count
	if seenAtKill >= events || leftPending < heldAtKill || heldAtKill == 0 {
		t.Fatalf("the kill must come mid-stream with a batch unacknowledged: %d ids seen, %d pending", seenAtKill, leftPending)
	}
	rcv.open()

	// Run 2: a new process (new consumer) delivers the rest and claims the
	// dead consumer's pending entries once they are 2s idle.
	second := durabilityStart(t, bin, env)
	waitUntil := time.Now().Add(deadline)
	for rcv.distinct() < events {
		select {
		case err := <-second.done:
			t.Fatalf("second dispatcher exited: %v\n%s", err, second.logs)
		default:
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("receiver saw %d of %d ids after %s\nfirst run:\n%s\nsecond run:\n%s",
				rcv.distinct(), events, deadline, durabilityTail(first.logs.String(), 20), durabilityTail(second.logs.String(), 40))
		}
		time.Sleep(10 * time.Millisecond)
	}
	completedAt := time.Now()

	// The last acknowledgements follow the last answers closely.
	for {
		p, err = rdb.XPending(ctx, stream, "dispatch").Result()
		if err != nil {
			t.Fatal(err)
		}
		if p.Count == 0 {
			break
		}
		if time.Now().After(completedAt.Add(10 * time.Second)) {
			t.Fatalf("%d entries still pending 10s after every id was seen: %v", p.Count, p.Consumers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second.done:
		if err != nil {
			t.Errorf("second dispatcher did not exit cleanly on SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("second dispatcher still running 15s after SIGTERM")
	}

	seen, firstSeen, phaseOf := rcv.snapshot()
	for _, id := range ids {
		if seen[id] == 0 {
			t.Errorf("event %s never reached the webhook", id)
		}
	}
	if len(seen) != events {
		t.Errorf("receiver saw %d distinct ids, want exactly %d", len(seen), events)
	}
	if n := rcv.badSignatures.Load(); n != 0 {
		t.Errorf("%d requests failed signature verification", n)
	}
	dead, err := rdb.XLen(ctx, stream+dispatch.DeadLetterSuffix).Result()
	if err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Errorf("%d entries dead-lettered; every failure here was retryable", dead)
	}
	if !strings.Contains(second.logs.String(), "claimed entries left pending by another consumer") {
		t.Errorf("second run never claimed the dead consumer's entries:\n%s", durabilityTail(second.logs.String(), 40))
	}

	duplicates := 0
	for _, n := range seen {
		duplicates += n - 1
	}
	// Rates: run 1 from its first request to the kill; run 2 over the
	// entries it read fresh (the claimed ones wait out the 2s claim idle).
	phase1, phase2 := durabilityRate(firstSeen, phaseOf, 1), durabilityRate(firstSeen, phaseOf, 2)
	t.Logf("durability: %d events produced; SIGKILL after %d distinct ids, with %d requests in flight (received, never answered) and %d entries pending on the dead consumer; "+
		"second process finished %s after the kill", events, seenAtKill, heldAtKill, leftPending, completedAt.Sub(killedAt).Round(time.Millisecond))
	t.Logf("durability: %d distinct ids seen (all produced), %d duplicate deliveries (at least once), %d requests answered 500 on purpose",
		len(seen), duplicates, rcv.failed.Load())
	t.Logf("delivery rate to the local webhook: run 1 %.0f events/s (with injected 500s and slow answers), run 2 %.0f events/s (clean)", phase1, phase2)
}

// durabilityRate is the number of ids first seen in a phase, over the time
// from the phase's first to its last first-sighting.
func durabilityRate(firstSeen map[string]time.Time, phaseOf map[string]int, phase int) float64 {
	var times []time.Time
	for id, at := range firstSeen {
		if phaseOf[id] == phase {
			times = append(times, at)
		}
	}
	if len(times) < 2 {
		return 0
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	// Drop the tail of run 2 (entries claimed after the claim idle), keeping
	// the span over which the fresh entries arrived back to back.
	span := times[len(times)-1].Sub(times[0])
	if phase == 2 {
		for i := 1; i < len(times); i++ {
			if times[i].Sub(times[i-1]) > time.Second {
				span = times[i-1].Sub(times[0])
				times = times[:i]
				break
			}
		}
	}
	if span <= 0 {
		return 0
	}
	return float64(len(times)) / span.Seconds()
}

// durabilityReceiver is the webhook: it verifies each request's signature,
// records the event id, sometimes answers 500 or slowly (run 1 only), and
// once it has seen gateAt distinct ids holds every request until open.
type durabilityReceiver struct {
	secret []byte
	gateAt int

	reached  chan struct{} // closed when gateAt distinct ids were seen
	release  chan struct{} // closed by open
	requests atomic.Int64
	failed   atomic.Int64
	held     atomic.Int64

	badSignatures atomic.Int64

	mu        sync.Mutex
	gated     bool
	phase     int
	seen      map[string]int
	firstSeen map[string]time.Time
	phaseOf   map[string]int
	openOnce  sync.Once
}

func newDurabilityReceiver(secret []byte, gateAt int) *durabilityReceiver {
	return &durabilityReceiver{
		secret: secret, gateAt: gateAt, phase: 1,
		reached: make(chan struct{}), release: make(chan struct{}),
		seen: map[string]int{}, firstSeen: map[string]time.Time{}, phaseOf: map[string]int{},
	}
}

func (r *durabilityReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	if err := dispatch.VerifySignature(r.secret, req.Header.Get(dispatch.SignatureHeader),
		req.Header.Get(dispatch.TimestampHeader), body, time.Now(), 5*time.Minute); err != nil {
		r.badSignatures.Add(1)
		w.WriteHeader(401)
		return
	}
	var ev struct {
		ID string `json:"id"`
	}
	id := req.Header.Get(dispatch.IdempotencyHeader)
	if json.Unmarshal(body, &ev) != nil || ev.ID != id || id == "" {
		r.badSignatures.Add(1)
		w.WriteHeader(400)
		return
	}
	n := r.requests.Add(1)

	r.mu.Lock()
	phase := r.phase
	if phase == 1 && n%50 == 0 {
		r.mu.Unlock()
		r.failed.Add(1)
		w.WriteHeader(500)
		return
	}
	if r.seen[id] == 0 {
		r.firstSeen[id] = time.Now()
		r.phaseOf[id] = phase
	}
	r.seen[id]++
	if !r.gated && phase == 1 && len(r.seen) >= r.gateAt {
		r.gated = true
		close(r.reached)
	}
	hold := r.gated
	r.mu.Unlock()

	if hold {
		// Processed, but the answer never gets back: the dispatcher dies first.
		r.held.Add(1)
		<-r.release
		w.WriteHeader(503)
		return
	}
	if phase == 1 && n%200 == 0 {
		time.Sleep(25 * time.Millisecond)
	}
	w.WriteHeader(http.StatusNoContent)
}

// open releases held requests and starts run 2: no more gate or failures.
func (r *durabilityReceiver) open() {
	r.openOnce.Do(func() {
		r.mu.Lock()
		r.gated = false
		r.phase = 2
		r.mu.Unlock()
		close(r.release)
	})
}

func (r *durabilityReceiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *durabilityReceiver) snapshot() (map[string]int, map[string]time.Time, map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]int, len(r.seen))
	for k, v := range r.seen {
		seen[k] = v
	}
	first := make(map[string]time.Time, len(r.firstSeen))
	for k, v := range r.firstSeen {
		first[k] = v
	}
	phase := make(map[string]int, len(r.phaseOf))
	for k, v := range r.phaseOf {
		phase[k] = v
	}
	return seen, first, phase
}

// durabilityBuild builds the llm-proxy binary from the module root.
func durabilityBuild(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build llm-proxy: %v", err)
	}
	gomod, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		t.Fatalf("go env GOMOD: %q, %v", gomod, err)
	}
	bin := filepath.Join(t.TempDir(), "llm-proxy")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/llm-proxy")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type durabilityProc struct {
	cmd  *exec.Cmd
	logs *testenv.LogBuffer
	done chan error
}

func durabilityStart(t *testing.T, bin string, env []string) *durabilityProc {
	t.Helper()
	p := &durabilityProc{cmd: exec.Command(bin, "dispatch"), logs: &testenv.LogBuffer{}, done: make(chan error, 1)}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		err := p.cmd.Wait()
		close(exited)
		p.done <- err
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = p.cmd.Process.Kill()
			<-exited
		}
	})
	return p
}

// durabilityTail returns the last n lines of s.
func durabilityTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
