package authz

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// hangBound only catches a hang: every wait below is for an event that
// normally comes within milliseconds, on a machine that may be very slow.
const hangBound = 30 * time.Second

// redisClient connects to the test Redis; name, when not "", is set on each
// of its connections (CLIENT SETNAME), so that a test can find them.
func redisClient(t *testing.T, name string) redis.UniversalClient {
	t.Helper()
	u, err := url.Parse(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		q := u.Query()
		q.Set("client_name", name)
		u.RawQuery = q.Encode()
	}
	return testenv.NewRedisClient(t, u.String())
}

// observed is a replica's validation cache as its Broadcast drives it: each
// invalidation is applied to the Authorizer first, then counted, so a test
// waits for the event instead of sleeping. It never blocks Broadcast.Run.
type observed struct {
	*Authorizer
	changed chan struct{} // capacity 1: "something was counted"

	mu     sync.Mutex
	tokens map[string]int // guarded by mu: InvalidateToken calls per id
	all    int            // guarded by mu: InvalidateAll calls
}

var _ cacheInvalidator = (*observed)(nil)

func (o *observed) InvalidateToken(id string) {
	o.Authorizer.InvalidateToken(id)
	o.count(func() { o.tokens[id]++ })
}

func (o *observed) InvalidateAll() {
	o.Authorizer.InvalidateAll()
	o.count(func() { o.all++ })
}

func (o *observed) count(f func()) {
	o.mu.Lock()
	f()
	o.mu.Unlock()
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

// waitFor returns once cond, evaluated under o.mu after each invalidation
// o sees, holds; it fails t after hangBound.
func (o *observed) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(hangBound)
	defer timeout.Stop()
	for {
		o.mu.Lock()
		ok := cond()
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-o.changed:
		case <-timeout.C:
			t.Fatalf("%s: not seen after %v", what, hangBound)
		}
	}
}

func (o *observed) waitToken(t *testing.T, id string) {
	t.Helper()
	o.waitFor(t, "invalidation of "+id, func() bool { return o.tokens[id] > 0 })
}

// replica is one llm-proxy's validation cache over the shared store, with
// its Broadcast running until the test ends.
func replica(t *testing.T, f *fixture, c redis.UniversalClient, channel string) (*observed, *Broadcast) {
	t.Helper()
	o := &observed{
		Authorizer: NewAuthorizer(f.s, f.a.hasher, f.a.keys, Options{CacheTTL: time.Hour}),
		changed:    make(chan struct{}, 1),
		tokens:     map[string]int{},
	}
	b := NewBroadcast(c, channel, o, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return o, b
}

// subscribed returns once every replica's Broadcast.Run has its subscription
// to channel confirmed: Redis counts them all as subscribers, and a probe
// published after that has reached each of them (a message comes after its
// connection's subscription confirmation, so Run has handled that too).
func subscribed(t *testing.T, c redis.UniversalClient, channel string, replicas ...*observed) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(hangBound)
	for {
		var subs atomic.Int64
		testenv.ForEachNode(t, c, func(ctx context.Context, n redis.UniversalClient) error {
			m, err := n.PubSubNumSub(ctx, channel).Result()
			subs.Add(m[channel])
			return err
		})
		if subs.Load() == int64(len(replicas)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers to %s after %v, want %d", subs.Load(), channel, hangBound, len(replicas))
		}
		time.Sleep(5 * time.Millisecond)
	}
	probe := "probe-" + t.Name()
	if err := c.Publish(ctx, channel, "token:"+probe).Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		r.waitToken(t, probe)
	}
}

// killSubscription closes, on the Redis side, the pub/sub connection of the
// client named name, as a network failure would.
func killSubscription(t *testing.T, c redis.UniversalClient, name string) {
	t.Helper()
	var mu sync.Mutex
	var found []func() error // kills one connection, on its node
	var lists []string
	testenv.ForEachNode(t, c, func(ctx context.Context, n redis.UniversalClient) error {
		list, err := n.ClientList(ctx).Result()
		mu.Lock()
		defer mu.Unlock()
		lists = append(lists, list)
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			fields := map[string]string{}
			for _, kv := range strings.Fields(line) {
				k, v, _ := strings.Cut(kv, "=")
				fields[k] = v
			}
			if fields["name"] == name && strings.Contains(fields["flags"], "P") { // P: a pub/sub connection
				id := fields["id"]
				found = append(found, func() error { return n.ClientKillByFilter(ctx, "ID", id).Err() })
			}
		}
		return err
	})
	if len(found) != 1 {
		t.Fatalf("found %d subscribed connections named %s, want 1:\n%s", len(found), name, strings.Join(lists, "\n"))
	}
	if err := found[0](); err != nil {
		t.Fatal(err)
	}
}

// An invalidation on one replica reaches the other through Redis: once the
// message is applied there, the revoked token is refused at once, without
// waiting for the cache TTL (an hour here).
func TestBroadcastRevokesOnEveryReplica(t *testing.T) {
	c := redisClient(t, "")
	f := newFixture(t, nil)
	channel := "test:" + t.Name()
	a1, b1 := replica(t, f, c, channel)
	a2, _ := replica(t, f, c, channel)
	ctx := context.Background()
	for _, a := range []*observed{a1, a2} {
		if _, err := a.Authenticate(ctx, f.secret); err != nil {
			t.Fatal(err)
		}
	}
	reads := f.s.reads.Load()
	// Valid tokens keep validating from memory.
	for range 5 {
		if _, err := a2.Authenticate(ctx, f.secret); err != nil {
			t.Fatal(err)
		}
	}
	if f.s.reads.Load() != reads {
		t.Fatal("a cached token was re-read from the store")
	}
	subscribed(t, c, channel, a1, a2)

	// Replica 1's management API revokes; replica 2 refuses as soon as the
	// message has reached it.
	f.update(func(tk *store.Token, _ *store.Project) { tk.Active = false })
	start := time.Now()
	b1.InvalidateToken("tok_1")
	a2.waitToken(t, "tok_1")
	t.Logf("the invalidation reached the other replica in %v", time.Since(start))
	if _, err := a2.Authenticate(ctx, f.secret); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("replica 2 after the invalidation: %v, want %v", err, ErrTokenRevoked)
	}
}

// A replica whose subscription is cut misses what is published meanwhile;
// when Run re-subscribes it drops its whole cache, so nothing revoked in
// between survives.
func TestBroadcastDropsCacheAfterReconnect(t *testing.T) {
	name := "authz-test-reconnect"
	c := redisClient(t, name)
	f := newFixture(t, nil)
	channel := "test:" + t.Name()
	a, _ := replica(t, f, c, channel)
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, f.secret); err != nil {
		t.Fatal(err)
	}
	subscribed(t, c, channel, a)
	// A change whose message this replica never receives ...
	f.update(func(tk *store.Token, _ *store.Project) { tk.Active = false })
	if _, err := a.Authenticate(ctx, f.secret); err != nil {
		t.Fatalf("before the reconnect the cached token must still validate: %v", err)
	}
	// ... while its subscription is cut: on reconnect it must drop its cache.
	killSubscription(t, c, name)
	a.waitFor(t, "the cache dropped on re-subscription", func() bool { return a.all > 0 })
	if _, err := a.Authenticate(ctx, f.secret); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("after the reconnect: %v, want %v (the cache survived a lost subscription)", err, ErrTokenRevoked)
	}
}
