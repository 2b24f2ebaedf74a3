package deferred

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
	"github.com/llm-proxy/llm-proxy/upstream"
	"github.com/llm-proxy/llm-proxy/usage"
)

// fakeOpenAI answers GETs from a map of path → body (a missing path is a 404).
type fakeOpenAI struct {
	mu     sync.Mutex
	bodies map[string]string
	keys   []string
}

func (f *fakeOpenAI) Get(_ context.Context, key, path string, _ int64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, key)
	b, ok := f.bodies[path]
	if !ok {
		return nil, &upstream.StatusError{Status: 404, Body: "no such object"}
	}
	return []byte(b), nil
}

func (f *fakeOpenAI) Open(ctx context.Context, key, path string) (io.ReadCloser, error) {
	b, err := f.Get(ctx, key, path, 0)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(string(b))), nil
}

type keys struct{}

func (keys) ProjectKey(_ context.Context, id string) (string, error) { return "sk-" + id, nil }

type settleCall struct {
	ticket       ratelimit.Ticket
	tokens, cost int64
}

type settler struct {
	mu    sync.Mutex
	calls []settleCall
}

func (s *settler) SettleTicket(_ context.Context, t ratelimit.Ticket, tokens, cost int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, settleCall{t, tokens, cost})
	return nil
}

type events struct {
	mu  sync.Mutex
	evs []*llmproxyv1.UsageEvent
}

func (e *events) Emit(ev *llmproxyv1.UsageEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

type rig struct {
	st  *store.Store
	up  *fakeOpenAI
	lim *settler
	ev  *events
	r   *Reconciler
	now time.Time
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx, "up", io.Discard); err != nil {
		t.Fatal(err)
	}
	g := &rig{st: st, up: &fakeOpenAI{bodies: map[string]string{}}, lim: &settler{}, ev: &events{},
		now: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	g.r = New(Options{Store: st, Keys: keys{}, Limiter: g.lim, Upstream: g.up, Prices: usage.DefaultPrices(),
		Events: g.ev, Interval: time.Minute, Now: func() time.Time { return g.now }, Logger: zerolog.Nop()})
	return g
}

func (g *rig) track(t *testing.T, d store.Deferred, reservedTokens int64) {
	t.Helper()
	if d.ReservedMicroUSD > 0 {
		b, err := ratelimit.MarshalTicket(ratelimit.Ticket{ID: "call-" + d.ID, Tokens: reservedTokens, Cost: d.ReservedMicroUSD, Month: "2026-12",
			Limits: []ratelimit.Limit{{Scope: "project:" + d.ProjectID, MonthlyBudget: 1_000_000}}})
		if err != nil {
			t.Fatal(err)
		}
		d.Ticket = b
	}
	if err := g.r.Track(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

func (g *rig) settled(t *testing.T, id string) store.Deferred {
	t.Helper()
	d, err := g.st.GetDeferred(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const completedResponse = `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o-mini",
	"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":40},"output_tokens":50,"output_tokens_details":{"reasoning_tokens":10},"total_tokens":150}}`

// A terminal background response a client saw is settled at once, exactly
// once, at its real cost; the budget moves from the reservation to it.
func TestObserveSettlesResponseOnce(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	g.track(t, store.Deferred{ID: "resp_1", Kind: store.DeferredResponse, ProjectID: "p1", TokenID: "t1", Model: "gpt-4o-mini", ReservedMicroUSD: 900}, 1100)
	job, ok := usage.ParseJob([]byte(completedResponse))
	if !ok {
		t.Fatal("fixture is not a job")
	}
	g.r.Observe(ctx, "other-project", job) // not its own: ignored
	if d := g.settled(t, "resp_1"); d.SettledAt != nil {
		t.Fatal("another project's answer settled the charge")
	}
	g.r.Observe(ctx, "p1", job)
	g.r.Observe(ctx, "p1", job) // seen twice: settled once
	// gpt-4o-mini: 60 input at $0.15/M, 40 cached at $0.075/M, 50 output at
	// $0.60/M = 9 + 3 + 30 = 42 µUSD.
	d := g.settled(t, "resp_1")
	if d.SettledAt == nil || d.CostMicroUSD != 42 {
		t.Fatalf("settled %v at %d µUSD, want 42", d.SettledAt, d.CostMicroUSD)
	}
	if len(g.lim.calls) != 1 || g.lim.calls[0].tokens != 150 || g.lim.calls[0].cost != 42 || g.lim.calls[0].ticket.Cost != 900 {
		t.Fatalf("budget settled %+v, want once with 150 tokens and 42 µUSD for a 900 µUSD reservation", g.lim.calls)
	}
	if len(g.ev.evs) != 1 || g.ev.evs[0].CostMicroUsd != 42 || g.ev.evs[0].Outcome != "settled" || g.ev.evs[0].Usage.CachedTokens != 40 || g.ev.evs[0].Usage.ReasoningTokens != 10 {
		t.Fatalf("events %v", g.ev.evs)
	}
	usageRows, err := g.st.ProjectUsage(ctx, "p1", "2026-12-01", "2026-12-31")
	if err != nil || len(usageRows) != 1 || usageRows[0].CostMicroUSD != 42 || usageRows[0].PromptTokens != 100 || usageRows[0].CompletionTokens != 50 {
		t.Fatalf("roll-up %+v, %v", usageRows, err)
	}
}

// The poll loop: work still running is asked about again one interval
// later; work OpenAI no longer knows keeps its reservation as its cost; a
// finished batch is charged from its output file at the batch price, per
// model, and its budget settled without counting batch tokens per minute.
func TestCheck(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	g.track(t, store.Deferred{ID: "resp_running", Kind: store.DeferredResponse, ProjectID: "p1", TokenID: "t1", Model: "gpt-4o", ReservedMicroUSD: 500}, 100)
	g.track(t, store.Deferred{ID: "resp_gone", Kind: store.DeferredResponse, ProjectID: "p1", TokenID: "t1", Model: "gpt-4o", ReservedMicroUSD: 700}, 100)
	g.track(t, store.Deferred{ID: "batch_1", Kind: store.DeferredBatch, ProjectID: "p2", TokenID: "t2", ReservedMicroUSD: 5000}, 0)
	g.up.bodies["/v1/responses/resp_running"] = `{"id":"resp_running","object":"response","status":"in_progress"}`
	g.up.bodies["/v1/batches/batch_1"] = `{"id":"batch_1","object":"batch","status":"completed","output_file_id":"file-out"}`
	g.up.bodies["/v1/files/file-out/content"] = strings.Join([]string{
		`{"id":"r1","custom_id":"a","response":{"status_code":200,"body":{"model":"gpt-4o","usage":{"prompt_tokens":1000,"completion_tokens":200,"total_tokens":1200}}},"error":null}`,
		`{"id":"r2","custom_id":"b","response":{"status_code":200,"body":{"model":"gpt-4o-mini","usage":{"prompt_tokens":2000,"completion_tokens":1000,"total_tokens":3000}}},"error":null}`,
		`{"id":"r3","custom_id":"c","response":null,"error":{"code":"server_error","message":"x"}}`,
	}, "\n")
	g.now = g.now.Add(time.Minute)
	due, err := g.st.DueDeferred(ctx, g.now, 10)
	if err != nil || len(due) != 3 {
		t.Fatalf("due %d, %v", len(due), err)
	}
	for _, d := range due {
		g.r.check(ctx, d)
	}
	if d := g.settled(t, "resp_running"); d.SettledAt != nil || !d.NextCheckAt.Equal(g.now.Add(time.Minute)) || d.Checks != 1 {
		t.Errorf("running response: settled %v, next check %v (checks %d), want unsettled and asked again in a minute", d.SettledAt, d.NextCheckAt, d.Checks)
	}
	if d := g.settled(t, "resp_gone"); d.SettledAt == nil || d.CostMicroUSD != 700 {
		t.Errorf("deleted response: %+v, want settled at its 700 µUSD reservation", d)
	}
	// Batch price, half the standard: gpt-4o 1000 × $2.50/M + 200 × $10/M =
	// 4500 → 2250 µUSD; gpt-4o-mini 2000 × $0.15/M + 1000 × $0.60/M = 900 →
	// 450 µUSD. The failed line costs nothing.
	if d := g.settled(t, "batch_1"); d.SettledAt == nil || d.CostMicroUSD != 2700 {
		t.Errorf("batch: settled %v at %d µUSD, want 2700", d.SettledAt, d.CostMicroUSD)
	}
	var batch *settleCall
	for i, c := range g.lim.calls {
		if c.ticket.ID == "call-batch_1" {
			batch = &g.lim.calls[i]
		}
	}
	if batch == nil || batch.cost != 2700 || batch.tokens != 0 {
		t.Errorf("batch budget settled %+v, want 2700 µUSD and its reserved 0 tokens", batch)
	}
	for _, k := range g.up.keys {
		if k != "sk-p1" && k != "sk-p2" {
			t.Errorf("asked OpenAI with %q, want the project's key", k)
		}
	}
}

// Run polls due charges until its context ends, and returns then.
func TestRunSettlesWhatNobodyAsksAbout(t *testing.T) {
	g := newRig(t)
	g.r.o.Interval = 10 * time.Millisecond
	g.r.o.Now = time.Now
	g.track(t, store.Deferred{ID: "resp_1", Kind: store.DeferredResponse, ProjectID: "p1", TokenID: "t1", Model: "gpt-4o-mini", ReservedMicroUSD: 900}, 1100)
	g.up.bodies["/v1/responses/resp_1"] = completedResponse
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.r.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for g.settled(t, "resp_1").SettledAt == nil {
		if time.Now().After(deadline) {
			t.Fatal("the poll loop did not settle the charge")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := g.settled(t, "resp_1"); d.CostMicroUSD != 42 {
		t.Fatalf("cost %d, want 42", d.CostMicroUSD)
	}
}

// A batch's reservation bounds what its lines may cost: each prompt as
// tiktoken counts it plus its largest output (none for embeddings), at the
// batch price.
func TestEstimateBatch(t *testing.T) {
	tok := usage.NewTokenizer()
	prices := usage.DefaultPrices()
	chat := `{"model":"gpt-4o","max_tokens":100,"n":2,"messages":[{"role":"user","content":"hello there"}]}`
	emb := `{"model":"text-embedding-3-small","input":"four words of text"}`
	file := `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":` + chat + "}\n\n" +
		`{"custom_id":"b","method":"POST","url":"/v1/embeddings","body":` + emb + "}\n"
	cost, lines, err := EstimateBatch(strings.NewReader(file), 1<<20, tok, prices, 1024, nil)
	if err != nil || lines != 2 {
		t.Fatalf("%d lines, %v", lines, err)
	}
	c1, _ := prices.BatchCost("gpt-4o", usage.Usage{PromptTokens: tok.CountPrompt("gpt-4o", []byte(chat)), CompletionTokens: 200})
	c2, _ := prices.BatchCost("text-embedding-3-small", usage.Usage{PromptTokens: tok.CountPrompt("text-embedding-3-small", []byte(emb))})
	if cost != c1+c2 || c1 == 0 {
		t.Fatalf("estimate %d µUSD, want %d + %d", cost, c1, c2)
	}
	if _, _, err := EstimateBatch(strings.NewReader("not json\n"), 1<<20, tok, prices, 1024, nil); err == nil {
		t.Error("a line that is not a request was accepted")
	}
	if _, _, err := EstimateBatch(strings.NewReader(`{"url":"/v1/embeddings","body":`+emb+"}\n"), 10, tok, prices, 1024, nil); err == nil {
		t.Error("a line over maxLine was accepted")
	}
	// check sees every line, numbered from 1, and its error is returned as
	// it is.
	refused := errors.New("refused")
	var seen []string
	_, lines, err = EstimateBatch(strings.NewReader(file), 1<<20, tok, prices, 1024, func(line int, url string, req usage.Request) error {
		seen = append(seen, fmt.Sprintf("%d %s %s", line, url, req.Model))
		if line == 2 {
			return refused
		}
		return nil
	})
	if err != refused || lines != 2 || !slices.Equal(seen, []string{"1 /v1/chat/completions gpt-4o", "2 /v1/embeddings text-embedding-3-small"}) {
		t.Errorf("check saw %q; %d lines, %v", seen, lines, err)
	}
}
