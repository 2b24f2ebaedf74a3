package authz

import (
	"testing"
	"time"
)

func TestShouldAuditAggregatesBeyondTheBurst(t *testing.T) {
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{}) // bursts of 10 per minute
	start := f.now
	recorded := 0
	for range 2000 {
		record, suppressed := a.ShouldAudit(sprayer, "auth.unknown_token")
		if suppressed != 0 {
			t.Fatalf("suppressed %d within the first window", suppressed)
		}
		if record {
			recorded++
		}
	}
	if recorded != DefaultAuditBurst || count(t, a.metrics.auditSuppressed) != 1990 {
		t.Fatalf("%d of 2000 to be recorded (%d suppressed), want 10 (1990)", recorded, count(t, a.metrics.auditSuppressed))
	}
	f.now = start.Add(DefaultAuditWindow - time.Nanosecond)
	if s := a.DenialSummaries(false); len(s) != 0 {
		t.Fatalf("summaries before the window ended: %+v", s)
	}
	f.now = start.Add(DefaultAuditWindow)
	want := DenialSummary{Addr: sprayer, Reason: "auth.unknown_token", Suppressed: 1990, Since: start, Until: start.Add(DefaultAuditWindow)}
	if s := a.DenialSummaries(false); len(s) != 1 || s[0] != want {
		t.Fatalf("summaries = %+v, want [%+v]", s, want)
	}
	if s := a.DenialSummaries(false); len(s) != 0 {
		t.Fatalf("a summary was handed out twice: %+v", s)
	}
	if record, suppressed := a.ShouldAudit(sprayer, "auth.unknown_token"); !record || suppressed != 0 {
		t.Fatalf("a new window starts afresh: record %t, suppressed %d", record, suppressed)
	}
}

// TestShouldAuditCarriesTheCount: a window that ended is summarised on the
// pair's next recorded denial if that comes before DenialSummaries.
func TestShouldAuditCarriesTheCount(t *testing.T) {
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{AuditBurst: 2, AuditWindow: 10 * time.Second})
	for range 7 {
		a.ShouldAudit(sprayer, "auth.revoked_token")
	}
	f.now = f.now.Add(10 * time.Second)
	if record, suppressed := a.ShouldAudit(sprayer, "auth.revoked_token"); !record || suppressed != 5 {
		t.Fatalf("record %t, suppressed %d; want true, 5", record, suppressed)
	}
	f.now = f.now.Add(time.Hour)
	if s := a.DenialSummaries(false); len(s) != 0 {
		t.Fatalf("the carried count was summarised again: %+v", s)
	}
}

func TestShouldAuditKeys(t *testing.T) {
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{AuditBurst: 1, MaxAddresses: 3})
	start := f.now
	for _, d := range []struct {
		addr, reason string
		record       bool
	}{
		{"a", "r1", true},
		{"a", "r1", false},
		{"a", "r2", true}, // another reason
		{"a", "r2", false},
		{"b", "r1", true}, // another address; the bound of 3 pairs is reached
		{"c", "r1", true}, // beyond it: counted under OverflowAddr
		{"d", "r1", false},
		{"e", "r2", true},
		{"e", "r2", false},
		{"b", "r1", false}, // b is tracked
	} {
		if record, _ := a.ShouldAudit(d.addr, d.reason); record != d.record {
			t.Fatalf("ShouldAudit(%s, %s) = %t, want %t", d.addr, d.reason, record, d.record)
		}
	}
	f.now = start.Add(time.Second)
	got := a.DenialSummaries(true) // final: every window ends now
	until := start.Add(time.Second)
	want := []DenialSummary{
		{OverflowAddr, "r1", 1, start, until},
		{OverflowAddr, "r2", 1, start, until},
		{"a", "r1", 1, start, until},
		{"a", "r2", 1, start, until},
		{"b", "r1", 1, start, until},
	}
	if len(got) != len(want) {
		t.Fatalf("summaries = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("summary %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if n := len(a.denials.windows); n != 0 {
		t.Errorf("%d windows left after the final drain", n)
	}
}

func TestShouldAuditDisabled(t *testing.T) {
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{AuditBurst: -1})
	for range 100 {
		if record, _ := a.ShouldAudit(sprayer, "auth.unknown_token"); !record {
			t.Fatal("with aggregation disabled every denial is recorded")
		}
	}
	if s := a.DenialSummaries(true); len(s) != 0 {
		t.Fatalf("summaries = %+v", s)
	}
}
