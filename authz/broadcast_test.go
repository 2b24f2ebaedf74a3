package authz

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// replica is one llm-proxy's validation cache over the shared store.
func replica(t *testing.T, f *fixture, c redis.UniversalClient, channel string) (*Authorizer, *Broadcast) {
	a := NewAuthorizer(f.s, f.a.hasher, f.a.keys, Options{CacheTTL: time.Hour})
	b := NewBroadcast(c, channel, a, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, b
}

// eventually polls cond for up to limit.
func eventually(t *testing.T, limit time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func TestBroadcastRevokesOnEveryReplicaWithinASecond(t *testing.T) {
	c := redisClient(t)
	f := newFixture(t, nil)
	channel := "test:" + t.Name()
	a1, b1 := replica(t, f, c, channel)
	a2, _ := replica(t, f, c, channel)
	ctx := context.Background()
	for _, a := range []*Authorizer{a1, a2} {
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
	time.Sleep(50 * time.Millisecond) // let both subscriptions settle

	// Replica 1's management API revokes; replica 2 must refuse within 1s.
	f.update(func(tk *store.Token, _ *store.Project) { tk.Active = false })
	start := time.Now()
	b1.InvalidateToken("tok_1")
	if !eventually(t, time.Second, func() bool {
		_, err := a2.Authenticate(ctx, f.secret)
		return errors.Is(err, ErrTokenRevoked)
	}) {
		t.Fatal("replica 2 still accepts the revoked token after 1s")
	}
	t.Logf("revocation reached the other replica in %v", time.Since(start))
}

func TestBroadcastDropsCacheAfterReconnect(t *testing.T) {
	c := redisClient(t)
	f := newFixture(t, nil)
	a, _ := replica(t, f, c, "test:"+t.Name())
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, f.secret); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	// A change whose message this replica never receives ...
	f.update(func(tk *store.Token, _ *store.Project) { tk.Active = false })
	// ... while its subscription is cut: on reconnect it must drop its cache.
	if err := c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if !eventually(t, 5*time.Second, func() bool {
		_, err := a.Authenticate(ctx, f.secret)
		return errors.Is(err, ErrTokenRevoked)
	}) {
		t.Fatal("cache survived a lost subscription")
	}
}
