package eventsink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/store"
)

// Interface guard: the real store is what AuditLog writes to.
var _ auditStore = (*store.Store)(nil)

// openAuditStore returns a fresh, migrated SQLite store.
func openAuditStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "llm-proxy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(t.Context(), "up", nil); err != nil {
		t.Fatal(err)
	}
	return st
}

// flakyAuditStore fails AddAudit while fail is set; with commitThenFail it
// stores the batch and then reports failure, like a commit whose answer
// was lost.
type flakyAuditStore struct {
	*store.Store
	fail           atomic.Bool
	commitThenFail atomic.Bool
	block          chan struct{} // if set, AddAudit waits for it to close
}

var errAuditStoreDown = errors.New("database unreachable")

func (s *flakyAuditStore) AddAudit(ctx context.Context, events []store.AuditEvent) error {
	if s.block != nil {
		<-s.block
	}
	if s.commitThenFail.Load() {
		if err := s.Store.AddAudit(ctx, events); err != nil {
			return err
		}
		return errAuditStoreDown
	}
	if s.fail.Load() {
		return errAuditStoreDown
	}
	return s.Store.AddAudit(ctx, events)
}

// storedAudit returns every stored event, newest first.
func storedAudit(t *testing.T, st *store.Store) []store.AuditEvent {
	t.Helper()
	events, _, err := st.ListAudit(t.Context(), store.AuditQuery{Limit: store.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func auditDenial(requestID string) store.AuditEvent {
	return store.AuditEvent{
		Action: store.AuditAuthUnknownToken, TargetType: store.AuditTargetToken,
		RequestID: requestID, ClientAddress: "192.0.2.1", Outcome: store.AuditOutcomeDenied,
	}
}

func auditRequestIDs(events []store.AuditEvent) []string {
	var ids []string
	for _, e := range events {
		ids = append(ids, e.RequestID)
	}
	slices.Sort(ids)
	return ids
}

func TestAuditLogRecordAndFlush(t *testing.T) {
	t.Parallel()
	st := openAuditStore(t)
	now := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	a, err := NewAuditLog(st, AuditOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	given := auditDenial("r1")
	given.ID, given.Time = "aud_given", now.Add(-time.Hour)
	a.Record(given)
	a.Record(auditDenial("r2"))
	a.Record(store.AuditEvent{RequestID: "no action"}) // would poison the batch: dropped
	if err := a.Write(t.Context(), store.AuditEvent{RequestID: "no action"}); err == nil {
		t.Error("Write without an action: want an error")
	}
	if s := a.Stats(); s.Pending != 2 || s.Dropped != 1 {
		t.Errorf("Stats = %+v, want 2 pending, 1 dropped", s)
	}
	if got := storedAudit(t, st); len(got) != 0 {
		t.Fatalf("stored before Flush: %v", got)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := storedAudit(t, st)
	if len(got) != 2 {
		t.Fatalf("stored %d events, want 2", len(got))
	}
	// Newest first: r2, stamped now, then the given one.
	if got[0].RequestID != "r2" || !strings.HasPrefix(got[0].ID, "aud_") || !got[0].Time.Equal(now) {
		t.Errorf("recorded without id and time: %+v", got[0])
	}
	if got[1].ID != "aud_given" || !got[1].Time.Equal(given.Time) {
		t.Errorf("id and time given were not kept: %+v", got[1])
	}
	if s := a.Stats(); s.Written != 2 || s.Pending != 0 {
		t.Errorf("Stats = %+v", s)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatalf("empty flush: %v", err)
	}
	if len(storedAudit(t, st)) != 2 {
		t.Error("an empty flush changed the log")
	}
}

func TestAuditLogWriteIsImmediate(t *testing.T) {
	t.Parallel()
	st := openAuditStore(t)
	a, err := NewAuditLog(st, AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev := store.AuditEvent{Action: store.AuditProjectCreate, ProjectID: "p1", RequestID: "r1", Outcome: store.AuditOutcomeSuccess}
	if err := a.Write(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	got := storedAudit(t, st)
	if len(got) != 1 || got[0].Action != store.AuditProjectCreate || got[0].ID == "" || got[0].Time.IsZero() {
		t.Errorf("after Write, without a flush: %+v", got)
	}
}

// TestAuditLogBoundedBuffer fills the buffer: Record drops and counts, a
// management Write still gets through, and the next flush logs the drops.
func TestAuditLogBoundedBuffer(t *testing.T) {
	t.Parallel()
	st := openAuditStore(t)
	var logs strings.Builder
	var logMu sync.Mutex
	reg := prometheus.NewRegistry()
	a, err := NewAuditLog(st, AuditOptions{
		MaxPending: 3,
		Logger:     zerolog.New(auditLogBuffer{&logMu, &logs}),
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r1", "r2", "r3", "r4", "r5"} {
		a.Record(auditDenial(id))
	}
	if err := a.Write(t.Context(), store.AuditEvent{Action: store.AuditTokenRevoke, RequestID: "m1"}); err != nil {
		t.Fatalf("Write with a full buffer: %v", err)
	}
	if s := a.Stats(); s.Dropped != 2 || s.Pending != 3 || s.Written != 1 {
		t.Errorf("Stats = %+v, want 2 dropped, 3 pending, 1 written", s)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := auditRequestIDs(storedAudit(t, st)), []string{"m1", "r1", "r2", "r3"}; !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
	logMu.Lock()
	line := logs.String()
	logMu.Unlock()
	if !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, `"audit_events":2`) {
		t.Errorf("no error line counting 2 drops: %s", line)
	}
	// Drops are reported once, not at every flush.
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	if n := strings.Count(logs.String(), "audit buffer full"); n != 1 {
		t.Errorf("%d drop lines after two flushes, want 1", n)
	}
	logMu.Unlock()
	// The buffer has room again.
	a.Record(auditDenial("r6"))
	if s := a.Stats(); s.Dropped != 2 || s.Pending != 1 {
		t.Errorf("after the flush, Stats = %+v", s)
	}

	for name, want := range map[string]float64{
		"llm_proxy_audit_events_written_total": 4,
		"llm_proxy_audit_events_dropped_total": 2,
		"llm_proxy_audit_store_errors_total":   0,
		"llm_proxy_audit_events_pending":       1,
	} {
		if got := auditMetric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestAuditLogRetries has the store fail: nothing is lost, nothing is
// stored twice, even when a failed write had in fact been committed.
func TestAuditLogRetries(t *testing.T) {
	t.Parallel()
	st := &flakyAuditStore{Store: openAuditStore(t)}
	a, err := NewAuditLog(st, AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	a.Record(auditDenial("r1"))
	a.Record(auditDenial("r2"))
	if err := a.Flush(t.Context()); !errors.Is(err, errAuditStoreDown) {
		t.Fatalf("Flush with the store down: %v", err)
	}
	err = a.Write(t.Context(), store.AuditEvent{Action: store.AuditProjectDelete, RequestID: "m1"})
	if !errors.Is(err, errAuditStoreDown) {
		t.Fatalf("Write with the store down: %v", err)
	}
	if s := a.Stats(); s.Pending != 3 || s.StoreErrors != 2 || s.Written != 0 {
		t.Errorf("Stats = %+v, want 3 pending, 2 store errors", s)
	}

	// The store takes the batch but the answer is lost: the events are
	// kept, and the retry does not store them again.
	st.fail.Store(false)
	st.commitThenFail.Store(true)
	a.Record(auditDenial("r3"))
	if err := a.Flush(t.Context()); !errors.Is(err, errAuditStoreDown) {
		t.Fatalf("Flush with a lost commit: %v", err)
	}
	st.commitThenFail.Store(false)
	a.Record(auditDenial("r4"))
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := auditRequestIDs(storedAudit(t, st.Store)), []string{"m1", "r1", "r2", "r3", "r4"}; !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v (each once)", got, want)
	}
	if s := a.Stats(); s.Pending != 0 {
		t.Errorf("Stats = %+v, want nothing pending", s)
	}
}

// TestAuditLogRecordNeverBlocks records while a flush is stuck in the store.
func TestAuditLogRecordNeverBlocks(t *testing.T) {
	t.Parallel()
	st := &flakyAuditStore{Store: openAuditStore(t), block: make(chan struct{})}
	a, err := NewAuditLog(st, AuditOptions{MaxPending: 50})
	if err != nil {
		t.Fatal(err)
	}
	a.Record(auditDenial("first"))
	flushed := make(chan error, 1)
	go func() { flushed <- a.Flush(context.Background()) }()
	// Wait until the flush has taken the buffer and is stuck in the store.
	for a.Stats().Pending != 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		for range 100 {
			a.Record(auditDenial("during"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Record blocked behind a stuck flush")
	}
	close(st.block)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Pending != 50 || s.Dropped != 50 || s.Written != 1 {
		t.Errorf("Stats = %+v, want 50 pending, 50 dropped, 1 written", s)
	}
}

func TestAuditLogJSONL(t *testing.T) {
	t.Parallel()
	st := &flakyAuditStore{Store: openAuditStore(t)}
	path := filepath.Join(t.TempDir(), "audit", "audit.jsonl") // the directory is created
	a, err := NewAuditLog(st, AuditOptions{JSONLPath: path})
	if err != nil {
		t.Fatal(err)
	}
	mgmt := store.AuditEvent{
		ID: "aud_m1", Time: time.Date(2025, 3, 4, 5, 6, 7, 120000000, time.UTC), Action: store.AuditProjectCreate,
		Actor: "management:0a1b2c3d", ProjectID: "proj_1", TargetType: store.AuditTargetProject, TargetID: "proj_1",
		RequestID: "req-1", ClientAddress: "192.0.2.9", Outcome: store.AuditOutcomeSuccess, Detail: "fields: name",
	}
	if err := a.Write(t.Context(), mgmt); err != nil {
		t.Fatal(err)
	}
	// A failed flush, then a good one: each event is in the file once.
	st.fail.Store(true)
	a.Record(auditDenial("r1"))
	if err := a.Flush(t.Context()); err == nil {
		t.Fatal("Flush with the store down succeeded")
	}
	st.fail.Store(false)
	a.Record(auditDenial("r2"))
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.Record(auditDenial("after close"))
	if s := a.Stats(); s.Dropped != 1 || s.Pending != 0 {
		t.Errorf("after Close, Stats = %+v; want the late Record dropped", s)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3: %v", len(lines), lines)
	}
	want := map[string]any{
		"id": "aud_m1", "time": "2025-03-04T05:06:07.12Z", "action": "project.create", "actor": "management:0a1b2c3d",
		"project_id": "proj_1", "target_type": "project", "target_id": "proj_1", "request_id": "req-1",
		"client_address": "192.0.2.9", "outcome": "success", "detail": "fields: name",
	}
	if !sameAuditLine(lines[0], want) {
		t.Errorf("line 1 = %v\nwant %v", lines[0], want)
	}
	if v, ok := lines[1]["project_id"]; !ok || v != nil {
		t.Errorf("an event without a project: project_id = %v (present: %t), want null", v, ok)
	}
	if lines[1]["request_id"] != "r1" || lines[2]["request_id"] != "r2" {
		t.Errorf("lines 2 and 3 = %v, %v; want r1, r2", lines[1], lines[2])
	}
	if got := auditRequestIDs(storedAudit(t, st.Store)); !slices.Equal(got, []string{"r1", "r2", "req-1"}) {
		t.Errorf("stored %v", got)
	}
}

func TestAuditLogConcurrent(t *testing.T) {
	t.Parallel()
	st := openAuditStore(t)
	a, err := NewAuditLog(st, AuditOptions{MaxPending: 200, JSONLPath: filepath.Join(t.TempDir(), "a.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var flusher sync.WaitGroup
	flusher.Go(func() {
		for ctx.Err() == nil {
			if err := a.Flush(ctx); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		}
	})
	const workers, each = 8, 100
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range each {
				if i%25 == 0 {
					if err := a.Write(context.Background(), store.AuditEvent{Action: store.AuditTokenCreate}); err != nil {
						t.Error(err)
					}
					continue
				}
				a.Record(auditDenial("r"))
			}
		})
	}
	wg.Wait()
	cancel()
	flusher.Wait()
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	s := a.Stats()
	n, _, err := st.ListAudit(t.Context(), store.AuditQuery{Limit: store.MaxAuditLimit})
	if err != nil {
		t.Fatal(err)
	}
	if s.Written+s.Dropped != workers*each || int64(len(n)) != s.Written || s.Pending != 0 {
		t.Errorf("Stats = %+v, %d stored; want written + dropped = %d, all written stored", s, len(n), workers*each)
	}
}

func TestNewAuditLogErrors(t *testing.T) {
	t.Parallel()
	st := openAuditStore(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuditLog(st, AuditOptions{JSONLPath: filepath.Join(file, "audit.jsonl")}); err == nil {
		t.Error("a JSONL path under a file: want an error")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewAuditLog(st, AuditOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuditLog(st, AuditOptions{Registerer: reg}); err == nil {
		t.Error("a second AuditLog on one registry: want an error")
	}
}

// auditMetric returns the value of a counter or gauge without labels.
func auditMetric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s: %d series, want 1", name, len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no series %s", name)
	return 0
}

func sameAuditLine(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// auditLogBuffer serialises writes to a strings.Builder.
type auditLogBuffer struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w auditLogBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
