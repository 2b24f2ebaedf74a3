package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
	"github.com/llm-proxy/llm-proxy/usage"
)

// reply is one raw HTTP exchange through Envoy.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func send(t *testing.T, method, url, tok, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	// These tests count what reaches the upstream: keep the cache out.
	req.Header.Set("Cache-Control", "no-store")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (r reply) errorField(name string) string {
	var e struct {
		Error map[string]any `json:"error"`
	}
	json.Unmarshal(r.body, &e)
	s, _ := e.Error[name].(string)
	return s
}

func headerInt(t *testing.T, h http.Header, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(h.Get(name), 10, 64)
	if err != nil {
		t.Fatalf("header %s = %q", name, h.Get(name))
	}
	return n
}

// TestRequestLimitExactAcrossReplicas: two llm-proxy instances (each behind
// its own Envoy) share one Redis and one PostgreSQL; 200 concurrent requests
// against 50 per minute → exactly 50 pass. Then a revoke on one replica is
// enforced by the other through the Redis broadcast: its validation cache
// would otherwise trust the token for an hour.
func TestRequestLimitExactAcrossReplicas(t *testing.T) {
	dbURL := testenv.NewPostgresDB(t)
	redisURL, prefix := testenv.Redis(t), "t:"+t.Name()+":"
	env := map[string]string{
		"LLM_PROXY_REDIS_URL":    redisURL,
		"LLM_PROXY_REDIS_PREFIX": prefix,
		// Only the broadcast can make a replica forget a token it validated.
		"LLM_PROXY_AUTH_CACHE_TTL": "1h",
		// 200 requests at once on two cores under the race detector can
		// take Redis calls past the default timeout, and the requests limit
		// would then fall back to per-replica counting (its failure mode):
		// this test is about exactness with Redis up.
		"LLM_PROXY_REDIS_TIMEOUT": "5s",
	}
	a := startStack(t, stackOptions{databaseURL: dbURL, env: env})
	b := startStack(t, stackOptions{databaseURL: dbURL, env: env})
	p := a.createProject("replicas", realKey)
	limited := a.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"requests_per_minute": 50}})

	statuses := statusesOf(200, func(i int) reply {
		r := send(t, "GET", []*stack{a, b}[i%2].envoyURL+"/v1/models", limited.Token, "")
		if r.status == 429 && (r.errorField("code") != "rate_limit_exceeded" || r.header.Get("Retry-After") == "") {
			t.Errorf("429 without rate_limit_exceeded or retry-after: %v %s", r.header, r.body)
		}
		return r
	})
	if statuses[200] != 50 || statuses[429] != 150 {
		t.Fatalf("statuses %v, want exactly 50×200 and 150×429", statuses)
	}
	if n := a.upstream.Count() + b.upstream.Count(); n != 50 {
		t.Fatalf("upstreams received %d requests, want 50", n)
	}

	// Revocation everywhere: replica b has the token cached, and learns of
	// the revoke on replica a only from the broadcast, once both replicas'
	// subscriptions are confirmed by Redis. The deadline only catches a
	// broadcast that never arrives.
	tok := a.createToken(map[string]any{"project_id": p.ID})
	if r := send(t, "GET", b.envoyURL+"/v1/models", tok.Token, ""); r.status != 200 {
		t.Fatalf("replica b before revoke: %d %s", r.status, r.body)
	}
	waitSubscribers(t, redisURL, prefix, 2)
	a.mustManage("DELETE", "/manage/tokens/"+tok.ID, nil, 200, nil)
	deadline := time.Now().Add(hangBound)
	for {
		r := send(t, "GET", b.envoyURL+"/v1/models", tok.Token, "")
		if r.status == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica b still answers %d %v after the revoke on replica a", r.status, hangBound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hangBound bounds a wait for something that normally takes milliseconds:
// it only catches a hang, however slow and shared the machine.
const hangBound = 30 * time.Second

// waitSubscribers returns once Redis counts n subscribers to the one pub/sub
// channel whose name starts with prefix.
func waitSubscribers(t *testing.T, redisURL, prefix string, n int64) {
	t.Helper()
	rdb := testenv.NewRedisClient(t, redisURL)
	deadline := time.Now().Add(hangBound)
	for {
		// Subscriptions are per node on a Redis Cluster: count them on each.
		var got atomic.Int64
		testenv.ForEachNode(t, rdb, func(ctx context.Context, node redis.UniversalClient) error {
			channels, err := node.PubSubChannels(ctx, prefix+"*").Result()
			if err != nil || len(channels) != 1 {
				return err
			}
			counts, err := node.PubSubNumSub(ctx, channels[0]).Result()
			got.Add(counts[channels[0]])
			return err
		})
		if got.Load() == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pub/sub channels under %s: %d subscribers after %v, want one channel with %d", prefix, got.Load(), hangBound, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTokensPerMinuteReserveAndSettle: admitted tokens never exceed the
// limit, the x-ratelimit-*-tokens headers follow what was charged, and the
// usage API agrees with what the upstream reported.
func TestTokensPerMinuteReserveAndSettle(t *testing.T) {
	s := startStack(t, stackOptions{})
	p := s.createProject("tpm", realKey)
	const limit = 400
	tok := s.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"tokens_per_minute": limit}})
	tk := usage.NewTokenizer()
	url := s.envoyURL + "/v1/chat/completions"
	body := func(i int) string {
		return fmt.Sprintf(`{"model":"gpt-4.1-mini","max_tokens":8,"messages":[{"role":"user","content":"request number %d says hello to the proxy"}]}`, i)
	}

	// Larger than the whole limit: refused at once, and retrying cannot help.
	r := send(t, "POST", url, tok.Token, `{"model":"gpt-4.1-mini","max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}`)
	if r.status != 429 || r.errorField("type") != "tokens" || r.header.Get("X-Should-Retry") != "false" {
		t.Fatalf("oversized request: %d %v %s", r.status, r.header, r.body)
	}

	var used, successes int64
	refused := int64(1) // the oversized request: an error in the roll-up, not a request
	for i := 0; i < 100; i++ {
		b := body(i)
		r := send(t, "POST", url, tok.Token, b)
		if r.status == 429 {
			if r.errorField("code") != "rate_limit_exceeded" || r.header.Get("Retry-After") == "" {
				t.Fatalf("429: %v %s", r.header, r.body)
			}
			refused++
			break
		}
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		var cc struct {
			Usage struct {
				TotalTokens int64 `json:"total_tokens"`
			}
		}
		if err := json.Unmarshal(r.body, &cc); err != nil || cc.Usage.TotalTokens == 0 {
			t.Fatalf("no usage in %s", r.body)
		}
		// What this request was charged at admission: everything settled so
		// far plus its own reservation (prompt estimate + max_tokens).
		reserved := tk.CountPrompt("gpt-4.1-mini", []byte(b)) + 8
		if got, want := headerInt(t, r.header, "X-Ratelimit-Remaining-Tokens"), int64(limit)-used-reserved; got != want {
			t.Fatalf("request %d: remaining tokens %d, want %d (limit %d - settled %d - reserved %d)", i, got, want, limit, used, reserved)
		}
		if headerInt(t, r.header, "X-Ratelimit-Limit-Tokens") != limit || r.header.Get("X-Ratelimit-Reset-Tokens") == "" {
			t.Fatalf("token headers %v", r.header)
		}
		used += cc.Usage.TotalTokens
		successes++
	}
	if successes < 2 || used > limit {
		t.Fatalf("%d requests admitted using %d tokens against a limit of %d", successes, used, limit)
	}

	// The usage API agrees with the upstream once the roll-up is flushed.
	deadline := time.Now().Add(hangBound)
	for {
		var u struct {
			Data []struct {
				PriceVersion string `json:"price_version"`
			} `json:"data"`
			Total struct {
				Requests    int64   `json:"requests"`
				Errors      int64   `json:"errors"`
				TotalTokens int64   `json:"total_tokens"`
				CostUSD     float64 `json:"cost_usd"`
			} `json:"total"`
		}
		s.mustManage("GET", "/manage/projects/"+p.ID+"/usage", nil, 200, &u)
		if u.Total.Requests == successes && u.Total.Errors == refused && u.Total.TotalTokens == used {
			if u.Total.CostUSD <= 0 || len(u.Data) == 0 || u.Data[0].PriceVersion == "" {
				t.Fatalf("usage without cost or price version: %+v", u)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage API after %v: %+v, want %d requests, %d errors and %d tokens", hangBound, u.Total, successes, refused, used)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMonthlyBudget(t *testing.T) {
	s := startStack(t, stackOptions{})
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "budget", "openai_api_key": realKey, "monthly_budget_usd": 0.0002}, 201, &p)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	ctx := context.Background()
	c := s.client(tok.Token)
	for i := range 200 {
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gpt-4.1-mini", MaxTokens: openai.Int(20),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("spend a little of the budget please")},
		})
		if err == nil {
			continue
		}
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "insufficient_quota" {
			t.Fatalf("request %d: %v", i, err)
		}
		if i == 0 {
			t.Fatal("the first request was refused: the budget fits several")
		}
		return
	}
	t.Fatal("200 requests did not exhaust a $0.0002 budget")
}

// TestRetriesFollowRetryAfter: the SDK with retries on waits as told and
// succeeds once a slot frees; with retries off it reports the 429. The slot
// is released only after the retrying client's first attempt was refused, so
// the test cannot pass without a retry, and each retry must have waited at
// least the retry-after-ms of the refusal before it.
func TestRetriesFollowRetryAfter(t *testing.T) {
	s := startStack(t, stackOptions{})
	p := s.createProject("retry", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"max_concurrent": 1}})
	ctx := context.Background()

	hold := "retry-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	stream := s.client(tok.Token).Chat.Completions.NewStreaming(ctx, chatParams("hold this slot"), option.WithHeader("x-fake-hold", hold))
	if !stream.Next() {
		t.Fatalf("held stream: %v", stream.Err())
	}
	if _, err := s.client(tok.Token).Chat.Completions.New(ctx, chatParams("no retries")); statusOf(err) != 429 {
		t.Fatalf("with retries off and the slot taken: %v, want 429", err)
	}

	// Every attempt of the retrying client, as its middleware sees it.
	type attempt struct {
		sent, answered time.Time
		retryCount     string // X-Stainless-Retry-Count, the SDK's own numbering
		status         int
		retryAfter     time.Duration // retry-after-ms of the answer
	}
	var (
		mu       sync.Mutex
		attempts []attempt
		refused  = make(chan struct{}) // closed at the first 429
		once     sync.Once
	)
	record := func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		a := attempt{sent: time.Now(), retryCount: req.Header.Get("X-Stainless-Retry-Count")}
		resp, err := next(req)
		a.answered = time.Now()
		if resp != nil {
			a.status = resp.StatusCode
			if ms, err := strconv.ParseInt(resp.Header.Get("Retry-After-Ms"), 10, 64); err == nil {
				a.retryAfter = time.Duration(ms) * time.Millisecond
			}
		}
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
		if a.status == 429 {
			once.Do(func() { close(refused) })
		}
		return resp, err
	}
	// Enough retries that a slot freed late on a slow machine is still met.
	retrying := openai.NewClient(option.WithBaseURL(s.envoyURL+"/v1/"), option.WithAPIKey(tok.Token),
		option.WithMaxRetries(10), option.WithMiddleware(record))
	rctx, cancel := context.WithTimeout(ctx, 2*hangBound)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := retrying.Chat.Completions.New(rctx, chatParams("retry until the slot frees"))
		done <- err
	}()
	select {
	case <-refused: // the first attempt met the held slot
	case err := <-done:
		t.Fatalf("the retrying client finished while the slot was held: %v", err)
	case <-time.After(hangBound):
		t.Fatalf("no attempt of the retrying client answered within %v", hangBound)
	}
	s.upstream.Release(hold)
	for stream.Next() {
	}
	stream.Close()
	if err := <-done; err != nil {
		t.Fatalf("retrying client: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	last := len(attempts) - 1
	if last < 1 || attempts[last].status != 200 {
		t.Fatalf("attempts %+v: want 429s then a 200", attempts)
	}
	for i, a := range attempts {
		if a.retryCount != strconv.Itoa(i) {
			t.Errorf("attempt %d sent X-Stainless-Retry-Count %q", i, a.retryCount)
		}
		if i == last {
			break
		}
		if a.status != 429 || a.retryAfter <= 0 {
			t.Fatalf("attempt %d: status %d, retry-after-ms %v; want 429 with a wait", i, a.status, a.retryAfter)
		}
		waited := attempts[i+1].sent.Sub(a.answered)
		if waited < a.retryAfter {
			t.Errorf("attempt %d came %v after a 429 that said to wait %v", i+1, waited, a.retryAfter)
		}
		t.Logf("attempt %d: 429, retry after %v; the next came %v later", i, a.retryAfter, waited.Round(time.Millisecond))
	}
	// The refused attempts never reached the upstream; the last one did.
	forwarded := 0
	for _, r := range s.upstream.Requests() {
		if strings.Contains(string(r.Body), "retry until the slot frees") {
			forwarded++
		}
	}
	if forwarded != 1 {
		t.Fatalf("the upstream received the retried request %d times, want 1", forwarded)
	}
}

// TestRedisFailureModes stops Redis under a running llm-proxy and checks each
// declared failure mode, then restarts Redis and checks llm-proxy returns to
// it by itself.
func TestRedisFailureModes(t *testing.T) {
	for _, mode := range []string{"closed", "open", "local"} {
		t.Run(mode, func(t *testing.T) {
			rds := testenv.NewOwnedRedis(t)
			s := startStack(t, stackOptions{env: map[string]string{
				"LLM_PROXY_REDIS_URL":           rds.URL(),
				"LLM_PROXY_LIMIT_FAILURE_MODES": "requests=" + mode,
			}})
			p := s.createProject("redis-"+mode, realKey)
			tok := s.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"requests_per_minute": 3}})
			url := s.envoyURL + "/v1/models"
			if r := send(t, "GET", url, tok.Token, ""); r.status != 200 || r.header.Get("X-Ratelimit-Remaining-Requests") != "2" {
				t.Fatalf("with Redis up: %d %v", r.status, r.header)
			}

			rds.Stop()
			var got []int
			for range 5 {
				got = append(got, send(t, "GET", url, tok.Token, "").status)
			}
			want := map[string][]int{
				"closed": {503, 503, 503, 503, 503},
				"open":   {200, 200, 200, 200, 200},
				"local":  {200, 200, 200, 429, 429}, // a fresh in-process limiter: 3 per minute
			}[mode]
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Redis down, mode %s: statuses %v, want %v", mode, got, want)
			}
			if !strings.Contains(s.metrics(t), "llm_proxy_ratelimit_degraded 1") {
				t.Fatal("degraded state not in metrics")
			}
			if !strings.Contains(s.logs.String(), `"level":"warn"`) {
				t.Fatal("no warning logged for the degraded limiter")
			}

			rds.Start()
			deadline := time.Now().Add(hangBound)
			for {
				r := send(t, "GET", url, tok.Token, "")
				// Redis came back empty (it was killed): the window starts over.
				if r.status == 200 && r.header.Get("X-Ratelimit-Remaining-Requests") != "" && strings.Contains(s.metrics(t), "llm_proxy_ratelimit_degraded 0") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no recovery %v after Redis returned: %d %v", hangBound, r.status, r.header)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

func (s *stack) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(s.manageURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
