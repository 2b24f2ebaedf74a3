package authz

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/store"
)

// projectList lists the fixture's projects, counting the reads; err, when
// set, fails them.
type projectList struct {
	s     *memStore
	reads atomic.Int64
	mu    sync.Mutex
	err   error
}

func (l *projectList) ListProjects(context.Context) ([]store.Project, error) {
	l.reads.Add(1)
	l.mu.Lock()
	err := l.err
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	var out []store.Project
	for _, id := range slices.Sorted(maps.Keys(l.s.projects)) {
		out = append(out, l.s.projects[id])
	}
	return out, nil
}

func (l *projectList) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

// origins lists the origins of each policy, in order.
func origins(ps []*policy.CORS) [][]string {
	out := [][]string{}
	for _, p := range ps {
		out = append(out, p.Origins)
	}
	return out
}

func TestOriginsReadOncePerTTLAndOnInvalidation(t *testing.T) {
	f := newFixture(t, nil)
	f.update(func(_ *store.Token, p *store.Project) {
		p.Rules.CORS = &policy.CORS{Origins: []string{"https://app.example.com"}}
	})
	f.s.projects["proj_2"] = store.Project{ID: "proj_2", Active: true,
		Rules: policy.Rules{CORS: &policy.CORS{Origins: []string{"https://*.example.org"}}}}
	f.s.projects["proj_3"] = store.Project{ID: "proj_3", Active: false, // deactivated: left out
		Rules: policy.Rules{CORS: &policy.CORS{Origins: []string{"https://off.example.net"}}}}
	f.s.projects["proj_4"] = store.Project{ID: "proj_4", Active: true} // no CORS
	list := &projectList{s: f.s}
	o := NewOrigins(list, f.a, OriginsOptions{TTL: 30 * time.Second, Now: func() time.Time { return f.now }})
	ctx := context.Background()

	check := func(step string, wantReads int64, want [][]string) {
		t.Helper()
		ps, err := o.CORSPolicies(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got := origins(ps); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s: origins %q, want %q", step, got, want)
		}
		if n := list.reads.Load(); n != wantReads {
			t.Errorf("%s: %d store reads, want %d", step, n, wantReads)
		}
	}
	both := [][]string{{"https://app.example.com"}, {"https://*.example.org"}}
	check("first", 1, both)
	check("cached", 1, both)

	// A project changes: the management API invalidates it, and the next
	// preflight sees the change at once.
	f.update(func(_ *store.Token, p *store.Project) {
		p.Rules.CORS = &policy.CORS{Origins: []string{"https://new.example.com"}}
	})
	check("changed, not yet invalidated", 1, both)
	f.a.InvalidateProject("proj_1")
	check("after invalidation", 2, [][]string{{"https://new.example.com"}, {"https://*.example.org"}})

	// A change nobody announced (another process without Redis) is read
	// when the TTL ends.
	f.update(func(_ *store.Token, p *store.Project) { p.Rules.CORS = nil })
	f.now = f.now.Add(29 * time.Second)
	check("within the TTL", 2, [][]string{{"https://new.example.com"}, {"https://*.example.org"}})
	f.now = f.now.Add(time.Second)
	check("TTL over", 3, [][]string{{"https://*.example.org"}})

	// Broadcast's InvalidateAll (a re-established subscription) too.
	f.a.InvalidateAll()
	check("after InvalidateAll", 4, [][]string{{"https://*.example.org"}})
}

func TestOriginsKeepLastCopyWhenStoreFails(t *testing.T) {
	f := newFixture(t, nil)
	f.update(func(_ *store.Token, p *store.Project) {
		p.Rules.CORS = &policy.CORS{Origins: []string{"https://app.example.com"}}
	})
	list := &projectList{s: f.s}
	o := NewOrigins(list, nil, OriginsOptions{TTL: 10 * time.Second, Now: func() time.Time { return f.now }})
	ctx := context.Background()

	down := errors.New("database is locked")
	list.fail(down)
	if ps, err := o.CORSPolicies(ctx); !errors.Is(err, down) || ps != nil {
		t.Fatalf("no copy yet, store down: %v, %v; want the store's error", ps, err)
	}
	list.fail(nil)
	if ps, err := o.CORSPolicies(ctx); err != nil || len(ps) != 1 {
		t.Fatalf("store back: %v, %v", ps, err)
	}
	list.fail(down)
	f.now = f.now.Add(10 * time.Second)
	for i, step := range []struct {
		advance   time.Duration
		wantReads int64
	}{
		{0, 3},                       // TTL over: read, fails, last copy kept
		{500 * time.Millisecond, 3},  // within the retry pause: not asked
		{500 * time.Millisecond, 4},  // asked again
		{100 * time.Millisecond, 4},  //
		{1000 * time.Millisecond, 5}, //
	} {
		f.now = f.now.Add(step.advance)
		ps, err := o.CORSPolicies(ctx)
		if err != nil || len(ps) != 1 || ps[0].Origins[0] != "https://app.example.com" {
			t.Fatalf("step %d: %v, %v; want the last copy", i, origins(ps), err)
		}
		if n := list.reads.Load(); n != step.wantReads {
			t.Errorf("step %d: %d reads, want %d", i, n, step.wantReads)
		}
	}
}

// Concurrent preflights on a stale copy read the store once.
func TestOriginsOneReadAtATime(t *testing.T) {
	f := newFixture(t, nil)
	f.update(func(_ *store.Token, p *store.Project) {
		p.Rules.CORS = &policy.CORS{Origins: []string{"https://app.example.com"}}
	})
	list := &projectList{s: f.s}
	o := NewOrigins(list, f.a, OriginsOptions{Now: func() time.Time { return f.now }})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if ps, err := o.CORSPolicies(context.Background()); err != nil || len(ps) != 1 {
				t.Errorf("got %v, %v", origins(ps), err)
			}
		})
	}
	wg.Wait()
	if n := list.reads.Load(); n != 1 {
		t.Errorf("%d store reads for 16 concurrent callers, want 1", n)
	}
}

// A caller waiting for another's read gives up with its context.
func TestOriginsWaitHonoursContext(t *testing.T) {
	o := NewOrigins(&projectList{s: &memStore{}}, nil, OriginsOptions{})
	o.loading <- struct{}{} // a read in progress
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := o.CORSPolicies(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}
