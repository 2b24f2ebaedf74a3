package redisclient_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/redisclient"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestNewHonoursDeadlines(t *testing.T) {
	for _, u := range []string{
		"redis://127.0.0.1:1/0",
		"redis://127.0.0.1:1?addr=127.0.0.1:2",
		"redis://127.0.0.1:1/0?master_name=m",
	} {
		c, err := redisclient.New(u)
		if err != nil {
			t.Fatal(err)
		}
		if on, known := redisclient.ContextTimeoutEnabled(c); !on || !known {
			t.Errorf("%s: enabled %v, known %v", u, on, known)
		}
		c.Close()
	}
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	if on, known := redisclient.ContextTimeoutEnabled(plain); on || !known {
		t.Errorf("a default client: enabled %v, known %v", on, known)
	}
}

func TestURLForms(t *testing.T) {
	for _, tc := range []struct {
		url   string
		mode  redisclient.Mode
		addrs []string // cluster seeds or sentinels
		err   string   // part of the error; "" for none
	}{
		{url: "redis://h:6379/2", mode: redisclient.Single, addrs: []string{"h:6379"}},
		{url: "rediss://u:p@h:6380", mode: redisclient.Single, addrs: []string{"h:6380"}},
		{url: "redis://h1:7000?addr=h2:7001&addr=h3:7002", mode: redisclient.Cluster, addrs: []string{"h1:7000", "h2:7001", "h3:7002"}},
		{url: "redis://h1:7000/0?cluster=true", mode: redisclient.Cluster, addrs: []string{"h1:7000"}},
		{url: "redis://h1:7000?cluster=true&dial_timeout=2s", mode: redisclient.Cluster, addrs: []string{"h1:7000"}},
		{url: "redis://s1:26379/0?master_name=mymaster&addr=s2:26379", mode: redisclient.Sentinel, addrs: []string{"s1:26379", "s2:26379"}},
		{url: "redis://s1:26379/3?master_name=m&password=x", mode: redisclient.Sentinel, addrs: []string{"s1:26379"}},
		{url: "http://h:6379", err: "scheme must be redis or rediss"},
		{url: "redis://", err: "no host"},
		{url: "redis://h1:7000/1?addr=h2:7001", mode: redisclient.Cluster, err: "only database 0"},
		{url: "redis://h1:7000?cluster=maybe", err: "not a boolean"},
		{url: "redis://h1:7000?addr=nohostport", mode: redisclient.Cluster, err: "unable to parse addr"},
		{url: "redis://h1:7000?cluster=true&bogus=1", mode: redisclient.Cluster, err: "unexpected option: bogus"},
		{url: "redis://h:6379?bogus=1", mode: redisclient.Single, err: "unexpected option: bogus"},
		{url: "redis://s:26379?master_name=", err: "master_name is empty"},
		{url: "redis://s:26379?master_name=m&cluster=true", err: "exclude each other"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			mode, modeErr := redisclient.ModeOf(tc.url)
			err := redisclient.Validate(tc.url)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Validate: %v, want an error containing %q", err, tc.err)
				}
				if tc.mode != "" && (modeErr != nil || mode != tc.mode) {
					t.Errorf("ModeOf: %q, %v; want %q", mode, modeErr, tc.mode)
				}
				return
			}
			if err != nil || modeErr != nil {
				t.Fatalf("Validate: %v; ModeOf: %v", err, modeErr)
			}
			if mode != tc.mode {
				t.Errorf("mode %q, want %q", mode, tc.mode)
			}
			c, err := redisclient.New(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var addrs []string
			switch c := c.(type) {
			case *redis.ClusterClient:
				addrs = c.Options().Addrs
			case *redis.Client:
				addrs = []string{c.Options().Addr}
				if tc.mode == redisclient.Sentinel {
					addrs = nil // the failover dialer hides the sentinels
				}
			}
			if tc.mode != redisclient.Sentinel && !slices.Equal(addrs, tc.addrs) {
				t.Errorf("addrs %v, want %v", addrs, tc.addrs)
			}
		})
	}
}

// Check tells a healthy deployment from one named as the wrong kind, on
// real servers: a cluster node or a sentinel behind a plain URL fails with
// ErrWrongKind, while each named rightly passes and works.
func TestCheckOnRealDeployments(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cluster := testenv.NewRedisCluster(t, 3)
	sentinel := testenv.NewRedisSentinel(t)
	for _, tc := range []struct {
		name, url string
		wrong     bool
	}{
		{"single", testenv.Redis(t), false},
		{"cluster", cluster.URL(), false},
		{"cluster from one seed", "redis://" + cluster.Nodes[1].Addr() + "?cluster=true", false},
		{"sentinel", sentinel.URL(), false},
		{"cluster node as a single server", "redis://" + cluster.Nodes[0].Addr() + "/0", true},
		{"sentinel as a single server", "redis://" + sentinel.Sentinels[0].Addr() + "/0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testenv.NewRedisClient(t, tc.url)
			err := redisclient.Check(ctx, c)
			if tc.wrong {
				if !errors.Is(err, redisclient.ErrWrongKind) {
					t.Fatalf("Check: %v, want ErrWrongKind", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			// Keys in every slot range work through the client.
			key := "redisclient-test:" + t.Name()
			for i := range 20 {
				k := key + ":" + string(rune('a'+i))
				if err := c.Set(ctx, k, i, time.Minute).Err(); err != nil {
					t.Fatalf("SET %s: %v", k, err)
				}
				if got, err := c.Get(ctx, k).Int(); err != nil || got != i {
					t.Fatalf("GET %s: %d, %v", k, got, err)
				}
			}
		})
	}
	// An unreachable server fails the check, but not as the wrong kind.
	c := testenv.NewRedisClient(t, "redis://127.0.0.1:1/0")
	if err := redisclient.Check(ctx, c); err == nil || errors.Is(err, redisclient.ErrWrongKind) {
		t.Errorf("unreachable: %v", err)
	}
}
