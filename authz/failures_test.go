package authz

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/store"
)

const sprayer = "203.0.113.7"

// wantGated fails unless err is the failure limit with the given wait.
func wantGated(t *testing.T, err error, wait time.Duration) {
	t.Helper()
	var fe *FailureLimitError
	if !errors.As(err, &fe) || !errors.Is(err, ErrTooManyFailures) || fe.RetryAfter != wait {
		t.Fatalf("err = %v, want a FailureLimitError with RetryAfter %v", err, wait)
	}
	if errors.Is(err, ErrInvalidToken) {
		t.Fatal("a gated request must not look like a bad token (401)")
	}
}

// TestSprayOfRandomTokens: 5,000 random tokens from one address cost as many
// store queries as the failure limit allows, and a bounded number of audit
// rows when the caller follows ShouldAudit and DenialSummaries.
func TestSprayOfRandomTokens(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{}) // 20 failures per minute, audit bursts of 10
	rows := 0
	audit := func(reason string) {
		if record, _ := a.ShouldAudit(sprayer, reason); record {
			rows++
		}
	}
	gated := 0
	for range 5000 {
		secret, _ := NewToken()
		_, err := a.AuthenticateFrom(ctx, sprayer, secret)
		switch {
		case errors.Is(err, ErrTooManyFailures):
			wantGated(t, err, 3*time.Second) // a minute / 20
			gated++
			audit("auth.failure_limited")
		case errors.Is(err, ErrInvalidToken):
			audit(store.AuditAuthUnknownToken)
		default:
			t.Fatalf("err = %v", err)
		}
	}
	if n := f.s.reads.Load(); n != DefaultFailureLimit {
		t.Fatalf("store queried %d times, want %d (the failure limit)", n, DefaultFailureLimit)
	}
	if gated != 5000-DefaultFailureLimit || count(t, a.metrics.gated) != gated {
		t.Fatalf("%d gated (metric %d), want %d", gated, count(t, a.metrics.gated), 5000-DefaultFailureLimit)
	}
	f.now = f.now.Add(DefaultAuditWindow)
	summaries := a.DenialSummaries(false)
	rows += len(summaries)
	// 10 gated rows and a summary of 4,970 more; 10 unknown-token rows and
	// a summary of 10 more.
	if rows != 22 || len(summaries) != 2 ||
		summaries[0].Reason != "auth.failure_limited" || summaries[0].Suppressed != 4970 ||
		summaries[1].Reason != store.AuditAuthUnknownToken || summaries[1].Suppressed != 10 {
		t.Fatalf("%d audit rows, summaries %+v; want 22 rows, summaries of 4970 gated and 10 unknown", rows, summaries)
	}
}

func TestSameUnknownTokenFromOneAddress(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{})
	unknown, _ := NewToken()
	var invalid, gated int
	for range 2000 {
		_, err := a.AuthenticateFrom(ctx, sprayer, unknown)
		switch {
		case errors.Is(err, ErrInvalidToken):
			invalid++
		case errors.Is(err, ErrTooManyFailures):
			gated++
		}
	}
	if n := f.s.reads.Load(); n != 1 || invalid != 20 || gated != 1980 {
		t.Fatalf("store read %d times, %d refused as invalid, %d gated; want 1, 20, 1980", n, invalid, gated)
	}
}

// TestFailureLimitRecovers: the allowance is a token bucket of FailureLimit
// refilled over FailureWindow, so a refused address may try again after
// FailureWindow/FailureLimit, and has its whole allowance back a window
// after its last failure.
func TestFailureLimitRecovers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{FailureLimit: 4, FailureWindow: 40 * time.Second}) // one per 10s
	bad := func() error {
		secret, _ := NewToken()
		_, err := a.AuthenticateFrom(ctx, sprayer, secret)
		return err
	}
	for i := range 4 {
		if err := bad(); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	wantGated(t, bad(), 10*time.Second)
	f.now = f.now.Add(4 * time.Second)
	wantGated(t, bad(), 6*time.Second) // refusals do not extend the wait
	f.now = f.now.Add(6*time.Second - time.Nanosecond)
	wantGated(t, bad(), time.Nanosecond)
	f.now = f.now.Add(time.Nanosecond)
	if err := bad(); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("after the wait: %v", err)
	}
	wantGated(t, bad(), 10*time.Second)
	f.now = f.now.Add(40 * time.Second)
	for i := range 4 {
		if err := bad(); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("a window after the last failure, failure %d: %v", i+1, err)
		}
	}
	wantGated(t, bad(), 10*time.Second)
	if n := f.s.reads.Load(); n != 9 {
		t.Fatalf("store read %d times, want 9 (one per allowed failure)", n)
	}
}

func TestFailureLimitScope(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	a := f.authorizer(f.s, Options{FailureLimit: 2})
	validInUse, display := NewToken()
	hash := a.hasher.Hash(validInUse)
	f.s.mu.Lock()
	f.s.tokens[hash] = store.Token{ID: "tok_2", ProjectID: "proj_1", Hash: hash, Prefix: display, Active: true}
	f.s.mu.Unlock()
	if _, err := a.AuthenticateFrom(ctx, sprayer, validInUse); err != nil {
		t.Fatal(err) // now in the validation cache
	}
	for range 2 {
		secret, _ := NewToken()
		a.AuthenticateFrom(ctx, sprayer, secret)
	}
	unknown, _ := NewToken()
	_, err := a.AuthenticateFrom(ctx, sprayer, unknown)
	wantGated(t, err, 30*time.Second)

	t.Run("a token in the validation cache still works from the address", func(t *testing.T) {
		if _, err := a.AuthenticateFrom(ctx, sprayer, validInUse); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a valid token not yet cached waits like the rest", func(t *testing.T) {
		_, err := a.AuthenticateFrom(ctx, sprayer, f.secret)
		wantGated(t, err, 30*time.Second)
	})
	t.Run("malformed tokens are gated too", func(t *testing.T) {
		_, err := a.AuthenticateFrom(ctx, sprayer, "garbage")
		wantGated(t, err, 30*time.Second)
	})
	t.Run("other addresses are not affected", func(t *testing.T) {
		if _, err := a.AuthenticateFrom(ctx, "198.51.100.9", f.secret); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AuthenticateFrom(ctx, "198.51.100.9", unknown); !errors.Is(err, ErrInvalidToken) {
			t.Fatal(err)
		}
	})
	t.Run("no address, no limit", func(t *testing.T) {
		for range 10 {
			secret, _ := NewToken()
			if _, err := a.AuthenticateFrom(ctx, "", secret); !errors.Is(err, ErrInvalidToken) {
				t.Fatal(err)
			}
		}
	})
}

func TestWhatCountsAsAFailure(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func(*store.Token, *store.Project)
	}{
		{"revoked", func(tk *store.Token, _ *store.Project) { tk.Active = false }},
		{"expired", func(tk *store.Token, _ *store.Project) { e := time.Unix(0, 0); tk.ExpiresAt = &e }},
		{"project inactive", func(_ *store.Token, p *store.Project) { p.Active = false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			a := f.authorizer(f.s, Options{FailureLimit: 3})
			f.update(tc.change)
			for range 3 { // the first from the store, the rest from the cache
				if _, err := a.AuthenticateFrom(ctx, sprayer, f.secret); !refusal(err) {
					t.Fatalf("err = %v, want a refusal", err)
				}
			}
			unknown, _ := NewToken()
			_, err := a.AuthenticateFrom(ctx, sprayer, unknown)
			wantGated(t, err, 20*time.Second)
		})
	}
	t.Run("store errors do not count", func(t *testing.T) {
		f := newFixture(t, nil)
		a := f.authorizer(failingStore{f.s}, Options{FailureLimit: 1})
		for range 5 {
			if _, err := a.AuthenticateFrom(ctx, sprayer, f.secret); err == nil || refusal(err) {
				t.Fatalf("err = %v, want the store's", err)
			}
		}
	})
	t.Run("disabled", func(t *testing.T) {
		f := newFixture(t, nil)
		a := f.authorizer(f.s, Options{FailureLimit: -1})
		for range 100 {
			secret, _ := NewToken()
			if _, err := a.AuthenticateFrom(ctx, sprayer, secret); !errors.Is(err, ErrInvalidToken) {
				t.Fatal(err)
			}
		}
	})
}

// failingStore fails every token lookup.
type failingStore struct{ *memStore }

func (failingStore) GetTokenByHash(context.Context, string) (store.Token, error) {
	return store.Token{}, errors.New("database is locked")
}

func TestFailureGateTracksBoundedAddresses(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	g := newFailureGate(1, time.Minute, 2)
	for _, addr := range []string{"a", "b", "c"} {
		g.fail(addr, now)
	}
	for addr, want := range map[string]time.Duration{"a": time.Minute, "b": time.Minute, "c": 0} {
		if got := g.wait(addr, now); got != want {
			t.Errorf("wait(%s) = %v, want %v (c is beyond the bound)", addr, got, want)
		}
	}
	// Two windows on, a and b are forgotten: room for c.
	now = now.Add(2 * time.Minute)
	g.fail("c", now)
	if got := g.wait("c", now); got != time.Minute {
		t.Errorf("wait(c) = %v, want 1m", got)
	}
	if n := len(g.cur) + len(g.prev); n != 1 {
		t.Errorf("%d addresses tracked, want 1", n)
	}
}

// TestFailureGateForgetsOnlyPaidDebts compares the gate, which forgets
// addresses by rotating generations of maps, with a gate that forgets
// nothing, over a random history: their answers must be the same.
func TestFailureGateForgetsOnlyPaidDebts(t *testing.T) {
	const limit, window = 5, time.Minute
	interval := window / limit
	g := newFailureGate(limit, window, 1<<20)
	reference := map[string]time.Time{}
	refWait := func(addr string, now time.Time) time.Duration {
		tat, ok := reference[addr]
		if !ok {
			return 0
		}
		return max(0, tat.Add(interval).Sub(now)-window)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(1_700_000_000, 0)
	addrs := []string{"a", "b", "c", "d"}
	gated := 0
	for i := range 20_000 {
		step := window / 20 // dense enough to run into the limit often ...
		if rng.IntN(50) == 0 {
			step = 3 * window // ... with now and then a lull past a rotation or two
		}
		now = now.Add(time.Duration(rng.Int64N(int64(step))))
		addr := addrs[rng.IntN(len(addrs))]
		w := g.wait(addr, now)
		if rw := refWait(addr, now); w != rw {
			t.Fatalf("step %d: wait(%s) = %v, reference %v", i, addr, w, rw)
		}
		if w > 0 {
			gated++
		}
		if w == 0 && rng.IntN(4) > 0 {
			g.fail(addr, now)
			tat := max(reference[addr].UnixNano(), now.UnixNano())
			reference[addr] = time.Unix(0, min(tat+int64(interval), now.Add(window).UnixNano()))
		}
	}
	if gated < 1000 {
		t.Fatalf("only %d of 20000 steps were refused: the history does not exercise the limit", gated)
	}
}
