package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

const realKey = "sk-proj-REALKEY-0123456789abcdefghijklmnopqrstuvwxyz"

func chatParams(msg string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "gpt-4.1-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(msg)},
	}
}

func statusOf(err error) int {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

// TestEndToEnd runs the walking skeleton's scenarios against one deployment on
// SQLite, then checks that nothing secret was left in clear in the database
// or the logs.
func TestEndToEnd(t *testing.T) {
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	p := s.createProject("e2e", realKey)
	if strings.Contains(p.OpenAIAPIKey, "REALKEY") {
		t.Fatalf("management API returned the key unmasked: %q", p.OpenAIAPIKey)
	}
	tok := s.createToken(map[string]any{"project_id": p.ID, "expires_in": "1h"})
	secrets := []string{tok.Token}

	t.Run("chat is forwarded with the project key", func(t *testing.T) {
		s.upstream.Reset()
		res, err := s.client(tok.Token).Chat.Completions.New(ctx, chatParams("hello there"))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Choices[0].Message.Content; got != fakeopenai.EchoReply("hello there") {
			t.Fatalf("reply %q", got)
		}
		if res.Usage.TotalTokens == 0 {
			t.Fatal("usage lost on the way")
		}
		reqs := s.upstream.Requests()
		if len(reqs) != 1 || reqs[0].Authorization != "Bearer "+realKey {
			t.Fatalf("upstream saw %d requests, authorization %q", len(reqs), reqs[0].Authorization)
		}
		for _, r := range reqs {
			for name, vs := range r.Header {
				for _, v := range vs {
					if strings.Contains(v, tok.Token) {
						t.Fatalf("proxy token reached the upstream in %s", name)
					}
				}
			}
		}
	})

	t.Run("streaming is not buffered", func(t *testing.T) {
		holdID := "stream-" + fmt.Sprint(time.Now().UnixNano())
		words := "one two three four five six"
		stream := s.client(tok.Token).Chat.Completions.NewStreaming(ctx, chatParams(words),
			option.WithHeader("x-fake-hold", holdID))
		defer stream.Close()
		// The upstream holds after its first chunk until released: the client
		// must see that chunk while the rest has not been written yet.
		if !stream.Next() {
			t.Fatalf("no first chunk: %v", stream.Err())
		}
		waitCtx, cancel := context.WithTimeout(ctx, hangBound)
		defer cancel()
		if err := s.upstream.WaitHeld(waitCtx, holdID); err != nil {
			t.Fatalf("upstream never held: %v", err)
		}
		var content strings.Builder
		content.WriteString(stream.Current().Choices[0].Delta.Content)
		s.upstream.Release(holdID)
		chunks := 1
		for stream.Next() {
			chunks++
			c := stream.Current()
			if len(c.Choices) == 0 {
				// llm-proxy asks for usage on the client's behalf and must
				// hide the usage-only chunk from a client that did not.
				t.Fatalf("chunk %d without choices reached a client that did not ask for usage: %+v", chunks, c)
			}
			content.WriteString(c.Choices[0].Delta.Content)
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if content.String() != fakeopenai.EchoReply(words) {
			t.Fatalf("streamed content %q, want %q (%d chunks)", content.String(), fakeopenai.EchoReply(words), chunks)
		}
	})

	t.Run("a client that asks for stream usage gets it", func(t *testing.T) {
		params := chatParams("count me")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := s.client(tok.Token).Chat.Completions.NewStreaming(ctx, params)
		defer stream.Close()
		var usageChunks int
		for stream.Next() {
			if c := stream.Current(); len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
				usageChunks++
			}
		}
		if err := stream.Err(); err != nil || usageChunks != 1 {
			t.Fatalf("usage chunks %d, err %v", usageChunks, err)
		}
		// Both streams were asked for usage upstream, whatever the client said.
		for _, r := range s.upstream.Requests() {
			if r.Path == "/v1/chat/completions" && strings.Contains(string(r.Body), `"stream":true`) &&
				!strings.Contains(string(r.Body), `"include_usage":true`) {
				t.Fatalf("a stream went upstream without include_usage: %s", r.Body)
			}
		}
	})

	t.Run("denials reach the SDK as OpenAI errors", func(t *testing.T) {
		s.upstream.Reset()
		unknown := "llmp_" + strings.Repeat("A", 43)
		short := s.createToken(map[string]any{"project_id": p.ID, "expires_in": "1s"})
		// llm-proxy runs in this process, on this clock: the token expired
		// at the latest one second after its creation returned.
		shortExpiredBy := time.Now().Add(time.Second)
		revoked := s.createToken(map[string]any{"project_id": p.ID})
		capped := s.createToken(map[string]any{"project_id": p.ID, "max_requests": 2})
		secrets = append(secrets, short.Token, revoked.Token, capped.Token)

		if _, err := s.client(revoked.Token).Models.List(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.client(revoked.Token).Chat.Completions.New(ctx, chatParams("before revoke")); err != nil {
			t.Fatalf("a fresh token must work: %v", err)
		}
		s.mustManage("DELETE", "/manage/tokens/"+revoked.ID, nil, 200, nil)
		if _, err := s.client(revoked.Token).Chat.Completions.New(ctx, chatParams("after revoke")); statusOf(err) != 401 {
			t.Fatalf("revoked token: %v, want 401 on the very next request", err)
		}
		if _, err := s.client(unknown).Chat.Completions.New(ctx, chatParams("x")); statusOf(err) != 401 {
			t.Fatalf("unknown token: %v, want 401", err)
		}
		time.Sleep(time.Until(shortExpiredBy)) // waits for the expiry instant, not a guess
		if _, err := s.client(short.Token).Chat.Completions.New(ctx, chatParams("x")); statusOf(err) != 401 {
			t.Fatalf("expired token: %v, want 401", err)
		}
		for i := range 2 {
			if _, err := s.client(capped.Token).Chat.Completions.New(ctx, chatParams("x")); err != nil {
				t.Fatalf("capped request %d: %v", i+1, err)
			}
		}
		_, err := s.client(capped.Token).Chat.Completions.New(ctx, chatParams("x"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "insufficient_quota" {
			t.Fatalf("third request on a 2-request token: %v, want 429 insufficient_quota", err)
		}
		// upstream: 1 models list + 1 before revoke + 2 capped = 4; no denied one.
		if n := s.upstream.Count(); n != 4 {
			t.Fatalf("upstream received %d requests, want 4: denied requests must not be forwarded", n)
		}
	})

	t.Run("max_requests is exact under concurrency", func(t *testing.T) {
		capped := s.createToken(map[string]any{"project_id": p.ID, "max_requests": 10})
		secrets = append(secrets, capped.Token)
		statuses := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				_, err := s.client(capped.Token).Chat.Completions.New(ctx, chatParams("race"))
				mu.Lock()
				defer mu.Unlock()
				statuses[statusOf(err)]++
			})
		}
		wg.Wait()
		if statuses[0] != 10 || statuses[429] != 20 {
			t.Fatalf("statuses %v, want 10 successes and 20×429", statuses)
		}
	})

	t.Run("deactivating a project applies on the next request", func(t *testing.T) {
		other := s.createProject("to-deactivate", "sk-other-0123456789abcdefghij")
		ot := s.createToken(map[string]any{"project_id": other.ID})
		secrets = append(secrets, ot.Token, "sk-other-0123456789abcdefghij")
		if _, err := s.client(ot.Token).Chat.Completions.New(ctx, chatParams("x")); err != nil {
			t.Fatal(err)
		}
		s.mustManage("PATCH", "/manage/projects/"+other.ID, map[string]any{"active": false}, 200, nil)
		if _, err := s.client(ot.Token).Chat.Completions.New(ctx, chatParams("x")); statusOf(err) != 403 {
			t.Fatalf("inactive project: %v, want 403", err)
		}
		s.mustManage("PATCH", "/manage/projects/"+other.ID, map[string]any{"active": true}, 200, nil)
		if _, err := s.client(ot.Token).Chat.Completions.New(ctx, chatParams("x")); err != nil {
			t.Fatalf("reactivated project: %v", err)
		}
		var out struct{ Revoked int }
		s.mustManage("POST", "/manage/projects/"+other.ID+"/tokens/revoke", nil, 200, &out)
		if out.Revoked != 1 {
			t.Fatalf("revoked %d tokens, want 1", out.Revoked)
		}
		if _, err := s.client(ot.Token).Chat.Completions.New(ctx, chatParams("x")); statusOf(err) != 401 {
			t.Fatalf("after revoke-all: %v, want 401", err)
		}
	})

	t.Run("unknown URLs are refused before the upstream", func(t *testing.T) {
		s.upstream.Reset()
		for _, path := range []string{"/v1/modelsXYZ", "/v1/models/a/b", "/v1/../admin"} {
			status, body := rawRequest(t, "GET", s.envoyURL+path, tok.Token)
			if path == "/v1/../admin" {
				// Envoy normalises the path first; whatever it answers must not
				// reach the upstream.
				continue
			}
			if status != 404 || !isOpenAIError(body, "unknown_url") {
				t.Fatalf("%s: %d %s", path, status, body)
			}
		}
		if n := s.upstream.Count(); n != 0 {
			t.Fatalf("upstream received %d requests", n)
		}
	})

	t.Run("upstream errors pass through", func(t *testing.T) {
		_, err := s.client(tok.Token).Chat.Completions.New(ctx, chatParams("x"), option.WithHeader("x-fake-status", "500"))
		if statusOf(err) != 500 {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("metrics count phases and decisions", func(t *testing.T) {
		resp, err := http.Get(s.manageURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics := string(b)
		for _, series := range []string{
			`llm_proxy_extproc_messages_total{phase="request_headers"}`,
			`llm_proxy_extproc_phase_duration_seconds_count{phase="request_headers"}`,
			`llm_proxy_extproc_decisions_total{outcome="forwarded"}`,
			`llm_proxy_extproc_decisions_total{outcome="denied"}`,
		} {
			if !strings.Contains(metrics, series+" ") || strings.Contains(metrics, series+" 0\n") {
				t.Errorf("metrics lack a non-zero %s", series)
			}
		}
		checkNoSecrets(t, []string{metrics}, append(secrets, realKey))
	})

	t.Run("sidecar stopped: Envoy fails closed in the OpenAI shape", func(t *testing.T) {
		s.stop()
		s.upstream.Reset()
		status, body := rawRequest(t, "POST", s.envoyURL+"/v1/chat/completions", tok.Token)
		if status < 500 || !isOpenAIError(body, "") {
			t.Fatalf("with the sidecar down: %d %s", status, body)
		}
		if n := s.upstream.Count(); n != 0 {
			t.Fatalf("upstream received %d requests with the sidecar down", n)
		}
		_, err := s.client(tok.Token).Chat.Completions.New(ctx, chatParams("x"))
		if st := statusOf(err); st < 500 {
			t.Fatalf("SDK saw %v", err)
		}
	})

	t.Run("no secret in clear in the database or the logs", func(t *testing.T) {
		secrets := append(secrets, realKey)
		var haystacks []string
		files, _ := filepath.Glob(s.dbURL + "*") // the database, its WAL and SHM
		if len(files) == 0 {
			t.Fatalf("no database files at %s", s.dbURL)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			haystacks = append(haystacks, string(b))
		}
		haystacks = append(haystacks, s.logs.String(), s.envoy.Logs())
		checkNoSecrets(t, haystacks, secrets)
		if !strings.Contains(s.logs.String(), `"token_id":"`+tok.ID+`"`) {
			t.Fatal("logs do not name the token by its public id: the scan would prove nothing")
		}
	})
}

// TestTokenLifecyclePostgres runs create, use, revoke, 401 on PostgreSQL,
// then reads every row to check nothing secret is stored in clear.
func TestTokenLifecyclePostgres(t *testing.T) {
	dbURL := testenv.NewPostgresDB(t)
	s := startStack(t, stackOptions{databaseURL: dbURL})
	ctx := context.Background()
	p := s.createProject("pg", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID, "max_requests": 5})
	if _, err := s.client(tok.Token).Chat.Completions.New(ctx, chatParams("hi")); err != nil {
		t.Fatal(err)
	}
	if got := s.upstream.Requests()[0].Authorization; got != "Bearer "+realKey {
		t.Fatalf("upstream authorization %q", got)
	}
	s.mustManage("DELETE", "/manage/tokens/"+tok.ID, nil, 200, nil)
	if _, err := s.client(tok.Token).Chat.Completions.New(ctx, chatParams("hi")); statusOf(err) != 401 {
		t.Fatalf("revoked: %v", err)
	}
	// The request count reaches the store in the background flush.
	deadline := time.Now().Add(hangBound)
	for {
		var got struct {
			RequestCount int `json:"request_count"`
		}
		s.mustManage("GET", "/manage/tokens/"+tok.ID, nil, 200, &got)
		if got.RequestCount == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("request_count %d after %v, want 1", got.RequestCount, hangBound)
		}
		time.Sleep(50 * time.Millisecond)
	}

	rows := dumpRows(t, ctx, dbURL)
	checkNoSecrets(t, append(rows, s.logs.String()), []string{tok.Token, realKey})
}

func checkNoSecrets(t *testing.T, haystacks, secrets []string) {
	t.Helper()
	for _, h := range haystacks {
		for _, sec := range secrets {
			// Any 12-character window of a secret counts as a leak.
			for i := 0; i+12 <= len(sec); i += 6 {
				if strings.Contains(h, sec[i:i+12]) {
					t.Fatalf("found part of a secret (%s…) in clear", sec[:4])
				}
			}
		}
	}
}

func rawRequest(t *testing.T, method, url, tok string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(`{"model":"gpt-4o-mini","messages":[]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode >= 400 && !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s %s: content-type %q for an error: %s", method, url, ct, b)
	}
	return resp.StatusCode, b
}

// isOpenAIError reports whether body is OpenAI's error document (with the
// given code, unless code is "").
func isOpenAIError(body []byte, code string) bool {
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    any     `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		return false
	}
	return code == "" || e.Error.Code == code
}

// dumpRows returns every row of every table as JSON text, straight from
// PostgreSQL, bypassing the store.
func dumpRows(t *testing.T, ctx context.Context, dbURL string) []string {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rs, err := db.QueryContext(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var name string
		if err := rs.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rs.Close()
	var out []string
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT row_to_json(t)::text FROM %q t`, table))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var row string
			if err := rows.Scan(&row); err != nil {
				t.Fatal(err)
			}
			out = append(out, row)
		}
		rows.Close()
	}
	if len(out) < 2 {
		t.Fatalf("only %d rows in %v: the scan would prove nothing", len(out), tables)
	}
	return out
}
