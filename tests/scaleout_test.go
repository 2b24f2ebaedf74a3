package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/cmd/llm-proxy/cli"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// scaleOutEnv is what every replica of a scaled-out deployment shares: one
// PostgreSQL, one Redis (redisURL) for limits, cache, revocations and events.
func scaleOutEnv(redisURL, prefix string) map[string]string {
	return map[string]string{
		"LLM_PROXY_REDIS_URL":     redisURL,
		"LLM_PROXY_REDIS_PREFIX":  prefix,
		"LLM_PROXY_CACHE":         "redis",
		"LLM_PROXY_EVENTS_SINKS":  "redis",
		"LLM_PROXY_EVENTS_STREAM": prefix + "events",
		// Only the broadcast can make a replica forget a token it validated.
		"LLM_PROXY_AUTH_CACHE_TTL": "1h",
		// Exactness with Redis up is the point: a call slowed past the
		// default timeout by a loaded machine would fall back to the
		// per-replica failure mode.
		"LLM_PROXY_REDIS_TIMEOUT": "5s",
	}
}

// TestScaleOutOnRedisCluster: three llm-proxy replicas, each behind its own
// Envoy, share PostgreSQL and a Redis Cluster of three masters (the Debian
// redis-server, --cluster-enabled yes). Limits are exact across replicas, a
// revocation reaches every replica within a second, the cache is shared and
// purged on every master, and the event stream is consumed once by two
// dispatchers, with what cannot be delivered dead-lettered on the node that
// owns the dead-letter stream.
func TestScaleOutOnRedisCluster(t *testing.T) {
	cluster := testenv.NewRedisCluster(t, 3)
	dbURL := testenv.NewPostgresDB(t)
	const prefix = "scale:"
	env := scaleOutEnv(cluster.URL(), prefix)
	var replicas []*stack
	for range 3 {
		replicas = append(replicas, startStack(t, stackOptions{databaseURL: dbURL, env: env}))
	}
	for i, s := range replicas {
		if got := readyz(t, s); got != "ok\nstore: ok\nredis: ok (cluster)\n" {
			t.Fatalf("replica %d /readyz: %q", i, got)
		}
	}
	rdb := testenv.NewRedisClient(t, cluster.URL())
	p := replicas[0].createProject("scale", realKey)

	t.Run("limits exact across replicas", func(t *testing.T) {
		tok := replicas[0].createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"requests_per_minute": 5}})
		statuses := statusesOf(10, func(i int) reply {
			return send(t, "GET", replicas[i%3].envoyURL+"/v1/models", tok.Token, "")
		})
		if statuses[200] != 5 || statuses[429] != 5 {
			t.Fatalf("statuses %v, want exactly 5×200 and 5×429", statuses)
		}
		upstream := 0
		for _, s := range replicas {
			upstream += s.upstream.Count()
			if d := s.metric(t, "llm_proxy_ratelimit_degraded"); d != 0 {
				t.Errorf("a replica's limiter is degraded (%d): limits were counted per replica", d)
			}
		}
		if upstream != 5 {
			t.Fatalf("the upstreams received %d requests, want 5", upstream)
		}
	})

	t.Run("revocation reaches every replica within a second", func(t *testing.T) {
		tok := replicas[0].createToken(map[string]any{"project_id": p.ID})
		for i, s := range replicas {
			if r := send(t, "GET", s.envoyURL+"/v1/models", tok.Token, ""); r.status != 200 {
				t.Fatalf("replica %d before the revoke: %d %s", i, r.status, r.body)
			}
		}
		waitSubscribers(t, cluster.URL(), prefix, 3)
		replicas[1].mustManage("DELETE", "/manage/tokens/"+tok.ID, nil, 200, nil)
		deadline := time.Now().Add(time.Second)
		var wg sync.WaitGroup
		for i, s := range replicas {
			wg.Go(func() {
				for {
					r := send(t, "GET", s.envoyURL+"/v1/models", tok.Token, "")
					if r.status == 401 {
						return
					}
					if time.Now().After(deadline) {
						t.Errorf("replica %d still answers %d a second after the revoke", i, r.status)
						return
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("cache shared, purged on every master", func(t *testing.T) {
		cacheKeys := func() map[string]int { // master address → entries
			var mu sync.Mutex
			out := map[string]int{}
			testenv.ForEachNode(t, rdb, func(ctx context.Context, n redis.UniversalClient) error {
				// <prefix>cache:{<project>}:<key>; a project's path index
				// ("…}!paths") is not an entry.
				keys, err := n.Keys(ctx, prefix+"cache:{*}:*").Result()
				mu.Lock()
				defer mu.Unlock()
				out[n.(*redis.Client).Options().Addr] += len(keys)
				return err
			})
			return out
		}
		// A project's entries share its hash tag, so one slot and one
		// master: store one entry for each of new projects until every
		// master holds one.
		type entry struct{ token, body string }
		var entries []entry
		for i := 0; ; i++ {
			pi := replicas[0].createProject(fmt.Sprintf("cache-%d", i), realKey)
			tok := replicas[0].createToken(map[string]any{"project_id": pi.ID})
			body := fmt.Sprintf(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"cached question %d"}]}`, i)
			r := call(t, replicas[i%3], "POST", "/v1/chat/completions", tok.Token, body, map[string]string{"Cache-Control": optIn})
			if r.status != 200 || isHit(r) {
				t.Fatalf("store %d: %d %q", i, r.status, r.header.Get("Cache-Status"))
			}
			entries = append(entries, entry{tok.Token, body})
			held := 0
			for _, n := range cacheKeys() {
				if n > 0 {
					held++
				}
			}
			if held == 3 {
				break
			}
			if i == 60 {
				t.Fatalf("60 projects' entries, still not on all three masters: %v", cacheKeys())
			}
		}
		// Each entry is a hit on the two replicas that did not store it.
		for i, en := range entries {
			for _, s := range []*stack{replicas[(i+1)%3], replicas[(i+2)%3]} {
				r := call(t, s, "POST", "/v1/chat/completions", en.token, en.body, map[string]string{"Cache-Control": optIn})
				if r.status != 200 || !isHit(r) {
					t.Fatalf("entry %d on another replica: %d %q", i, r.status, r.header.Get("Cache-Status"))
				}
			}
		}
		var purged struct{ Purged int }
		replicas[2].mustManage("POST", "/manage/cache/purge", map[string]any{"all": true}, 200, &purged)
		if purged.Purged != len(entries) {
			t.Fatalf("purged %d entries, want %d", purged.Purged, len(entries))
		}
		for addr, n := range cacheKeys() {
			if n != 0 {
				t.Errorf("master %s still holds %d entries", addr, n)
			}
		}
		r := call(t, replicas[1], "POST", "/v1/chat/completions", entries[0].token, entries[0].body, map[string]string{"Cache-Control": optIn})
		if isHit(r) {
			t.Fatal("a purged entry was still a hit")
		}
	})

	t.Run("events consumed once, dead-lettered on the right node", func(t *testing.T) {
		stream, dead := prefix+"events", prefix+"events:dead"
		events := drained(t, replicas...)
		if n := rdb.XLen(context.Background(), stream).Val(); n != events {
			t.Fatalf("the stream holds %d entries, the replicas wrote %d", n, events)
		}
		// An entry without an event id cannot be delivered anywhere.
		if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{"event", "{}"}}).Err(); err != nil {
			t.Fatal(err)
		}
		files := []string{filepath.Join(t.TempDir(), "a.jsonl"), filepath.Join(t.TempDir(), "b.jsonl")}
		var stops []func()
		for i, f := range files {
			stops = append(stops, runDispatch(t, map[string]string{
				"LLM_PROXY_REDIS_URL":           cluster.URL(),
				"LLM_PROXY_EVENTS_STREAM":       stream,
				"LLM_PROXY_DISPATCH_TARGETS":    "file",
				"LLM_PROXY_DISPATCH_FILE":       f,
				"LLM_PROXY_DISPATCH_BATCH":      "7", // several reads, shared by both
				"LLM_PROXY_LOG_LEVEL":           "warn",
				"LLM_PROXY_DISPATCH_GROUP":      "scale",
				"LLM_PROXY_DISPATCH_TIMEOUT":    "5s",
				"LLM_PROXY_DISPATCH_CLAIM_IDLE": "1m",
			}, fmt.Sprint(i)))
		}
		// The dead-letter stream lives on the master of its own slot: read
		// it there, with a plain client of that node.
		deadNode := testenv.NodeFor(t, rdb, dead)
		waitFor(t, "every event delivered and the bad entry dead-lettered", func() bool {
			return countLines(files) == int(events) && deadNode.XLen(context.Background(), dead).Val() == 1 &&
				rdb.XPending(context.Background(), stream, "scale").Val().Count == 0
		})
		for _, stop := range stops {
			stop()
		}
		ids := map[string]int{}
		for _, f := range files {
			for _, id := range eventIDs(t, f) {
				ids[id]++
			}
		}
		if len(ids) != int(events) {
			t.Fatalf("%d distinct events delivered, want %d", len(ids), events)
		}
		for id, n := range ids {
			if n != 1 {
				t.Errorf("event %s delivered %d times", id, n)
			}
		}
	})
}

// TestSentinelFailoverKeepsLimitsAndEvents: two replicas on a Sentinel
// deployment (a master, a replica, three sentinels). The master is killed,
// Sentinel promotes the replica, and the sidecars follow it: the request
// limit stays exact across the switch, and every event reaches the stream.
func TestSentinelFailoverKeepsLimitsAndEvents(t *testing.T) {
	sentinel := testenv.NewRedisSentinel(t)
	dbURL := testenv.NewPostgresDB(t)
	const prefix = "sentinel:"
	env := scaleOutEnv(sentinel.URL(), prefix)
	a := startStack(t, stackOptions{databaseURL: dbURL, env: env})
	b := startStack(t, stackOptions{databaseURL: dbURL, env: env})
	for _, s := range []*stack{a, b} {
		if got := readyz(t, s); got != "ok\nstore: ok\nredis: ok (sentinel)\n" {
			t.Fatalf("/readyz: %q", got)
		}
	}
	p := a.createProject("failover", realKey)
	tok := a.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"requests_per_minute": 6}})
	rdb := testenv.NewRedisClient(t, sentinel.URL())
	stream := prefix + "events"
	for i := range 3 {
		if r := send(t, "GET", []*stack{a, b}[i%2].envoyURL+"/v1/models", tok.Token, ""); r.status != 200 {
			t.Fatalf("request %d before the failover: %d %s", i, r.status, r.body)
		}
	}
	before := drained(t, a, b)
	if n := rdb.XLen(context.Background(), stream).Val(); n != before {
		t.Fatalf("the stream holds %d entries, the replicas wrote %d", n, before)
	}
	// What the master holds has reached the replica before the master dies.
	// WAIT covers the writes of its own connection, and the replication
	// stream is ordered: once the replica has this write, it has all before.
	master := redis.NewClient(&redis.Options{Addr: sentinel.Master.Addr()})
	conn := master.Conn()
	if err := conn.Set(context.Background(), prefix+"fence", 1, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Wait(context.Background(), 1, 10*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	conn.Close()
	master.Close()

	sentinel.Failover()
	for _, s := range []*stack{a, b} {
		waitFor(t, "the replica ready on the promoted master", func() bool {
			return readyz(t, s) == "ok\nstore: ok\nredis: ok (sentinel)\n"
		})
	}
	statuses := map[int]int{}
	for i := range 6 {
		statuses[send(t, "GET", []*stack{a, b}[i%2].envoyURL+"/v1/models", tok.Token, "").status]++
	}
	if statuses[200] != 3 || statuses[429] != 3 {
		t.Fatalf("after the failover: statuses %v, want 3×200 and 3×429 (3 of 6 were used before it)", statuses)
	}
	for _, s := range []*stack{a, b} {
		if d := s.metric(t, "llm_proxy_ratelimit_degraded"); d != 0 {
			t.Errorf("a limiter is degraded (%d) after the failover", d)
		}
	}
	// Every event written before and after the switch is on the promoted
	// server: none was lost with the old master, none dropped or spilled.
	after := drained(t, a, b)
	if after != before+6 {
		t.Fatalf("the replicas wrote %d events after the failover, want 6", after-before)
	}
	promoted := testenv.NewRedisClient(t, sentinel.Replica.URL())
	if n := promoted.XLen(context.Background(), stream).Val(); n != after {
		t.Fatalf("the promoted server holds %d events, want %d", n, after)
	}
	for _, s := range []*stack{a, b} {
		for _, m := range []string{"llm_proxy_events_dropped_total", `llm_proxy_event_sink_spilled_total{sink="redis"}`} {
			if n := s.metricOrZero(t, m); n != 0 {
				t.Errorf("%s = %d", m, n)
			}
		}
	}
}

// drained waits until every replica's event queue is empty and its Redis
// sink has written all it emitted, and returns how many events they wrote.
func drained(t *testing.T, replicas ...*stack) int64 {
	t.Helper()
	var written int64
	waitFor(t, "the replicas' events written to the stream", func() bool {
		written = 0
		for _, s := range replicas {
			w := s.metricOrZero(t, `llm_proxy_event_sink_written_total{sink="redis"}`)
			if s.metric(t, "llm_proxy_events_queue_length") != 0 || w != s.metric(t, "llm_proxy_events_emitted_total") {
				return false
			}
			written += w
		}
		return true
	})
	return written
}

// metricOrZero reads one series from /metrics; a labelled series that was
// never touched is absent, which means 0.
func (s *stack) metricOrZero(t *testing.T, series string) int64 {
	t.Helper()
	b, err := body(s.manageURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(b, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return int64(f)
		}
	}
	return 0
}

// statusesOf runs n requests at once, request(i) sending the i-th, and
// counts their statuses.
func statusesOf(n int, request func(i int) reply) map[int]int {
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := request(i)
			mu.Lock()
			statuses[r.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return statuses
}

// body returns the body of a GET of url.
func body(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// readyz returns the body of a replica's /readyz.
func readyz(t *testing.T, s *stack) string {
	t.Helper()
	b, err := body(s.manageURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runDispatch starts `llm-proxy dispatch` in process and returns what stops
// it (and fails t if it ended with an error).
func runDispatch(t *testing.T, env map[string]string, name string) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, []string{"dispatch"}, func(k string) string { return env[k] }, logs, logs)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatch %s: %v\n%s", name, err, logs)
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing t after hangBound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, hangBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countLines(files []string) int {
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += strings.Count(string(b), "\n")
	}
	return n
}

// eventIDs returns the id of every event in a dispatch JSONL file.
func eventIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.ID == "" {
			t.Fatalf("%s: a line without an id (%v): %s", path, err, sc.Text())
		}
		ids = append(ids, ev.ID)
	}
	return ids
}
