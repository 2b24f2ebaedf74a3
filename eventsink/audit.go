package eventsink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/ids"
	"github.com/llm-proxy/llm-proxy/store"
)

// auditStore is where audit events land; *store.Store provides it.
type auditStore interface {
	AddAudit(ctx context.Context, events []store.AuditEvent) error
}

// DefaultAuditMaxPending is [AuditOptions.MaxPending] when it is 0.
const DefaultAuditMaxPending = 10_000

// auditBatchSize bounds the events one store transaction writes.
const auditBatchSize = 500

// Log field names of the audit log's own lines.
const (
	logAuditEvents  = "audit_events"
	logAuditDropped = "audit_dropped_total"
	logAuditPath    = "path"
)

// AuditOptions configures an [AuditLog]. The zero value is usable: no JSONL
// copy, [DefaultAuditMaxPending], no logs, no metrics.
type AuditOptions struct {
	// JSONLPath, if set, is a file every event is also appended to, one JSON
	// object per line (the fields of GET /manage/audit's events). It is
	// created with mode 0600, its directory with 0700, and never rotated.
	// The database stays the record: a failed append is logged and counted,
	// and the event is still stored.
	JSONLPath string
	// MaxPending bounds the events [AuditLog.Record] holds before they are
	// stored; beyond it Record drops. 0 means [DefaultAuditMaxPending].
	MaxPending int
	// Logger receives one error line per flush that saw drops, and one per
	// failed JSONL append. The zero Logger logs nothing.
	Logger zerolog.Logger
	// Registerer, if set, receives the llm_proxy_audit_* series.
	Registerer prometheus.Registerer
	// Now is the clock that stamps events without a time; nil means time.Now.
	Now func() time.Time
}

// AuditLog writes audit events to the store (and optionally to a JSONL
// file). It offers two ways in, for two kinds of caller:
//
//   - [AuditLog.Record] is for the request path (security denials). It never
//     blocks on I/O: it appends to a buffer that [AuditLog.Flush] writes in
//     batches. The buffer holds at most MaxPending events; when it is full,
//     Record drops the event and counts it (llm_proxy_audit_events_dropped_total),
//     and the next Flush logs the drops at error. A flood of denials
//     (someone spraying invalid tokens) thus costs bounded memory and never
//     slows a request down.
//   - [AuditLog.Write] is for management operations, which are rare and
//     authenticated. It stores the event before it returns, so the record of
//     a change is durable before the change is acknowledged, and a full
//     buffer never drops it. If the store fails, Write keeps the event for
//     the next Flush (outside the MaxPending bound: a management operation
//     has just written to the same database, so such events cannot pile up
//     faster than the database accepts changes) and returns the error for
//     the caller to log.
//
// A failed Flush keeps its events and the next one retries them; since
// [store.Store.AddAudit] skips ids it already has, a retry never stores an
// event twice. A crash loses what Record buffered since the last successful
// flush (at most one flush interval). Every event gets an id ("aud_…") when
// it has none and the AuditLog's clock time when its Time is zero.
//
// Run Flush periodically (like [Rollup.Flush]) and Close once at shutdown,
// after the last Record. An AuditLog is safe for concurrent use.
type AuditLog struct {
	store      auditStore
	log        zerolog.Logger
	now        func() time.Time
	maxPending int

	written     atomic.Int64
	dropped     atomic.Int64
	storeErrors atomic.Int64
	fileErrors  atomic.Int64

	flushMu         sync.Mutex // serialises Flush and Close
	droppedReported int64      // the dropped count last logged; guarded by flushMu

	mu     sync.Mutex
	queue  []store.AuditEvent // recorded, neither in the file nor stored; guarded by mu
	retry  []store.AuditEvent // in the file (if any), not stored yet; guarded by mu
	closed bool               // guarded by mu

	fileMu sync.Mutex
	file   *os.File // the JSONL copy; nil without one or after Close; guarded by fileMu
	path   string
}

// NewAuditLog returns an AuditLog writing to s. It opens (creating) the
// JSONL file if o names one, and registers the metrics if o has a
// Registerer; either failing is an error.
func NewAuditLog(s auditStore, o AuditOptions) (*AuditLog, error) {
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultAuditMaxPending
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &AuditLog{store: s, log: o.Logger, now: o.Now, maxPending: o.MaxPending, path: o.JSONLPath}
	if o.JSONLPath != "" {
		if err := os.MkdirAll(filepath.Dir(o.JSONLPath), 0o700); err != nil {
			return nil, fmt.Errorf("audit log file: %w", err)
		}
		f, err := os.OpenFile(o.JSONLPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit log file: %w", err)
		}
		a.file = f
	}
	if o.Registerer != nil {
		if err := a.register(o.Registerer); err != nil {
			if a.file != nil {
				a.file.Close()
			}
			return nil, fmt.Errorf("audit log metrics: %w", err)
		}
	}
	return a, nil
}

// register exposes the counters as Prometheus series.
func (a *AuditLog) register(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	return errors.Join(
		reg.Register(counter("llm_proxy_audit_events_written_total",
			"Audit events stored in the database.", &a.written)),
		reg.Register(counter("llm_proxy_audit_events_dropped_total",
			"Audit events from the request path dropped because the audit buffer was full.", &a.dropped)),
		reg.Register(counter("llm_proxy_audit_store_errors_total",
			"Failed attempts to store audit events; the events are kept and retried.", &a.storeErrors)),
		reg.Register(counter("llm_proxy_audit_file_errors_total",
			"Failed appends to the audit JSONL file; the events are still stored in the database.", &a.fileErrors)),
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "llm_proxy_audit_events_pending",
			Help: "Audit events recorded but not yet stored in the database.",
		}, func() float64 { return float64(a.Stats().Pending) })),
	)
}

// Record buffers ev for the next [AuditLog.Flush]; it never blocks on I/O.
// When MaxPending events are already waiting, after Close, or when ev has
// no Action (the store would refuse it, and with it the whole batch), ev is
// dropped and counted.
func (a *AuditLog) Record(ev store.AuditEvent) {
	ev = a.complete(ev)
	a.mu.Lock()
	if a.closed || ev.Action == "" || len(a.queue)+len(a.retry) >= a.maxPending {
		a.mu.Unlock()
		a.dropped.Add(1)
		return
	}
	a.queue = append(a.queue, ev)
	a.mu.Unlock()
}

// Write appends ev to the JSONL file (if any) and stores it before
// returning. If the store fails, ev is kept for the next [AuditLog.Flush]
// and the error returned: the event is late, not lost (unless the process
// dies first), and the caller should log that.
func (a *AuditLog) Write(ctx context.Context, ev store.AuditEvent) error {
	ev = a.complete(ev)
	if ev.Action == "" {
		return fmt.Errorf("write audit event %s: no action", ev.ID)
	}
	a.appendFile([]store.AuditEvent{ev})
	if err := a.store.AddAudit(ctx, []store.AuditEvent{ev}); err != nil {
		a.storeErrors.Add(1)
		a.mu.Lock()
		a.retry = append(a.retry, ev)
		a.mu.Unlock()
		return fmt.Errorf("write audit event %s (%s), kept for the next flush: %w", ev.ID, ev.Action, err)
	}
	a.written.Add(1)
	return nil
}

// complete gives ev an id and a time if it has none.
func (a *AuditLog) complete(ev store.AuditEvent) store.AuditEvent {
	if ev.ID == "" {
		ev.ID = ids.New("aud")
	}
	if ev.Time.IsZero() {
		ev.Time = a.now()
	}
	return ev
}

// Flush stores the events recorded (and those kept from failed writes)
// since the last successful flush, in transactions of at most a few
// hundred events. On error, what was not stored is kept for the next
// flush. It also logs, at error, how many events Record dropped since the
// last flush, if any.
func (a *AuditLog) Flush(ctx context.Context) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	if d := a.dropped.Load(); d > a.droppedReported {
		a.log.Error().Int64(logAuditEvents, d-a.droppedReported).Int64(logAuditDropped, d).
			Msg("audit buffer full: events from the request path were dropped")
		a.droppedReported = d
	}

	a.mu.Lock()
	fresh, batch := a.queue, a.retry
	a.queue, a.retry = nil, nil
	a.mu.Unlock()
	a.appendFile(fresh)
	batch = append(batch, fresh...)

	for len(batch) > 0 {
		n := min(len(batch), auditBatchSize)
		if err := a.store.AddAudit(ctx, batch[:n]); err != nil {
			a.storeErrors.Add(1)
			a.mu.Lock()
			a.retry = append(batch, a.retry...)
			a.mu.Unlock()
			return fmt.Errorf("flush audit log (%d events pending): %w", len(batch), err)
		}
		a.written.Add(int64(n))
		batch = batch[n:]
	}
	return nil
}

// appendFile writes events to the JSONL file, one line each, in one write.
// A failure is logged and counted, never returned: the database is the
// record, the file a copy.
func (a *AuditLog) appendFile(events []store.AuditEvent) {
	if len(events) == 0 {
		return
	}
	a.fileMu.Lock()
	defer a.fileMu.Unlock()
	if a.file == nil {
		return
	}
	var buf []byte
	for _, ev := range events {
		b, err := json.Marshal(AuditView(ev))
		if err != nil {
			continue // strings and a time always marshal
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := a.file.Write(buf); err != nil {
		a.fileErrors.Add(1)
		a.log.Error().Err(err).Str(logAuditPath, a.path).Int(logAuditEvents, len(events)).
			Msg("audit JSONL append failed; the events are still stored in the database")
	}
}

// AuditJSON is an audit event as people and tools see it: the management
// API's GET /manage/audit and the JSONL copy share this one form.
type AuditJSON struct {
	ID            string  `json:"id"`
	Time          string  `json:"time"`
	Action        string  `json:"action"`
	Actor         string  `json:"actor"`
	ProjectID     *string `json:"project_id"`
	TargetType    string  `json:"target_type"`
	TargetID      string  `json:"target_id"`
	RequestID     string  `json:"request_id"`
	ClientAddress string  `json:"client_address"`
	Outcome       string  `json:"outcome"`
	Detail        string  `json:"detail"`
}

// AuditView returns ev in its [AuditJSON] form (times at µs, as stored).
func AuditView(ev store.AuditEvent) AuditJSON {
	j := AuditJSON{
		ID:            ev.ID,
		Time:          ev.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano),
		Action:        ev.Action,
		Actor:         ev.Actor,
		TargetType:    ev.TargetType,
		TargetID:      ev.TargetID,
		RequestID:     ev.RequestID,
		ClientAddress: ev.ClientAddress,
		Outcome:       ev.Outcome,
		Detail:        ev.Detail,
	}
	if ev.ProjectID != "" {
		j.ProjectID = &ev.ProjectID
	}
	return j
}

// AuditStats are an [AuditLog]'s counters since it was made.
type AuditStats struct {
	Written     int64 // events stored
	Dropped     int64 // events Record dropped (buffer full, or after Close)
	StoreErrors int64 // failed store writes (each failed Write or flush transaction)
	FileErrors  int64 // failed JSONL appends
	Pending     int   // events waiting to be stored
}

// Stats returns the current counters.
func (a *AuditLog) Stats() AuditStats {
	a.mu.Lock()
	pending := len(a.queue) + len(a.retry)
	a.mu.Unlock()
	return AuditStats{
		Written:     a.written.Load(),
		Dropped:     a.dropped.Load(),
		StoreErrors: a.storeErrors.Load(),
		FileErrors:  a.fileErrors.Load(),
		Pending:     pending,
	}
}

// Close flushes what is pending and closes the JSONL file. Record drops
// from then on; Write still stores (without the file). It returns the
// flush's error, if any, joined with the file's.
func (a *AuditLog) Close(ctx context.Context) error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	err := a.Flush(ctx)
	a.fileMu.Lock()
	defer a.fileMu.Unlock()
	if a.file != nil {
		if cerr := a.file.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close audit log file: %w", cerr))
		}
		a.file = nil
	}
	return err
}
