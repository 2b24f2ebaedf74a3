package authz

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// OverflowAddr is the address of a [DenialSummary] that counts denials from
// addresses beyond [Options.MaxAddresses] (many different clients at once);
// [Authorizer.ShouldAudit] applies the burst to all of them together.
const OverflowAddr = "*"

// DenialSummary counts the denials [Authorizer.ShouldAudit] told the caller
// not to audit one by one: those of one client address and reason in the
// window from Since to Until.
type DenialSummary struct {
	Addr       string // the client address, or OverflowAddr
	Reason     string // as given to ShouldAudit
	Suppressed int    // > 0
	Since      time.Time
	Until      time.Time
}

// ShouldAudit says whether the caller should audit a denial of a request
// from client address addr for reason (the caller's label, typically the
// audit action, e.g. "auth.unknown_token"), so that a flood of denials costs
// a bounded number of audit rows. Per address and reason, the first
// [Options.AuditBurst] denials of each [Options.AuditWindow] (which starts
// at the first of them) get record true; the rest get record false and are
// counted. Each count is handed out exactly once, either with the pair's
// next recorded denial, as suppressed (> 0: "this many earlier denials from
// addr for reason were not recorded"), or, for a window that ended with no
// further denial, by [Authorizer.DenialSummaries]. ShouldAudit never blocks
// on I/O.
func (a *Authorizer) ShouldAudit(addr, reason string) (record bool, suppressed int) {
	record, suppressed = a.denials.should(addr, reason, a.now())
	if !record {
		a.metrics.auditSuppressed.Inc()
	}
	return record, suppressed
}

// DenialSummaries returns the counts of denials [Authorizer.ShouldAudit]
// suppressed in windows that have ended, one summary per address, reason
// and window, and forgets them; with final, it ends every window first
// (call it so at shutdown, before the audit log's last flush). Call it
// periodically, as often as the audit log is flushed, and audit each
// summary as one row. Summaries come ordered by Since, then Addr and Reason.
func (a *Authorizer) DenialSummaries(final bool) []DenialSummary {
	return a.denials.drain(a.now(), final)
}

// denialAggregator is ShouldAudit's state: one window per address and
// reason, at most max of them (plus one OverflowAddr window per reason).
// Windows are forgotten when DenialSummaries drains them, or restarted when
// their pair is denied again after they ended.
type denialAggregator struct {
	burst  int // ≤ 0: record every denial
	window time.Duration
	max    int

	mu      sync.Mutex
	windows map[denialKey]*denialWindow // guarded by mu
}

type denialKey struct{ addr, reason string }

type denialWindow struct {
	start      time.Time
	recorded   int
	suppressed int
}

func newDenialAggregator(burst int, window time.Duration, maxPairs int) *denialAggregator {
	return &denialAggregator{burst: burst, window: window, max: maxPairs, windows: make(map[denialKey]*denialWindow)}
}

func (d *denialAggregator) should(addr, reason string, now time.Time) (bool, int) {
	if d.burst <= 0 {
		return true, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := denialKey{addr, reason}
	w, ok := d.windows[k]
	if !ok && len(d.windows) >= d.max {
		k = denialKey{OverflowAddr, reason}
		w, ok = d.windows[k]
	}
	if !ok {
		w = &denialWindow{start: now}
		d.windows[k] = w
	}
	carried := 0
	if !now.Before(w.start.Add(d.window)) {
		carried = w.suppressed
		*w = denialWindow{start: now}
	}
	if w.recorded < d.burst {
		w.recorded++
		return true, carried
	}
	w.suppressed++
	return false, 0
}

func (d *denialAggregator) drain(now time.Time, final bool) []DenialSummary {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []DenialSummary
	for k, w := range d.windows {
		end := w.start.Add(d.window)
		if now.Before(end) && !final {
			continue
		}
		if w.suppressed > 0 {
			out = append(out, DenialSummary{Addr: k.addr, Reason: k.reason, Suppressed: w.suppressed, Since: w.start, Until: minTime(end, now)})
		}
		delete(d.windows, k)
	}
	if len(d.windows) == 0 {
		d.windows = make(map[denialKey]*denialWindow) // maps do not shrink
	}
	slices.SortFunc(out, func(x, y DenialSummary) int {
		if c := x.Since.Compare(y.Since); c != 0 {
			return c
		}
		if c := strings.Compare(x.Addr, y.Addr); c != 0 {
			return c
		}
		return strings.Compare(x.Reason, y.Reason)
	})
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
