package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
	"github.com/llm-proxy/llm-proxy/usage"
)

// TestMixedWorkloadChargedAsBilled runs what real clients send through the
// real Envoy — plain and streamed chat with the Python SDK's defaults (gzip)
// and with openai-go, curl --compressed, background responses polled and
// never polled, a batch, embeddings — and compares, per family, what
// llm-proxy charged (its usage events' cost) with what the fake upstream
// billed (its ledger, priced with the same table): equal for every family,
// and the project's usage roll-up equal to the total.
func TestMixedWorkloadChargedAsBilled(t *testing.T) {
	testenv.Python(t)
	s := startStack(t, stackOptions{})
	since := time.Now()
	const key = "sk-mixed-workload-0123456789"
	p := s.createProject("mixed", key)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	ctx := context.Background()
	go4 := s.client(tok.Token)
	raw := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}

	// Chat: the Python SDK (gzip by default), plain and streamed.
	for _, sc := range []string{"chat", "chat_stream"} {
		s.python(t, sc, tok.Token, map[string]any{"model": "gpt-4.1-mini", "message": "python " + sc + " with its defaults"}).mustSucceed(t)
	}
	// Chat: openai-go, plain and streamed.
	if _, err := go4.Chat.Completions.New(ctx, chatParams("openai go plain request")); err != nil {
		t.Fatal(err)
	}
	st := go4.Chat.Completions.NewStreaming(ctx, chatParams("openai go streamed request"), option.WithHeader(fakeopenai.HeaderReasoningTokens, "3"))
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Chat: curl --compressed, plain and streamed, one with cached tokens.
	for _, body := range []string{
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"curl compressed plain"}]}`,
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"curl compressed stream"}]}`,
	} {
		req, _ := http.NewRequest("POST", s.envoyURL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept-Encoding", "deflate, gzip, br, zstd")
		req.Header.Set(fakeopenai.HeaderCachedTokens, "2")
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") == "" {
			t.Fatalf("curl --compressed: %d, content-encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
		}
	}
	// Embeddings, with the Python SDK's default (base64) and openai-go.
	s.python(t, "embeddings", tok.Token, map[string]any{}).mustSucceed(t)
	if _, err := go4.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "text-embedding-3-small", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("embed these four words")},
	}); err != nil {
		t.Fatal(err)
	}
	// Background responses: one polled to its end, one nobody asks about.
	_, polled, _ := s.background(t, tok.Token, "gpt-4o-mini", 25, 200)
	_, _, _ = s.background(t, tok.Token, "gpt-4o", 15, 200)
	for job := polled; job.Status != "completed"; {
		if status, b := s.call(t, tok.Token, "GET", "/v1/responses/"+polled.ID, "", nil, nil, &job); status != 200 {
			t.Fatalf("poll: %d %s", status, b)
		}
	}
	// A batch.
	file := s.uploadBatch(t, tok.Token, []string{batchLine(1, "gpt-4o-mini", "batch line one", 100), batchLine(2, "gpt-4.1-mini", "batch line two please", 100)})
	if status, b := s.call(t, tok.Token, "POST", "/v1/batches", "application/json",
		[]byte(fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, file)), nil, nil); status != 200 {
		t.Fatalf("batch: %d %s", status, b)
	}

	// What OpenAI billed, per family, priced with our table.
	prices := usage.DefaultPrices()
	billed := map[string]int64{}
	var billedTotal int64
	familyOf := func(c fakeopenai.Charge) string {
		if c.Batch {
			return "batch"
		}
		return c.Family
	}
	const wantCharges = 6 + 2 + 2 + 2 // chat, embeddings, background responses, batch lines
	deadline := time.Now().Add(30 * time.Second)
	var ledger []fakeopenai.Charge
	for {
		ledger = s.upstream.Ledger()
		if len(ledger) >= wantCharges || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range ledger {
		u := usage.Usage{PromptTokens: c.PromptTokens, CachedTokens: c.CachedTokens, CompletionTokens: c.CompletionTokens, ReasoningTokens: c.ReasoningTokens}
		var cost int64
		if c.Batch {
			cost, _ = prices.BatchCost(c.Model, u)
		} else {
			cost, _ = prices.Cost(c.Model, u)
		}
		billed[familyOf(c)] += cost
		billedTotal += cost
	}
	if len(ledger) != wantCharges {
		t.Fatalf("the upstream billed %d charges, want %d: %+v", len(ledger), wantCharges, ledger)
	}

	// What llm-proxy charged, per family, from its events; wait until every
	// deferred charge is settled and the events are written.
	charged := map[string]int64{}
	for {
		clear(charged)
		var total int64
		for _, ev := range readEvents(t, s.dataDir+"/events.jsonl") {
			if ev.ProjectId != p.ID || ev.CostMicroUsd == 0 {
				continue
			}
			fam := ""
			switch {
			case strings.HasPrefix(ev.Path, "/v1/batches/"):
				fam = "batch"
			case strings.HasPrefix(ev.Path, "/v1/responses"):
				fam = fakeopenai.FamilyResponses
			case ev.Path == "/v1/embeddings":
				fam = fakeopenai.FamilyEmbeddings
			case ev.Path == "/v1/chat/completions":
				fam = fakeopenai.FamilyChat
			}
			charged[fam] += ev.CostMicroUsd
			total += ev.CostMicroUsd
		}
		if total == billedTotal || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, fam := range []string{fakeopenai.FamilyChat, fakeopenai.FamilyEmbeddings, fakeopenai.FamilyResponses, "batch"} {
		ratio := float64(charged[fam]) / float64(billed[fam])
		t.Logf("%-11s charged %7d µUSD, billed %7d µUSD: %.3f", fam, charged[fam], billed[fam], ratio)
		if billed[fam] == 0 || ratio < 0.99 || ratio > 1.01 {
			t.Errorf("%s: charged %d µUSD for %d billed (%.3f), want 0.99–1.01", fam, charged[fam], billed[fam], ratio)
		}
	}
	// The roll-up agrees with the total to the micro-dollar.
	var u struct {
		Total struct {
			CostUSD float64 `json:"cost_usd"`
		} `json:"total"`
	}
	path := fmt.Sprintf("/manage/projects/%s/usage?from=%s&to=%s", p.ID, since.UTC().Format(time.DateOnly), time.Now().UTC().Format(time.DateOnly))
	for {
		s.mustManage("GET", path, nil, 200, &u)
		if got := int64(u.Total.CostUSD*1e6 + 0.5); got == billedTotal {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("roll-up cost %d µUSD, billed %d", got, billedTotal)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
