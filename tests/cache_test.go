package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// call is one raw request through Envoy with extra headers.
func call(t *testing.T, s *stack, method, path, tok, body string, hdr map[string]string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.envoyURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func isHit(r reply) bool { return strings.Contains(r.header.Get("Cache-Status"), "hit") }

const optIn = "public, max-age=60"

// TestResponseCache runs the cache proofs on both backends.
func TestResponseCache(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			env := map[string]string{"LLM_PROXY_CACHE": backend}
			if backend == "redis" {
				env["LLM_PROXY_REDIS_URL"] = testenv.Redis(t)
				env["LLM_PROXY_REDIS_PREFIX"] = "t:" + t.Name() + ":"
			}
			testCache(t, startStack(t, stackOptions{env: env}))
		})
	}
}

func testCache(t *testing.T, s *stack) {
	ctx := context.Background()
	pa, pb := s.createProject("cache-a", realKey), s.createProject("cache-b", "sk-other-project-key-0123456789")
	ta := s.createToken(map[string]any{"project_id": pa.ID})
	tb := s.createToken(map[string]any{"project_id": pb.ID})

	t.Run("GET is cached per project, Origin does not split it", func(t *testing.T) {
		s.upstream.Reset()
		first := call(t, s, "GET", "/v1/models", ta.Token, "", map[string]string{"Origin": "https://a.example"})
		second := call(t, s, "GET", "/v1/models", ta.Token, "", map[string]string{"Origin": "https://b.example"})
		other := call(t, s, "GET", "/v1/models", tb.Token, "", nil)
		if first.status != 200 || isHit(first) || !isHit(second) || isHit(other) {
			t.Fatalf("cache statuses: %q %q %q", first.header.Get("Cache-Status"), second.header.Get("Cache-Status"), other.header.Get("Cache-Status"))
		}
		if string(second.body) != string(first.body) || second.header.Get("Age") == "" {
			t.Fatal("hit differs from the stored response or lacks Age")
		}
		// Two projects: two upstream calls, each with its own key.
		if n := s.upstream.Count(); n != 2 {
			t.Fatalf("upstream calls %d, want 2 (one per project)", n)
		}
		for _, r := range s.upstream.Requests() {
			if r.Authorization != "Bearer "+realKey && r.Authorization != "Bearer sk-other-project-key-0123456789" {
				t.Fatalf("unexpected upstream authorization")
			}
		}
		// The hit is counted on the token (flushed in the background).
		deadline := time.Now().Add(5 * time.Second)
		for {
			var tok struct {
				CacheHits int `json:"cache_hit_count"`
			}
			s.mustManage("GET", "/manage/tokens/"+ta.ID, nil, 200, &tok)
			if tok.CacheHits == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cache_hit_count %d, want 1", tok.CacheHits)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	chat := func(i int) string {
		return fmt.Sprintf(`{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"cache me %d"}]}`, i)
	}

	t.Run("POST only on opt-in, never with no-store", func(t *testing.T) {
		s.upstream.Reset()
		call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(1), nil)
		if r := call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(1), nil); isHit(r) {
			t.Fatal("POST without opt-in was served from the cache")
		}
		call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(2), map[string]string{"Cache-Control": optIn})
		// Same JSON, keys reordered and re-spaced: same key.
		reordered := `{ "messages": [ {"content":"cache me 2", "role":"user"} ], "model": "gpt-4.1-mini" }`
		if r := call(t, s, "POST", "/v1/chat/completions", ta.Token, reordered, map[string]string{"Cache-Control": optIn}); !isHit(r) {
			t.Fatalf("opted-in repeat not a hit: %q", r.header.Get("Cache-Status"))
		}
		call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(3), map[string]string{"Cache-Control": "no-store"})
		if r := call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(3), map[string]string{"Cache-Control": optIn}); isHit(r) {
			t.Fatal("a no-store response was stored")
		}
		if n := s.upstream.Count(); n != 5 {
			t.Fatalf("upstream calls %d, want 5", n)
		}
	})

	t.Run("a project can opt all its POSTs in", func(t *testing.T) {
		s.mustManage("PATCH", "/manage/projects/"+pb.ID, map[string]any{"cache_post": true}, 200, nil)
		s.upstream.Reset()
		call(t, s, "POST", "/v1/chat/completions", tb.Token, chat(7), nil)
		if r := call(t, s, "POST", "/v1/chat/completions", tb.Token, chat(7), nil); !isHit(r) {
			t.Fatalf("project opt-in: second POST not a hit: %q", r.header.Get("Cache-Status"))
		}
		if r := call(t, s, "POST", "/v1/chat/completions", tb.Token, chat(7), map[string]string{"Cache-Control": "no-store"}); isHit(r) {
			t.Fatal("no-store still bypasses the cache under project opt-in")
		}
	})

	t.Run("TTL expiry", func(t *testing.T) {
		short := map[string]string{"Cache-Control": "public, max-age=1"}
		call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(4), short)
		if !isHit(call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(4), short)) {
			t.Fatal("no hit within the TTL")
		}
		time.Sleep(1500 * time.Millisecond)
		if isHit(call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(4), short)) {
			t.Fatal("hit after the TTL")
		}
	})

	t.Run("a streamed response is stored whole and replayed identically", func(t *testing.T) {
		s.upstream.Reset()
		read := func() (string, string) {
			var resp *http.Response
			st := s.client(ta.Token).Chat.Completions.NewStreaming(ctx, chatParams("stream and cache"),
				option.WithHeader("Cache-Control", optIn), option.WithResponseInto(&resp))
			defer st.Close()
			var acc openai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			return acc.Choices[0].Message.Content, resp.Header.Get("Cache-Status")
		}
		first, st1 := read()
		second, st2 := read()
		if first == "" || first != second || strings.Contains(st1, "hit") || !strings.Contains(st2, "hit") {
			t.Fatalf("replay %q (%s) vs original %q (%s)", second, st2, first, st1)
		}
		if n := s.upstream.Count(); n != 1 {
			t.Fatalf("upstream calls %d, want 1", n)
		}
	})

	t.Run("a replayed stream carries no usage chunk the client did not ask for", func(t *testing.T) {
		body := `{"model":"gpt-4.1-mini","stream":true,"messages":[{"role":"user","content":"no usage chunk please"}]}`
		var replies []reply
		for range 2 {
			replies = append(replies, call(t, s, "POST", "/v1/chat/completions", ta.Token, body, map[string]string{"Cache-Control": optIn}))
		}
		if isHit(replies[0]) || !isHit(replies[1]) || string(replies[0].body) != string(replies[1].body) {
			t.Fatalf("miss then identical hit expected: %q / %q", replies[0].header.Get("Cache-Status"), replies[1].header.Get("Cache-Status"))
		}
		for i, r := range replies {
			if strings.Contains(string(r.body), `"choices":[]`) || !strings.HasSuffix(string(r.body), "data: [DONE]\n\n") {
				t.Errorf("reply %d holds a usage-only chunk or is cut: %q", i, r.body)
			}
		}
	})

	t.Run("a polled background response is never served stale; a cancel purges", func(t *testing.T) {
		created := call(t, s, "POST", "/v1/responses", ta.Token,
			`{"model":"gpt-4.1-mini","input":"later","background":true}`, nil)
		var job jobObject
		if err := json.Unmarshal(created.body, &job); err != nil || job.Status != "queued" {
			t.Fatalf("create: %d %s", created.status, created.body)
		}
		// Each poll goes upstream and sees the work move on, however
		// eagerly the client would cache it.
		var seen []string
		for _, cc := range []string{"", optIn} {
			r := call(t, s, "GET", "/v1/responses/"+job.ID, ta.Token, "", map[string]string{"Cache-Control": cc})
			if isHit(r) {
				t.Fatalf("poll answered from the cache: %s", r.body)
			}
			var j jobObject
			_ = json.Unmarshal(r.body, &j)
			seen = append(seen, j.Status)
		}
		if strings.Join(seen, ",") != "in_progress,completed" {
			t.Errorf("polls saw %v, want in_progress then completed", seen)
		}
		// The client's opt-in stored the completed object; a write to the
		// resource drops it.
		if r := call(t, s, "GET", "/v1/responses/"+job.ID, ta.Token, "", map[string]string{"Cache-Control": optIn}); !isHit(r) {
			t.Fatalf("an opted-in GET of a finished response was not stored: %q", r.header.Get("Cache-Status"))
		}
		if r := call(t, s, "DELETE", "/v1/responses/"+job.ID, ta.Token, "", nil); r.status != 200 {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if r := call(t, s, "GET", "/v1/responses/"+job.ID, ta.Token, "", map[string]string{"Cache-Control": optIn}); isHit(r) || r.status != 404 {
			t.Errorf("after DELETE: %d %q, want a 404 from upstream, not the stale cached object", r.status, r.header.Get("Cache-Status"))
		}
	})

	t.Run("an aborted stream is not stored", func(t *testing.T) {
		s.upstream.Reset()
		actx, cancel := context.WithCancel(ctx)
		st := s.client(ta.Token).Chat.Completions.NewStreaming(actx, chatParams("abort me"),
			option.WithHeader("Cache-Control", optIn), option.WithHeader("x-fake-words", "100"), option.WithHeader("x-fake-chunk-delay", "20ms"))
		st.Next()
		st.Next()
		cancel()
		st.Close()
		time.Sleep(200 * time.Millisecond)
		st2 := s.client(ta.Token).Chat.Completions.NewStreaming(ctx, chatParams("abort me"),
			option.WithHeader("Cache-Control", optIn), option.WithHeader("x-fake-words", "100"))
		for st2.Next() {
		}
		st2.Close()
		if n := s.upstream.Count(); n != 2 {
			t.Fatalf("upstream calls %d, want 2: the aborted stream must not have been stored", n)
		}
	})

	t.Run("identical concurrent misses go upstream once", func(t *testing.T) {
		s.upstream.Reset()
		var wg sync.WaitGroup
		var mu sync.Mutex
		hits := 0
		for range 20 {
			wg.Go(func() {
				// The upstream takes longer than Envoy's message_timeout (2s):
				// waiting followers must have asked Envoy for more time.
				r := call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(5), map[string]string{"Cache-Control": optIn, "x-fake-delay": "3s"})
				if r.status != 200 {
					t.Errorf("status %d %s", r.status, r.body)
				}
				mu.Lock()
				if isHit(r) {
					hits++
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		if n := s.upstream.Count(); n != 1 || hits != 19 {
			t.Fatalf("upstream calls %d and %d hits, want 1 and 19", n, hits)
		}
	})

	t.Run("purge by request and by project, then miss", func(t *testing.T) {
		call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(6), map[string]string{"Cache-Control": optIn})
		var out struct{ Purged int }
		s.mustManage("POST", "/manage/cache/purge", map[string]any{"project_id": pa.ID, "request": map[string]any{
			"method": "POST", "path": "/v1/chat/completions", "body": json.RawMessage(chat(6)),
			// Go's client adds Accept-Encoding: gzip, which is not part of
			// the key (entries are identity; Envoy compresses per client).
			"headers": map[string]string{"accept-encoding": "gzip"},
		}}, 200, &out)
		if out.Purged != 1 {
			t.Fatalf("purged %d, want 1", out.Purged)
		}
		if isHit(call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(6), map[string]string{"Cache-Control": optIn})) {
			t.Fatal("hit after purge")
		}
		s.mustManage("POST", "/manage/cache/purge", map[string]any{"project_id": pa.ID}, 200, &out)
		if out.Purged < 2 {
			t.Fatalf("project purge removed %d entries", out.Purged)
		}
		if isHit(call(t, s, "GET", "/v1/models", ta.Token, "", nil)) {
			t.Fatal("hit after project purge")
		}
		// Project b's entry survived project a's purge.
		if !isHit(call(t, s, "GET", "/v1/models", tb.Token, "", nil)) {
			t.Fatal("project purge touched another project")
		}
	})

	t.Run("purge by path prefix: only the entries under it go", func(t *testing.T) {
		// Entries stored by real traffic: a model list and a chat answer.
		call(t, s, "GET", "/v1/models", ta.Token, "", nil)
		call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(8), map[string]string{"Cache-Control": optIn})
		if !isHit(call(t, s, "GET", "/v1/models", ta.Token, "", nil)) || !isHit(call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(8), map[string]string{"Cache-Control": optIn})) {
			t.Fatal("entries not stored")
		}
		var out struct{ Purged int }
		s.mustManage("POST", "/manage/cache/purge", map[string]any{"project_id": pa.ID, "prefix": "/v1/models"}, 200, &out)
		if out.Purged != 1 {
			t.Fatalf("prefix purge removed %d entries, want 1", out.Purged)
		}
		if isHit(call(t, s, "GET", "/v1/models", ta.Token, "", nil)) {
			t.Fatal("the model list was still cached after its prefix was purged")
		}
		if !isHit(call(t, s, "POST", "/v1/chat/completions", ta.Token, chat(8), map[string]string{"Cache-Control": optIn})) {
			t.Fatal("a prefix purge of /v1/models took the chat answer too")
		}
	})
}

// TestCacheRedisDownStillServes: an unreachable cache is a miss, not an error.
func TestCacheRedisDownStillServes(t *testing.T) {
	rds := testenv.NewOwnedRedis(t)
	s := startStack(t, stackOptions{env: map[string]string{"LLM_PROXY_CACHE": "redis", "LLM_PROXY_REDIS_URL": rds.URL()}})
	p := s.createProject("cache-down", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	call(t, s, "GET", "/v1/models", tok.Token, "", nil)
	if !isHit(call(t, s, "GET", "/v1/models", tok.Token, "", nil)) {
		t.Fatal("no hit with Redis up")
	}
	rds.Stop()
	for i := range 3 {
		if r := call(t, s, "GET", "/v1/models", tok.Token, "", nil); r.status != 200 || isHit(r) {
			t.Fatalf("request %d with the cache down: %d %q", i, r.status, r.header.Get("Cache-Status"))
		}
	}
	if !strings.Contains(s.metrics(t), "llm_proxy_cache_backend_errors_total") {
		t.Fatal("cache errors not counted")
	}
}

// Identical requests waiting on a leader go upstream the moment the leader
// knows its answer will not be stored (here: larger than an entry may be),
// not when the leader's long stream ends or their wait runs out.
func TestCacheFollowersReleasedWhenLeaderWillNotStore(t *testing.T) {
	s := startStack(t, stackOptions{env: map[string]string{
		"LLM_PROXY_CACHE_MAX_ENTRY_BYTES": "1024",
		"LLM_PROXY_CACHE_WAIT":            "9s",
	}})
	p := s.createProject("coalesce", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	// n=10 streams ten role chunks (over 1 KiB) before the fake holds the
	// leader: its capture overflows, and it stays in flight until released.
	body := `{"model":"gpt-4.1-mini","stream":true,"n":10,"messages":[{"role":"user","content":"too big to keep"}]}`
	hold := "coalesce-" + t.Name()
	leaderDone := make(chan reply, 1)
	go func() {
		leaderDone <- call(t, s, "POST", "/v1/chat/completions", tok.Token, body, map[string]string{"Cache-Control": optIn, fakeopenai.HeaderHold: hold})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.upstream.WaitHeld(ctx, hold); err != nil {
		t.Fatal(err)
	}
	// The follower shares the leader's key (x-fake-* headers are not part of
	// it). It must not wait for the held leader: a 5s deadline, well under
	// LLM_PROXY_CACHE_WAIT, fails the test if it does.
	req, _ := http.NewRequestWithContext(ctx, "POST", s.envoyURL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", optIn)
	follower := &http.Client{Timeout: 5 * time.Second}
	resp, err := follower.Do(req)
	if err != nil {
		t.Fatalf("the follower waited on a leader that will not store: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || isHit(reply{resp.StatusCode, resp.Header, b}) {
		t.Fatalf("follower: %d %q", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
	select {
	case <-leaderDone:
		t.Fatal("the leader ended before the follower: the test proves nothing")
	default:
	}
	s.upstream.Release(hold)
	if r := <-leaderDone; r.status != 200 {
		t.Fatalf("leader: %d", r.status)
	}
}
