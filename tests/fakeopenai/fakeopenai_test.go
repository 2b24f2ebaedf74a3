package fakeopenai_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

const testKey = "sk-test-fake-0123456789"

func start(t testing.TB) *fakeopenai.Running {
	t.Helper()
	r, err := fakeopenai.NewTLSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func sdk(r *fakeopenai.Running, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(r.BaseURL()),
		option.WithHTTPClient(r.Client()),
		option.WithAPIKey(testKey),
		option.WithMaxRetries(0),
	}, opts...)...)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func params(stream, includeUsage bool, msgs ...openai.ChatCompletionMessageParamUnion) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: msgs}
	if stream && includeUsage {
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	}
	return p
}

func TestChatCompletionNonStreaming(t *testing.T) {
	r := start(t)
	c := sdk(r)
	res, err := c.Chat.Completions.New(ctx(t), params(false, false,
		openai.SystemMessage("be brief"),
		openai.UserMessage("first question"),
		openai.UserMessage("hello   there\n world"),
	))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.ID, "chatcmpl-") {
		t.Errorf("ID = %q", res.ID)
	}
	if res.Object != "chat.completion" || res.Model != "gpt-4o-mini" || res.Created == 0 {
		t.Errorf("object/model/created = %q %q %d", res.Object, res.Model, res.Created)
	}
	if len(res.Choices) != 1 {
		t.Fatalf("choices = %d", len(res.Choices))
	}
	ch := res.Choices[0]
	if ch.Message.Role != "assistant" || ch.Message.Content != "echo: hello there world" || ch.FinishReason != "stop" {
		t.Errorf("choice = role %q content %q finish %q", ch.Message.Role, ch.Message.Content, ch.FinishReason)
	}
	if got, want := ch.Message.Content, fakeopenai.EchoReply("hello   there\n world"); got != want {
		t.Errorf("content %q, EchoReply %q", got, want)
	}
	wantPrompt := int64(fakeopenai.PromptTokens("be brief", "first question", "hello   there\n world"))
	if wantPrompt != 2+3+2+3+3+3 {
		t.Fatalf("PromptTokens = %d", wantPrompt)
	}
	u := res.Usage
	if u.PromptTokens != wantPrompt || u.CompletionTokens != 4 || u.TotalTokens != wantPrompt+4 {
		t.Errorf("usage = %+v", u)
	}
	if !u.JSON.PromptTokens.Valid() {
		t.Error("usage.prompt_tokens not present")
	}
}

func TestChatCompletionContentParts(t *testing.T) {
	r := start(t)
	c := sdk(r)
	res, err := c.Chat.Completions.New(ctx(t), params(false, false,
		openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("look at"),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.com/x.png"}),
			openai.TextContentPart("this picture"),
		}),
	))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Choices[0].Message.Content; got != "echo: look at this picture" {
		t.Errorf("content = %q", got)
	}
	if res.Usage.PromptTokens != 4+3 || res.Usage.CompletionTokens != 5 {
		t.Errorf("usage = %+v", res.Usage)
	}
}

func TestChatCompletionWordsAndMaxTokens(t *testing.T) {
	r := start(t)
	c := sdk(r)
	res, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("hi")),
		option.WithHeader("x-fake-words", "50"))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Choices[0].Message.Content; got != fakeopenai.WordsReply(50) || fakeopenai.CountWords(got) != 50 {
		t.Errorf("content = %q", got)
	}
	if res.Usage.CompletionTokens != 50 {
		t.Errorf("completion_tokens = %d", res.Usage.CompletionTokens)
	}

	p := params(false, false, openai.UserMessage("hi"))
	p.MaxTokens = openai.Int(10)
	res, err = c.Chat.Completions.New(ctx(t), p, option.WithHeader("x-fake-words", "50"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].FinishReason != "length" || res.Usage.CompletionTokens != 10 ||
		res.Choices[0].Message.Content != fakeopenai.WordsReply(10) {
		t.Errorf("max_tokens 10: finish %q usage %+v content %q", res.Choices[0].FinishReason, res.Usage, res.Choices[0].Message.Content)
	}
}

func TestChatCompletionStreaming(t *testing.T) {
	for _, includeUsage := range []bool{true, false} {
		t.Run("include_usage="+map[bool]string{true: "true", false: "false"}[includeUsage], func(t *testing.T) {
			r := start(t)
			c := sdk(r)
			msg := "one two three four five"
			st := c.Chat.Completions.NewStreaming(ctx(t), params(true, includeUsage, openai.UserMessage(msg)))
			defer st.Close()
			var chunks []openai.ChatCompletionChunk
			for st.Next() {
				chunks = append(chunks, st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			reply := fakeopenai.EchoReply(msg)
			words := strings.Fields(reply)
			// role + one per word + finish (+ usage)
			want := 1 + len(words) + 1
			if includeUsage {
				want++
			}
			if len(chunks) != want {
				t.Fatalf("got %d chunks, want %d", len(chunks), want)
			}
			id := chunks[0].ID
			for i, ch := range chunks {
				if ch.ID != id || !strings.HasPrefix(id, "chatcmpl-") || ch.Object != "chat.completion.chunk" || ch.Model != "gpt-4o-mini" {
					t.Errorf("chunk %d header: %q %q %q", i, ch.ID, ch.Object, ch.Model)
				}
			}
			if d := chunks[0].Choices[0].Delta; d.Role != "assistant" || d.Content != "" {
				t.Errorf("first chunk delta = %+v", d)
			}
			var got strings.Builder
			for i, w := range words {
				ch := chunks[1+i]
				if len(ch.Choices) != 1 || ch.Choices[0].FinishReason != "" {
					t.Fatalf("word chunk %d: %+v", i, ch.Choices)
				}
				content := ch.Choices[0].Delta.Content
				if strings.TrimSpace(content) != w {
					t.Errorf("word chunk %d = %q, want %q", i, content, w)
				}
				got.WriteString(content)
			}
			if got.String() != reply {
				t.Errorf("concatenated = %q, want %q", got.String(), reply)
			}
			fin := chunks[1+len(words)]
			if len(fin.Choices) != 1 || fin.Choices[0].FinishReason != "stop" {
				t.Errorf("finish chunk = %+v", fin.Choices)
			}
			for i, ch := range chunks[:1+len(words)+1] {
				if ch.JSON.Usage.Valid() {
					t.Errorf("chunk %d carries usage", i)
				}
			}
			if includeUsage {
				last := chunks[len(chunks)-1]
				if len(last.Choices) != 0 || !last.JSON.Choices.Valid() {
					t.Errorf("usage chunk choices = %+v", last.Choices)
				}
				wantP := int64(fakeopenai.PromptTokens(msg))
				if u := last.Usage; u.PromptTokens != wantP || u.CompletionTokens != int64(len(words)) || u.TotalTokens != wantP+int64(len(words)) {
					t.Errorf("usage = %+v", u)
				}
			}

			// The stream and the non-stream agree.
			res, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage(msg)))
			if err != nil {
				t.Fatal(err)
			}
			if res.Choices[0].Message.Content != got.String() {
				t.Errorf("non-stream %q vs stream %q", res.Choices[0].Message.Content, got.String())
			}
		})
	}
}

func TestStreamAccumulator(t *testing.T) {
	r := start(t)
	c := sdk(r)
	st := c.Chat.Completions.NewStreaming(ctx(t), params(true, true, openai.UserMessage("hi")),
		option.WithHeader("x-fake-words", "300"))
	var acc openai.ChatCompletionAccumulator
	n := 0
	for st.Next() {
		acc.AddChunk(st.Current())
		n++
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 1+300+1+1 {
		t.Errorf("chunks = %d", n)
	}
	if acc.Choices[0].Message.Content != fakeopenai.WordsReply(300) || acc.Usage.CompletionTokens != 300 {
		t.Errorf("accumulated %d words, usage %+v", fakeopenai.CountWords(acc.Choices[0].Message.Content), acc.Usage)
	}
}

func TestErrorStatus(t *testing.T) {
	r := start(t)
	c := sdk(r)
	for _, tc := range []struct {
		status int
		typ    string
		code   string
	}{
		{429, "requests", "rate_limit_exceeded"},
		{500, "server_error", ""},
		{503, "server_error", ""},
		{401, "invalid_request_error", "invalid_api_key"},
		{400, "invalid_request_error", ""},
	} {
		_, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("hi")),
			option.WithHeader("x-fake-status", itoa(tc.status)))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("status %d: err = %T %v", tc.status, err, err)
		}
		if apiErr.StatusCode != tc.status || apiErr.Type != tc.typ || apiErr.Code != tc.code || apiErr.Message == "" {
			t.Errorf("status %d: got %d type %q code %q message %q", tc.status, apiErr.StatusCode, apiErr.Type, apiErr.Code, apiErr.Message)
		}
		ra := apiErr.Response.Header.Get("Retry-After")
		if (tc.status == 429) != (ra == "1") {
			t.Errorf("status %d: retry-after %q", tc.status, ra)
		}
	}
	// The streaming call surfaces it too.
	st := c.Chat.Completions.NewStreaming(ctx(t), params(true, true, openai.UserMessage("hi")),
		option.WithHeader("x-fake-status", "429"))
	if st.Next() {
		t.Error("stream yielded a chunk")
	}
	var apiErr *openai.Error
	if !errors.As(st.Err(), &apiErr) || apiErr.StatusCode != 429 {
		t.Errorf("stream err = %v", st.Err())
	}
	if n := r.Count(); n != 6 {
		t.Errorf("Count = %d, want 6 (no retries)", n)
	}
}

func TestModels(t *testing.T) {
	r := start(t)
	c := sdk(r)
	page, err := c.Models.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if page.Object != "list" || len(page.Data) != len(fakeopenai.DefaultModels) {
		t.Fatalf("list = %q with %d models", page.Object, len(page.Data))
	}
	for i, m := range page.Data {
		if m.ID != fakeopenai.DefaultModels[i] || m.Object != "model" || m.Created != fakeopenai.ModelCreated || m.OwnedBy != "openai" {
			t.Errorf("model %d = %+v", i, m)
		}
	}
	m, err := c.Models.Get(ctx(t), "gpt-4o")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "gpt-4o" || m.Object != "model" {
		t.Errorf("get = %+v", m)
	}
	_, err = c.Models.Get(ctx(t), "gpt-nope")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("unknown model err = %v", err)
	}

	r.SetModels("only-one")
	page, err = c.Models.List(ctx(t))
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != "only-one" {
		t.Errorf("after SetModels: %v %+v", err, page)
	}
}

func TestNotFoundAndBadRequests(t *testing.T) {
	r := start(t)
	hc := r.Client()
	for _, tc := range []struct {
		method, path, body string
		header             [2]string
		status             int
	}{
		{"GET", "/v1/nope", "", [2]string{}, 404},
		{"POST", "/v1/completions", `{}`, [2]string{}, 404},
		{"POST", "/v1/embeddings", `{}`, [2]string{}, 400},
		{"GET", "/v1/embeddings", "", [2]string{}, 405},
		{"GET", "/v1/responses/a/b/c", "", [2]string{}, 404},
		{"GET", "/", "", [2]string{}, 404},
		{"GET", "/v1/chat/completions", "", [2]string{}, 405},
		{"POST", "/v1/chat/completions", `{`, [2]string{}, 400},
		{"POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, [2]string{}, 400},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[]}`, [2]string{}, 400},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":1}]}`, [2]string{}, 400},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, [2]string{"x-fake-status", "abc"}, 400},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, [2]string{"x-fake-break", "3"}, 400},
		{"POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, [2]string{"x-fake-chunk-delay", "soon"}, 400},
		{"GET", "/v1/models", "", [2]string{"x-fake-status", "503"}, 503},
	} {
		req, _ := http.NewRequest(tc.method, r.URL()+tc.path, strings.NewReader(tc.body))
		if tc.header[0] != "" {
			req.Header.Set(tc.header[0], tc.header[1])
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("%s %s %s: status %d, want %d", tc.method, tc.path, tc.header, res.StatusCode, tc.status)
		}
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s %s: error body %q (%v)", tc.method, tc.path, body, err)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content-type %q", ct)
		}
	}
}

func TestRecording(t *testing.T) {
	r := start(t)
	c := sdk(r, option.WithHeader("X-Custom", "v1"))
	if _, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("record me"))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Models.List(ctx(t)); err != nil {
		t.Fatal(err)
	}
	reqs := r.Requests()
	if len(reqs) != 2 || r.Count() != 2 {
		t.Fatalf("recorded %d, Count %d", len(reqs), r.Count())
	}
	chat := reqs[0]
	if chat.Method != "POST" || chat.Path != "/v1/chat/completions" || chat.Proto != "HTTP/2.0" {
		t.Errorf("chat recorded %s %s %s", chat.Method, chat.Path, chat.Proto)
	}
	if chat.Authorization != "Bearer "+testKey || chat.Header.Get("Authorization") != "Bearer "+testKey {
		t.Errorf("Authorization = %q", chat.Authorization)
	}
	if chat.Header.Get("X-Custom") != "v1" || chat.Time.IsZero() || chat.Host != r.Addr() {
		t.Errorf("header/time/host: %v %v %q", chat.Header, chat.Time, chat.Host)
	}
	var body struct {
		Model    string `json:"model"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(chat.Body, &body); err != nil || body.Model != "gpt-4o-mini" || body.Messages[0].Content != "record me" {
		t.Errorf("body %q: %v", chat.Body, err)
	}
	if int(chat.BodySize) != len(chat.Body) || chat.BodyTruncated {
		t.Errorf("size %d len %d truncated %v", chat.BodySize, len(chat.Body), chat.BodyTruncated)
	}
	if m := reqs[1]; m.Method != "GET" || m.Path != "/v1/models" || len(m.Body) != 0 || m.Authorization != "Bearer "+testKey {
		t.Errorf("models recorded %+v", m)
	}
	// Requests returns a copy.
	reqs[0].Path = "changed"
	if r.Requests()[0].Path != "/v1/chat/completions" {
		t.Error("Requests shares its slice")
	}

	r.Reset()
	if r.Count() != 0 || len(r.Requests()) != 0 {
		t.Error("Reset did not clear")
	}

	r.SetRecording(false)
	if _, err := c.Models.List(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if r.Count() != 1 || len(r.Requests()) != 0 {
		t.Errorf("recording off: Count %d, recorded %d", r.Count(), len(r.Requests()))
	}
	r.SetRecording(true)

	// WaitForRequests.
	r.Reset()
	done := make(chan []fakeopenai.Recorded, 1)
	go func() {
		got, err := r.WaitForRequests(ctx(t), 2)
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	for range 2 {
		if _, err := c.Models.List(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-done; len(got) < 2 {
		t.Errorf("WaitForRequests returned %d", len(got))
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.WaitForRequests(short, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForRequests timeout err = %v", err)
	}
}

func TestRecordingTruncatesLargeBodies(t *testing.T) {
	s := fakeopenai.New()
	big := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a ", 600_000) + `"}]}`
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(big)))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	got := s.Requests()[0]
	if len(got.Body) != fakeopenai.MaxRecordedBody || !got.BodyTruncated || got.BodySize != int64(len(big)) {
		t.Errorf("recorded %d bytes of %d, truncated %v", len(got.Body), got.BodySize, got.BodyTruncated)
	}
}

func TestHold(t *testing.T) {
	r := start(t)
	c := sdk(r)
	st := c.Chat.Completions.NewStreaming(ctx(t), params(true, true, openai.UserMessage("a b c")),
		option.WithHeader("x-fake-hold", "h1"))
	defer st.Close()
	if !st.Next() {
		t.Fatalf("no first chunk: %v", st.Err())
	}
	if st.Current().Choices[0].Delta.Role != "assistant" {
		t.Errorf("first chunk = %+v", st.Current())
	}
	if err := r.WaitHeld(ctx(t), "h1"); err != nil {
		t.Fatal(err)
	}
	next := make(chan bool, 1)
	go func() { next <- st.Next() }()
	select {
	case <-next:
		t.Fatal("got a second chunk before Release")
	case <-time.After(100 * time.Millisecond):
	}
	r.Release("h1")
	if !<-next {
		t.Fatalf("no second chunk after Release: %v", st.Err())
	}
	n := 2
	for st.Next() {
		n++
	}
	if err := st.Err(); err != nil || n != 1+4+1+1 {
		t.Errorf("after release: %d chunks, err %v", n, err)
	}

	// A released id no longer holds; a held non-stream answers on Release.
	if _, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x")), option.WithHeader("x-fake-hold", "h1")); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x")), option.WithHeader("x-fake-hold", "h2"))
		res <- err
	}()
	if err := r.WaitHeld(ctx(t), "h2"); err != nil {
		t.Fatal(err)
	}
	r.Release("h2")
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

func TestHoldEndsWithRequest(t *testing.T) {
	r := start(t)
	c := sdk(r)
	cctx, cancel := context.WithCancel(ctx(t))
	st := c.Chat.Completions.NewStreaming(cctx, params(true, false, openai.UserMessage("a")),
		option.WithHeader("x-fake-hold", "never"))
	if !st.Next() {
		t.Fatal(st.Err())
	}
	cancel()
	for st.Next() {
	}
	if st.Err() == nil {
		t.Error("no error after cancel")
	}
	st.Close()
	// The server is still healthy.
	if _, err := c.Models.List(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestBreak(t *testing.T) {
	r := start(t)
	for _, proto := range []string{"h2", "http/1.1"} {
		t.Run(proto, func(t *testing.T) {
			hc := r.Client()
			if proto == "http/1.1" {
				tr := &http.Transport{TLSClientConfig: r.TLSConfig(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
				defer tr.CloseIdleConnections()
				hc = &http.Client{Transport: tr}
			}
			c := sdk(r, option.WithHTTPClient(hc))
			st := c.Chat.Completions.NewStreaming(ctx(t), params(true, true, openai.UserMessage("a b c d e f")),
				option.WithHeader("x-fake-break", "after-3"))
			n := 0
			for st.Next() {
				n++
			}
			if n != 3 || st.Err() == nil {
				t.Errorf("got %d chunks, err %v; want 3 and an error", n, st.Err())
			}
			st.Close()

			_, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x")), option.WithHeader("x-fake-break", "after-0"))
			if err == nil {
				t.Error("after-0 non-stream: no error")
			}
			_, err = c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x")), option.WithHeader("x-fake-break", "after-20"))
			if err == nil {
				t.Error("after-20 non-stream: no error")
			}
		})
	}
}

func TestChunkDelay(t *testing.T) {
	r := start(t)
	req, _ := http.NewRequest("POST", r.URL()+"/v1/chat/completions",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"a b c"}]}`))
	req.Header.Set("x-fake-chunk-delay", "30ms")
	t0 := time.Now()
	res, err := r.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("content-type %q", ct)
	}
	sc := bufio.NewScanner(res.Body)
	var events []string
	var gaps []time.Duration
	last := t0
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "data: ") {
			t.Fatalf("line %q", line)
		}
		now := time.Now()
		gaps = append(gaps, now.Sub(last))
		last = now
		events = append(events, strings.TrimPrefix(line, "data: "))
	}
	// role, echo:, a, b, c, finish, [DONE]
	if len(events) != 7 || events[6] != "[DONE]" {
		t.Fatalf("events = %q", events)
	}
	for i, g := range gaps[1:] {
		if g < 25*time.Millisecond {
			t.Errorf("gap before event %d = %v", i+1, g)
		}
	}
	for _, e := range events[:6] {
		if strings.Contains(e, `"usage"`) {
			t.Errorf("usage without include_usage: %s", e)
		}
	}
}

func TestCertificate(t *testing.T) {
	r := start(t)
	block, _ := pem.Decode(r.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatal("CertPEM is not a certificate PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.IsCA || !slices.Contains(cert.DNSNames, "api.openai.com") || !slices.Contains(cert.DNSNames, "localhost") ||
		!slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
		t.Errorf("cert IsCA %v DNS %v IPs %v", cert.IsCA, cert.DNSNames, cert.IPAddresses)
	}
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("public key %T, want ECDSA", cert.PublicKey)
	}

	// CAFile round trip, and a connection with SNI api.openai.com verified
	// against only that file, as Envoy does.
	path, err := r.CAFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(pemBytes, r.CertPEM()) {
		t.Fatalf("CAFile: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("AppendCertsFromPEM")
	}
	for _, proto := range []string{"h2", "http/1.1"} {
		conn, err := tls.Dial("tcp", r.Addr(), &tls.Config{RootCAs: pool, ServerName: "api.openai.com", NextProtos: []string{proto}})
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != proto {
			t.Errorf("ALPN %q, want %q", got, proto)
		}
		conn.Close()
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "api.openai.com"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Get(r.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Proto != "HTTP/2.0" {
		t.Errorf("status %d proto %s", res.StatusCode, res.Proto)
	}
	// An untrusting client fails.
	if _, err := http.Get(r.URL() + "/v1/models"); err == nil {
		t.Error("untrusted client connected")
	}
}

func TestPlainHTTPAndConcurrency(t *testing.T) {
	r, err := fakeopenai.New().Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.HasPrefix(r.URL(), "http://") || r.CertPEM() != nil || r.TLSConfig() != nil {
		t.Errorf("plain: %s", r.URL())
	}
	c := sdk(r)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if i%2 == 0 {
				_, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x")))
				if err != nil {
					t.Error(err)
				}
				return
			}
			st := c.Chat.Completions.NewStreaming(ctx(t), params(true, true, openai.UserMessage("x y")))
			for st.Next() {
			}
			if err := st.Err(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if r.Count() != 32 || len(r.Requests()) != 32 {
		t.Errorf("Count %d", r.Count())
	}
}

func TestCloseEndsHeldStreams(t *testing.T) {
	r, err := fakeopenai.NewTLSServer("")
	if err != nil {
		t.Fatal(err)
	}
	c := sdk(r)
	st := c.Chat.Completions.NewStreaming(ctx(t), params(true, false, openai.UserMessage("a")),
		option.WithHeader("x-fake-hold", "forever"))
	if !st.Next() {
		t.Fatal(st.Err())
	}
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
	for st.Next() {
	}
	if st.Err() == nil {
		t.Error("stream ended cleanly after Close")
	}
	<-r.Done()
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

var benchBody = []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there how are you today"}],"max_tokens":64}`)

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkHandlerNonStream measures the handler alone: allocations of the
// hot path with recording off.
func BenchmarkHandlerNonStream(b *testing.B) {
	s := fakeopenai.New()
	s.SetRecording(false)
	req := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	w := &discardWriter{h: http.Header{}}
	rd := bytes.NewReader(benchBody)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(benchBody)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		s.ServeHTTP(w, req)
	}
}

// BenchmarkTLSNonStream is a full round trip over TLS/HTTP/2.
func BenchmarkTLSNonStream(b *testing.B) {
	r := start(b)
	r.SetRecording(false)
	hc := r.Client()
	url := r.URL() + "/v1/chat/completions"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(benchBody))
			req.Header.Set("Content-Type", "application/json")
			// identity: the hot path, as before compression existed.
			req.Header.Set("Accept-Encoding", "identity")
			res, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}
