package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/redisclient"
)

// RedisClient returns a client for the Redis of [Redis], built the way
// `serve` builds it ([redisclient.New]): a single server, a Redis Cluster or
// a Sentinel deployment — whatever LLM_PROXY_TEST_REDIS_URL names — so a
// suite using it runs unchanged on each. It is closed when tb ends.
func RedisClient(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	return NewRedisClient(tb, Redis(tb))
}

// NewRedisClient returns the client [redisclient.New] builds for url,
// closed when tb ends.
func NewRedisClient(tb testing.TB, url string) redis.UniversalClient {
	tb.Helper()
	c, err := redisclient.New(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// RedisServer returns the URL of one Redis server, for a test that must
// reach the server itself (through a [LatencyProxy], say): [Redis] when
// that is a single server, else a redis-server of the test's own.
func RedisServer(tb testing.TB) string {
	tb.Helper()
	u := Redis(tb)
	if mode, err := redisclient.ModeOf(u); err == nil && mode == redisclient.Single {
		return u
	}
	return NewOwnedRedis(tb).URL()
}

// NodeFor returns the server behind c that holds key: c itself unless c is a
// Redis Cluster client, then the master owning key's slot. Commands that
// are not routed by key (KEYS, SCAN, CLIENT LIST) reach the right node
// through it.
func NodeFor(tb testing.TB, c redis.UniversalClient, key string) redis.UniversalClient {
	tb.Helper()
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return c
	}
	n, err := cc.MasterForKey(context.Background(), key)
	if err != nil {
		tb.Fatalf("master for %s: %v", key, err)
	}
	return n
}

// ForEachNode runs f on every server behind c — c itself unless c is a Redis
// Cluster client, then each master, concurrently — for what is per node:
// pub/sub subscriptions, client lists, KEYS. It fails tb on f's error.
func ForEachNode(tb testing.TB, c redis.UniversalClient, f func(context.Context, redis.UniversalClient) error) {
	tb.Helper()
	ctx := context.Background()
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return f(ctx, n) })
	} else {
		err = f(ctx, c)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// RedisCluster is a Redis Cluster of one test's own: masters only, every
// hash slot assigned, started from the redis-server binary
// (--cluster-enabled yes) and formed with redis-cli --cluster create.
type RedisCluster struct {
	// Nodes are the masters, in the order their slot ranges were assigned.
	Nodes []*OwnedRedis
}

// NewRedisCluster starts a cluster of masters nodes and returns once every
// node reports cluster_state:ok and knows all the others. It needs
// redis-server and redis-cli; without them the test is skipped, or fails
// under CI=true.
func NewRedisCluster(tb testing.TB, masters int) *RedisCluster {
	tb.Helper()
	cli := lookPath("redis-cli")
	if cli == "" {
		unavailable(tb, "no redis-cli on PATH to form a Redis Cluster: install redis-tools (Debian: apt-get install redis-server)")
	}
	c := &RedisCluster{}
	var addrs []string
	for range masters {
		n := newOwnedRedis(tb, "", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
		n.Start()
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := command(nil, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		err := waitReady(nil, func(ctx context.Context) error { return clusterFormed(ctx, n, masters) })
		if err != nil {
			tb.Fatalf("Redis Cluster node %s: %v\n%s", n.Addr(), err, n.logTail())
		}
	}
	return c
}

// URL names the cluster as LLM_PROXY_REDIS_URL takes it: the first node,
// and every other as an addr parameter.
func (c *RedisCluster) URL() string {
	var extra []string
	for _, n := range c.Nodes[1:] {
		extra = append(extra, "addr="+n.Addr())
	}
	return "redis://" + c.Nodes[0].Addr() + "?" + strings.Join(extra, "&")
}

// clusterFormed succeeds once n says the cluster is ok with nodes members.
func clusterFormed(ctx context.Context, n *OwnedRedis, nodes int) error {
	c := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
	defer c.Close()
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	state, known := infoValue(info, "cluster_state"), infoValue(info, "cluster_known_nodes")
	if state != "ok" || known != fmt.Sprint(nodes) {
		return fmt.Errorf("cluster_state %s, cluster_known_nodes %s", state, known)
	}
	return nil
}

// RedisSentinel is a Sentinel deployment of one test's own: a master, one
// replica and three sentinels (quorum 2) that declare the master down after
// a second without answers.
type RedisSentinel struct {
	tb        testing.TB
	Master    *OwnedRedis
	Replica   *OwnedRedis
	Sentinels []*OwnedRedis
}

// SentinelMaster is the name the sentinels monitor the master under.
const SentinelMaster = "llmproxy"

// NewRedisSentinel starts the deployment and returns once every sentinel
// has found the replica and the other sentinels (SENTINEL CKQUORUM passes),
// so that a failover can be authorised.
func NewRedisSentinel(tb testing.TB) *RedisSentinel {
	tb.Helper()
	s := &RedisSentinel{tb: tb, Master: newOwnedRedis(tb, "")}
	s.Master.Start()
	s.Replica = newOwnedRedis(tb, "", "--replicaof", "127.0.0.1", fmt.Sprint(s.Master.port))
	s.Replica.Start()
	if err := waitReady(nil, func(ctx context.Context) error { return replicaInSync(ctx, s.Replica) }); err != nil {
		tb.Fatalf("replica %s: %v\n%s", s.Replica.Addr(), err, s.Replica.logTail())
	}
	for i := range 3 {
		// Sentinel rewrites its config file, so each has one of its own.
		conf := filepath.Join(tb.TempDir(), fmt.Sprintf("sentinel-%d.conf", i))
		text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 10000\n", SentinelMaster, s.Master.port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
		sn := newOwnedRedis(tb, conf, "--sentinel")
		sn.Start()
		s.Sentinels = append(s.Sentinels, sn)
	}
	for _, sn := range s.Sentinels {
		err := waitReady(nil, func(ctx context.Context) error {
			c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1})
			defer c.Close()
			if _, err := c.CkQuorum(ctx, SentinelMaster).Result(); err != nil {
				return err
			}
			replicas, err := c.Replicas(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if len(replicas) != 1 {
				return fmt.Errorf("%d replicas known", len(replicas))
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("sentinel %s: %v\n%s", sn.Addr(), err, sn.logTail())
		}
	}
	return s
}

// URL names the deployment as LLM_PROXY_REDIS_URL takes it: the sentinels
// and the master's name.
func (s *RedisSentinel) URL() string {
	u := "redis://" + s.Sentinels[0].Addr() + "/0?master_name=" + SentinelMaster
	for _, sn := range s.Sentinels[1:] {
		u += "&addr=" + sn.Addr()
	}
	return u
}

// Failover kills the master (SIGKILL) and returns once every sentinel names
// the replica as the master.
func (s *RedisSentinel) Failover() {
	s.tb.Helper()
	s.Master.Stop()
	want := s.Replica.Addr()
	for _, sn := range s.Sentinels {
		err := waitReady(nil, func(ctx context.Context) error {
			c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1})
			defer c.Close()
			addr, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if got := strings.Join(addr, ":"); got != want {
				return fmt.Errorf("master is %s, not yet %s", got, want)
			}
			return nil
		})
		if err != nil {
			s.tb.Fatalf("sentinel %s did not promote the replica: %v\n%s", sn.Addr(), err, sn.logTail())
		}
	}
	// The promoted server must take writes (role master, not read-only).
	err := waitReady(nil, func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: want, MaxRetries: -1})
		defer c.Close()
		info := c.InfoMap(ctx, "replication")
		if err := info.Err(); err != nil {
			return err
		}
		if role := info.Item("Replication", "role"); role != "master" {
			return fmt.Errorf("role %s", role)
		}
		return nil
	})
	if err != nil {
		s.tb.Fatalf("promoted replica %s: %v", want, err)
	}
}

// replicaInSync succeeds once r's link to its master is up.
func replicaInSync(ctx context.Context, r *OwnedRedis) error {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	info := c.InfoMap(ctx, "replication")
	if err := info.Err(); err != nil {
		return err
	}
	if st := info.Item("Replication", "master_link_status"); st != "up" {
		return fmt.Errorf("master_link_status %q", st)
	}
	return nil
}

// infoValue returns key's value in an INFO-style reply ("key:value" lines).
func infoValue(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == key {
			return v
		}
	}
	return ""
}
