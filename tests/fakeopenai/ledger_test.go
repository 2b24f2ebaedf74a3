package fakeopenai_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

func TestUsageKnobs(t *testing.T) {
	const msg = "one two three four five" // reply "echo: one two three four five": 6 words
	prompt := int64(fakeopenai.PromptTokens(msg))
	for _, tc := range []struct {
		name           string
		n              int64
		maxTokens      int64 // 0: none
		cached, reason string
		wantCached     int64
		wantReasoning  int64
		wantCompletion int64
		wantWords      int // visible words per choice
		wantFinish     string
	}{
		{name: "none", n: 1, wantCompletion: 6, wantWords: 6, wantFinish: "stop"},
		{name: "cached", n: 1, cached: "5", wantCached: 5, wantCompletion: 6, wantWords: 6, wantFinish: "stop"},
		{name: "cached above prompt", n: 1, cached: "1000", wantCached: prompt, wantCompletion: 6, wantWords: 6, wantFinish: "stop"},
		{name: "reasoning", n: 1, reason: "100", wantReasoning: 100, wantCompletion: 106, wantWords: 6, wantFinish: "stop"},
		{name: "n=3", n: 3, wantCompletion: 18, wantWords: 6, wantFinish: "stop"},
		{name: "n=2 reasoning", n: 2, reason: "7", wantReasoning: 7, wantCompletion: 19, wantWords: 6, wantFinish: "stop"},
		{name: "limit with reasoning", n: 1, maxTokens: 10, reason: "7", wantReasoning: 7, wantCompletion: 10, wantWords: 3, wantFinish: "length"},
		{name: "reasoning above limit", n: 1, maxTokens: 4, reason: "7", wantReasoning: 4, wantCompletion: 4, wantWords: 0, wantFinish: "length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t)
			var opts []option.RequestOption
			if tc.cached != "" {
				opts = append(opts, option.WithHeader("x-fake-cached-tokens", tc.cached))
			}
			if tc.reason != "" {
				opts = append(opts, option.WithHeader("x-fake-reasoning-tokens", tc.reason))
			}
			c := sdk(r, opts...)
			p := params(false, false, openai.UserMessage(msg))
			p.N = openai.Int(tc.n)
			if tc.maxTokens > 0 {
				p.MaxCompletionTokens = openai.Int(tc.maxTokens)
			}
			check := func(u openai.CompletionUsage, what string) {
				t.Helper()
				if u.PromptTokens != prompt || u.CompletionTokens != tc.wantCompletion || u.TotalTokens != prompt+tc.wantCompletion ||
					u.PromptTokensDetails.CachedTokens != tc.wantCached || u.CompletionTokensDetails.ReasoningTokens != tc.wantReasoning {
					t.Errorf("%s usage = %+v", what, u)
				}
			}

			res, err := c.Chat.Completions.New(ctx(t), p)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(res.Choices)) != tc.n {
				t.Fatalf("%d choices", len(res.Choices))
			}
			for i, ch := range res.Choices {
				if ch.Index != int64(i) || fakeopenai.CountWords(ch.Message.Content) != tc.wantWords || ch.FinishReason != tc.wantFinish {
					t.Errorf("choice %d: %+v", i, ch)
				}
			}
			check(res.Usage, "non-stream")

			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			st := c.Chat.Completions.NewStreaming(ctx(t), p)
			var acc openai.ChatCompletionAccumulator
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				t.Fatal(err)
			}
			if int64(len(acc.Choices)) != tc.n {
				t.Fatalf("stream: %d choices", len(acc.Choices))
			}
			for i, ch := range acc.Choices {
				if ch.Message.Content != res.Choices[i].Message.Content || ch.FinishReason != tc.wantFinish {
					t.Errorf("stream choice %d: %q %q", i, ch.Message.Content, ch.FinishReason)
				}
			}
			check(acc.Usage, "stream")

			led, err := r.WaitLedger(ctx(t), 2)
			if err != nil {
				t.Fatal(err)
			}
			want := fakeopenai.Charge{
				Key: testKey, Family: fakeopenai.FamilyChat, Model: "gpt-4o-mini",
				PromptTokens: prompt, CachedTokens: tc.wantCached, CompletionTokens: tc.wantCompletion, ReasoningTokens: tc.wantReasoning,
			}
			wantStream := want
			wantStream.Stream = true
			if !slices.Equal(led, []fakeopenai.Charge{want, wantStream}) {
				t.Errorf("ledger %+v\nwant   %+v", led, []fakeopenai.Charge{want, wantStream})
			}
		})
	}
}

func TestMalformedKnobs(t *testing.T) {
	r := start(t)
	body := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	for _, kv := range [][2]string{
		{"x-fake-cached-tokens", "-1"},
		{"x-fake-cached-tokens", "many"},
		{"x-fake-reasoning-tokens", "1.5"},
		{"x-fake-fail", "id"},
		{"x-fake-fail", "id:429"},
		{"x-fake-fail", "id:200:1"},
		{"x-fake-fail", ":429:1"},
		{"x-fake-fail", "id:429:x"},
	} {
		if status, _, b := do(t, r, "POST", "/v1/chat/completions", body, kv[0], kv[1]); status != 400 {
			t.Errorf("%s: %s: status %d %s", kv[0], kv[1], status, b)
		}
	}
	if status, _, b := do(t, r, "POST", "/v1/chat/completions", `{"model":"m","n":0,"messages":[{"role":"user","content":"x"}]}`); status != 400 {
		t.Errorf("n=0: %d %s", status, b)
	}
	if n := len(r.Ledger()); n != 0 {
		t.Errorf("ledger has %d charges after errors", n)
	}
}

func TestFailKnob(t *testing.T) {
	r := start(t)
	body := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	for i, want := range []int{429, 429, 200, 200} {
		status, h, b := do(t, r, "POST", "/v1/chat/completions", body, "x-fake-fail", "job:1:429:2")
		if status != want {
			t.Fatalf("request %d: status %d, want %d: %s", i+1, status, want, b)
		}
		if want == 429 && (h.Get("Retry-After") != "1" || h.Get("Retry-After-Ms") != "1000") {
			t.Errorf("request %d: retry headers %v", i+1, h)
		}
	}
	// Another id has its own count; a 500 carries no retry headers.
	if status, h, _ := do(t, r, "POST", "/v1/chat/completions", body, "x-fake-fail", "other:503:1"); status != 503 || h.Get("Retry-After") != "" {
		t.Errorf("other id: %d %v", status, h)
	}
	if led := r.Ledger(); len(led) != 2 {
		t.Errorf("ledger %+v, want the 2 answered requests", led)
	}

	// The SDK retries through it (one retry, after retry-after-ms).
	r.ResetLedger()
	r.Reset()
	c := sdk(r, option.WithMaxRetries(1), option.WithHeader("x-fake-fail", "sdk:429:1"))
	res, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("retry me")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Choices[0].Message.Content != "echo: retry me" || r.Count() != 2 || len(r.Ledger()) != 1 {
		t.Errorf("content %q, %d requests, %d charges", res.Choices[0].Message.Content, r.Count(), len(r.Ledger()))
	}
}

func TestLedgerStreamBreakAndDisconnect(t *testing.T) {
	r := start(t)
	c := sdk(r, option.WithHeader("x-fake-reasoning-tokens", "5"), option.WithHeader("x-fake-cached-tokens", "2"))
	msg := "a b c d e f" // reply: 7 words
	prompt := int64(fakeopenai.PromptTokens(msg))

	// after-3: the role chunk and two words are written.
	st := c.Chat.Completions.NewStreaming(ctx(t), params(true, true, openai.UserMessage(msg)), option.WithHeader("x-fake-break", "after-3"))
	for st.Next() {
	}
	if st.Err() == nil {
		t.Fatal("no error after the break")
	}
	st.Close()
	led, err := r.WaitLedger(ctx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := fakeopenai.Charge{Key: testKey, Family: fakeopenai.FamilyChat, Model: "gpt-4o-mini", Stream: true,
		PromptTokens: prompt, CachedTokens: 2, CompletionTokens: 2 + 5, ReasoningTokens: 5}
	if led[0] != want {
		t.Errorf("after-3 charge %+v\nwant %+v", led[0], want)
	}

	// A client that leaves while the stream is held: nothing but the role
	// chunk was written.
	cctx, cancel := context.WithCancel(ctx(t))
	st = c.Chat.Completions.NewStreaming(cctx, params(true, true, openai.UserMessage(msg)), option.WithHeader("x-fake-hold", "leave"))
	if !st.Next() {
		t.Fatal(st.Err())
	}
	if err := r.WaitHeld(ctx(t), "leave"); err != nil {
		t.Fatal(err)
	}
	cancel()
	st.Close()
	led, err = r.WaitLedger(ctx(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	want.CompletionTokens = 5
	if led[1] != want {
		t.Errorf("disconnect charge %+v\nwant %+v", led[1], want)
	}

	// A non-stream cut by x-fake-break was generated: billed in full.
	if _, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage(msg)), option.WithHeader("x-fake-break", "after-10")); err == nil {
		t.Fatal("no error after the break")
	}
	led, err = r.WaitLedger(ctx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	want.Stream, want.CompletionTokens = false, 7+5
	if led[2] != want {
		t.Errorf("non-stream break charge %+v\nwant %+v", led[2], want)
	}
}

func TestLedgerRules(t *testing.T) {
	r := start(t)
	c := sdk(r)
	// Injected statuses and errors are never billed.
	if _, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x")), option.WithHeader("x-fake-status", "500")); err == nil {
		t.Fatal("no error for x-fake-status")
	}
	if status, _, _ := do(t, r, "POST", "/v1/chat/completions", `{"model":"m","messages":[]}`); status != 400 {
		t.Fatalf("status %d", status)
	}
	if n := len(r.Ledger()); n != 0 {
		t.Fatalf("%d charges for errors", n)
	}

	// The key is the bearer token the fake saw.
	other := sdk(r, option.WithAPIKey("sk-other"))
	if _, err := other.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x"))); err != nil {
		t.Fatal(err)
	}
	if led := r.Ledger(); len(led) != 1 || led[0].Key != "sk-other" {
		t.Errorf("ledger %+v", led)
	}

	// Reset keeps the ledger, ResetLedger clears it; Ledger returns a copy.
	r.Reset()
	led := r.Ledger()
	if len(led) != 1 {
		t.Fatal("Reset cleared the ledger")
	}
	led[0].Key = "changed"
	if r.Ledger()[0].Key != "sk-other" {
		t.Error("Ledger shares its slice")
	}
	r.ResetLedger()
	if len(r.Ledger()) != 0 {
		t.Error("ResetLedger did not clear")
	}

	// With recording off nothing is charged.
	r.SetRecording(false)
	if _, err := c.Chat.Completions.New(ctx(t), params(false, false, openai.UserMessage("x"))); err != nil {
		t.Fatal(err)
	}
	if len(r.Ledger()) != 0 {
		t.Error("charged while recording is off")
	}
	r.SetRecording(true)

	// WaitLedger honours its context.
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := r.WaitLedger(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitLedger err = %v", err)
	}
	// And wakes on a charge.
	done := make(chan []fakeopenai.Charge, 1)
	go func() {
		led, _ := r.WaitLedger(ctx(t), 1)
		done <- led
	}()
	if status, _, _ := do(t, r, "POST", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`); status != http.StatusOK {
		t.Fatal(status)
	}
	if led := <-done; len(led) != 1 || led[0].Model != "m" {
		t.Errorf("WaitLedger returned %+v", led)
	}
}
