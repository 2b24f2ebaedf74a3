package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
	"github.com/llm-proxy/llm-proxy/usage"
)

// The amount tests check that what the gateway charges is right, not only
// that it charges: every expected figure is computed here by hand from the
// fake's documented counting rules (words, +3 per message, n × reply,
// reasoning inside completion) and the per-million rates of the embedded
// price table, never read back from the gateway. Each test says which broken
// behaviour it catches.

// amountsUsage is a project's usage roll-up summed over its rows (days ×
// models × price versions), with the cached and reasoning tokens the rows
// carry.
type amountsUsage struct {
	Requests, Prompt, Completion, Cached, Reasoning, CostMicroUSD int64
}

// charged is what the roll-up charged, tokens and cost, without the request count.
func (u amountsUsage) charged() [5]int64 {
	return [5]int64{u.Prompt, u.Completion, u.Cached, u.Reasoning, u.CostMicroUSD}
}

// readRollup reads the project's usage API for the UTC days since..today.
func (s *stack) readRollup(t *testing.T, projectID string, since time.Time) amountsUsage {
	t.Helper()
	var u struct {
		Data []struct {
			Model            string      `json:"model"`
			Requests         int64       `json:"requests"`
			PromptTokens     int64       `json:"prompt_tokens"`
			CompletionTokens int64       `json:"completion_tokens"`
			CachedTokens     int64       `json:"cached_tokens"`
			ReasoningTokens  int64       `json:"reasoning_tokens"`
			CostUSD          json.Number `json:"cost_usd"`
		} `json:"data"`
	}
	path := fmt.Sprintf("/manage/projects/%s/usage?from=%s&to=%s", projectID,
		since.UTC().Format(time.DateOnly), time.Now().UTC().Format(time.DateOnly))
	s.mustManage("GET", path, nil, 200, &u)
	var got amountsUsage
	for _, row := range u.Data {
		micro, err := microUSD(row.CostUSD)
		if err != nil {
			t.Fatalf("usage API: cost_usd: %v", err)
		}
		got.Requests += row.Requests
		got.Prompt += row.PromptTokens
		got.Completion += row.CompletionTokens
		got.Cached += row.CachedTokens
		got.Reasoning += row.ReasoningTokens
		got.CostMicroUSD += micro
	}
	return got
}

// waitRollup polls the project's roll-up until ok holds and returns it; it
// fails t at the deadline with what the API last showed.
func (s *stack) waitRollup(t *testing.T, projectID string, since time.Time, want string, ok func(amountsUsage) bool) amountsUsage {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := s.readRollup(t, projectID, since)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage roll-up of project %s: got %+v, want %s", projectID, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readEventsSoFar reads the complete lines of the stack's events file; a
// line still being written is left for the next read.
func (s *stack) readEventsSoFar(t *testing.T) []*llmproxyv1.UsageEvent {
	t.Helper()
	b, err := os.ReadFile(s.dataDir + "/events.jsonl")
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var out []*llmproxyv1.UsageEvent
	for line := range bytes.Lines(b) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		ev, err := eventsink.UnmarshalEvent(line)
		if err != nil {
			t.Fatalf("event line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvents polls the events file until ok holds for the events of
// projectID and returns them.
func (s *stack) waitEvents(t *testing.T, projectID, want string, ok func([]*llmproxyv1.UsageEvent) bool) []*llmproxyv1.UsageEvent {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var evs []*llmproxyv1.UsageEvent
		for _, ev := range s.readEventsSoFar(t) {
			if ev.GetProjectId() == projectID {
				evs = append(evs, ev)
			}
		}
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("events of project %s: got %d %v, want %s", projectID, len(evs), evs, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitEvent waits for the one event of the request requestID.
func (s *stack) waitEvent(t *testing.T, projectID, requestID string) *llmproxyv1.UsageEvent {
	t.Helper()
	if requestID == "" {
		t.Fatal("no x-request-id to find the event by")
	}
	evs := s.waitEvents(t, projectID, "the event of request "+requestID, func(evs []*llmproxyv1.UsageEvent) bool {
		return slices.ContainsFunc(evs, func(ev *llmproxyv1.UsageEvent) bool { return ev.GetRequestId() == requestID })
	})
	var found []*llmproxyv1.UsageEvent
	for _, ev := range evs {
		if ev.GetRequestId() == requestID {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		t.Fatalf("request %s has %d events, want 1: %v", requestID, len(found), found)
	}
	return found[0]
}

// picoPerToken is a price table rate, USD per million tokens, in 1e-12 USD
// per token (exact: the table keeps rates to 1e-6 USD per million).
func picoPerToken(perM float64) int64 { return int64(math.Round(perM * 1e6)) }

// ceilMicro converts 1e-12 USD to micro-USD, rounding up as the gateway
// documents.
func ceilMicro(pico int64) int64 { return (pico + 999_999) / 1_000_000 }

// handPrice is what OpenAI's usage costs on model by the embedded table's
// rates: the uncached prompt at the input rate, the cached prompt at the
// cached rate, the completion (reasoning included) at the output rate,
// rounded up to a micro-USD once.
func handPrice(t *testing.T, model string, prompt, cached, completion int64) int64 {
	t.Helper()
	pr, ok := usage.DefaultPrices().Lookup(model)
	if !ok {
		t.Fatalf("the price table does not know %s", model)
	}
	return ceilMicro((prompt-cached)*picoPerToken(pr.InputPerMTok) +
		cached*picoPerToken(pr.CachedInputPerMTok) +
		completion*picoPerToken(pr.OutputPerMTok))
}

// handEstimate is the budget reservation of a request on model: the prompt
// estimate at the full input rate plus the most it may produce at the output
// rate (README: "the prompt … plus max_tokens …, reserved"). The models used
// here have no image rate above their input rate.
func handEstimate(t *testing.T, model string, promptEstimate, maxOutput int64) int64 {
	t.Helper()
	pr, ok := usage.DefaultPrices().Lookup(model)
	if !ok {
		t.Fatalf("the price table does not know %s", model)
	}
	if pr.ImageInputPerMTok > pr.InputPerMTok {
		t.Fatalf("%s has an image input rate above its input rate: pick another model", model)
	}
	return ceilMicro(promptEstimate*picoPerToken(pr.InputPerMTok) + maxOutput*picoPerToken(pr.OutputPerMTok))
}

// ledgerPrice prices what the fake billed with our table, charge by charge.
func ledgerPrice(t *testing.T, charges []fakeopenai.Charge) int64 {
	t.Helper()
	var sum int64
	for _, c := range charges {
		if c.Batch {
			t.Fatalf("unexpected batch charge %+v", c)
		}
		sum += handPrice(t, c.Model, c.PromptTokens, c.CachedTokens, c.CompletionTokens)
	}
	return sum
}

// ledgerOf is the part of the fake's ledger billed to key (a project's key).
func ledgerOf(charges []fakeopenai.Charge, key string) []fakeopenai.Charge {
	var out []fakeopenai.Charge
	for _, c := range charges {
		if c.Key == key {
			out = append(out, c)
		}
	}
	return out
}

// ledgerRollup is the roll-up that the charges must produce: one request each.
func ledgerRollup(t *testing.T, charges []fakeopenai.Charge) amountsUsage {
	t.Helper()
	var u amountsUsage
	for _, c := range charges {
		u.Requests++
		u.Prompt += c.PromptTokens
		u.Completion += c.CompletionTokens
		u.Cached += c.CachedTokens
		u.Reasoning += c.ReasoningTokens
	}
	u.CostMicroUSD = ledgerPrice(t, charges)
	return u
}

// do is one raw request through Envoy, safe to call from any goroutine: it
// returns its error instead of failing a test.
func (s *stack) do(method, path, tok, body string, hdr map[string]string) (reply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.envoyURL+path, rd)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{resp.StatusCode, resp.Header, b}, nil
}

// mustDo is [stack.do] on the test goroutine, expecting status want.
func (s *stack) mustDo(t *testing.T, path, tok, body string, hdr map[string]string, want int) reply {
	t.Helper()
	r, err := s.do("POST", path, tok, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != want {
		t.Fatalf("POST %s: status %d, want %d: %s", path, r.status, want, r.body)
	}
	return r
}

// noStore keeps the response cache out of a request.
var noStore = map[string]string{"Cache-Control": "no-store"}

// withHeaders is noStore plus more headers.
func withHeaders(kv ...string) map[string]string {
	h := map[string]string{"Cache-Control": "no-store"}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// chatBody is a one-message chat request body.
func chatBody(t *testing.T, model, msg string, extra map[string]any) string {
	t.Helper()
	m := map[string]any{"model": model, "messages": []map[string]any{{"role": "user", "content": msg}}}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// responseUsage is the usage object of a non-streamed chat completion.
func responseUsage(t *testing.T, r reply) [4]int64 {
	t.Helper()
	var cc struct {
		Usage struct {
			PromptTokens        int64 `json:"prompt_tokens"`
			CompletionTokens    int64 `json:"completion_tokens"`
			PromptTokensDetails struct {
				CachedTokens int64 `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
			CompletionTokensDetails struct {
				ReasoningTokens int64 `json:"reasoning_tokens"`
			} `json:"completion_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(r.body, &cc); err != nil {
		t.Fatalf("chat completion %s: %v", r.body, err)
	}
	u := cc.Usage
	return [4]int64{u.PromptTokens, u.CompletionTokens, u.PromptTokensDetails.CachedTokens, u.CompletionTokensDetails.ReasoningTokens}
}

func newTokenizer(t *testing.T) *usage.Tokenizer {
	t.Helper()
	tk := usage.NewTokenizer()
	return tk
}

// holdID is a hold id of its own for this test.
func holdID(t *testing.T, name string) string {
	return fmt.Sprintf("%s-%s-%d", t.Name(), name, time.Now().UnixNano())
}

// eventUsage is an event's token counts: prompt, cached, completion,
// reasoning, total.
func eventUsage(ev *llmproxyv1.UsageEvent) [5]int64 {
	u := ev.GetUsage()
	return [5]int64{u.GetPromptTokens(), u.GetCachedTokens(), u.GetCompletionTokens(), u.GetReasoningTokens(), u.GetTotalTokens()}
}

// TestAmountsPerField: a chat on a reasoning model with a prompt-cache hit
// and reasoning tokens is charged field by field exactly as the upstream
// reported it, with the cached part of the prompt at the cached rate.
//
// Catches: a settled cost doubled or priced at another rate (the event's
// and the roll-up's cost are exact); cached tokens charged at the full input
// rate (2126 instead of 2036 micro-USD); cached and reasoning tokens swapped
// anywhere between the upstream's usage and the event or the roll-up (400
// and 700 are told apart, and swapped they would also price differently);
// reasoning counted on top of the completion instead of inside it.
func TestAmountsPerField(t *testing.T) {
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("amounts-fields", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})

	// gpt-5-mini: input $0.25, cached input $0.025, output $2.00 per million.
	const model = "gpt-5-mini"
	msg := strings.TrimSpace(strings.Repeat("cache ", 500)) // 500 words
	const cached, reasoning, words = 400, 700, 300
	// The fake: the words of the one message + 3; the visible words plus
	// the reasoning, which OpenAI counts inside the completion.
	const prompt, completion = 500 + 3, words + reasoning
	// 103 uncached × 0.25 + 400 cached × 0.025 + 1000 × 2.00 micro-USD =
	// 2035.75, rounded up to 2036 (2126 with the cached ones at 0.25).
	const wantCost = (103*250_000 + 400*25_000 + 1000*2_000_000 + 999_999) / 1_000_000
	if got := handPrice(t, model, prompt, cached, completion); got != wantCost {
		t.Fatalf("the price table changed: %s costs %d micro-USD for this usage, the test expects %d", model, got, wantCost)
	}

	r := s.mustDo(t, "/v1/chat/completions", tok.Token, chatBody(t, model, msg, nil), withHeaders(
		"x-fake-cached-tokens", fmt.Sprint(cached),
		"x-fake-reasoning-tokens", fmt.Sprint(reasoning),
		"x-fake-words", fmt.Sprint(words)), 200)
	if got, want := responseUsage(t, r), [4]int64{prompt, completion, cached, reasoning}; got != want {
		t.Fatalf("the client saw usage %v, want %v (prompt, completion, cached, reasoning)", got, want)
	}
	s.checkLedger(t, fakeopenai.Charge{Key: realKey, Family: fakeopenai.FamilyChat, Model: model,
		PromptTokens: prompt, CachedTokens: cached, CompletionTokens: completion, ReasoningTokens: reasoning})

	ev := s.waitEvent(t, p.ID, r.header.Get("X-Request-Id"))
	if got, want := eventUsage(ev), [5]int64{prompt, cached, completion, reasoning, prompt + completion}; got != want {
		t.Errorf("event usage (prompt, cached, completion, reasoning, total) = %v, want %v", got, want)
	}
	if ev.GetCostMicroUsd() != wantCost || ev.GetUsageSource() != "provider" || ev.GetModel() != model || ev.GetStatus() != 200 {
		t.Errorf("event: cost %d micro-USD, source %q, model %q, status %d; want %d, provider, %s, 200",
			ev.GetCostMicroUsd(), ev.GetUsageSource(), ev.GetModel(), ev.GetStatus(), wantCost, model)
	}

	want := amountsUsage{Requests: 1, Prompt: prompt, Completion: completion, Cached: cached, Reasoning: reasoning, CostMicroUSD: wantCost}
	s.waitRollup(t, p.ID, since, fmt.Sprintf("%+v", want), func(u amountsUsage) bool { return u == want })
}

// TestAmountsReservationCountsN: a request asking for n choices reserves n
// times its output cap (prompt estimate + n × max_tokens) against tokens per
// minute while it runs, and settles to the upstream's real usage, which
// counts the reply n times.
//
// Catches: n ignored in the reservation (the second request's remaining
// tokens would be 200 higher); no token reservation at the body; a
// reservation not settled, or settled to something other than the real
// usage (the third request's remaining tokens); the roll-up charging other
// amounts.
func TestAmountsReservationCountsN(t *testing.T) {
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("amounts-n", realKey)
	const limit = 2000
	tok := s.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"tokens_per_minute": limit}})
	tk := newTokenizer(t)
	const model = "gpt-4.1-mini"
	const path = "/v1/chat/completions"

	msgA := "three choices please for the reservation test" // 7 words
	bodyA := chatBody(t, model, msgA, map[string]any{"n": 3, "max_tokens": 100})
	reservedA := tk.CountPrompt(model, []byte(bodyA)) + 3*100
	// The fake: 7 words + 3 of prompt; the 8-word echo once per choice.
	actualPromptA := int64(fakeopenai.PromptTokens(msgA))
	actualCompletionA := 3 * int64(fakeopenai.CountWords(fakeopenai.EchoReply(msgA)))
	msgB := "small one meanwhile"
	bodyB := chatBody(t, model, msgB, map[string]any{"max_tokens": 10})
	reservedB := tk.CountPrompt(model, []byte(bodyB)) + 10
	actualB := int64(fakeopenai.PromptTokens(msgB) + fakeopenai.CountWords(fakeopenai.EchoReply(msgB)))

	// A is held at the upstream: its reservation stands.
	hold := holdID(t, "a")
	type result struct {
		r   reply
		err error
	}
	doneA := make(chan result, 1)
	go func() {
		r, err := s.do("POST", path, tok.Token, bodyA, withHeaders("x-fake-hold", hold))
		doneA <- result{r, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.upstream.WaitHeld(ctx, hold); err != nil {
		t.Fatalf("request A never reached the upstream: %v", err)
	}

	// B, meanwhile: what remains is the limit minus both reservations.
	rB := s.mustDo(t, path, tok.Token, bodyB, noStore, 200)
	if got, want := headerInt(t, rB.header, "X-Ratelimit-Remaining-Tokens"), limit-reservedA-reservedB; got != want {
		t.Fatalf("with A (n=3, max_tokens=100) in flight, B sees %d tokens remaining, want %d = %d - A's %d (prompt estimate + 3×100) - B's %d",
			got, want, limit, reservedA, reservedB)
	}
	if headerInt(t, rB.header, "X-Ratelimit-Limit-Tokens") != limit {
		t.Fatalf("x-ratelimit-limit-tokens %q", rB.header.Get("X-Ratelimit-Limit-Tokens"))
	}

	s.upstream.Release(hold)
	resA := <-doneA
	if resA.err != nil || resA.r.status != 200 {
		t.Fatalf("request A: %d %s %v", resA.r.status, resA.r.body, resA.err)
	}
	if got, want := responseUsage(t, resA.r), [4]int64{actualPromptA, actualCompletionA, 0, 0}; got != want {
		t.Fatalf("A's usage %v, want %v", got, want)
	}
	// Both have settled once their events are out (finish emits after settle).
	s.waitEvent(t, p.ID, resA.r.header.Get("X-Request-Id"))
	s.waitEvent(t, p.ID, rB.header.Get("X-Request-Id"))

	// C: the window now holds A's and B's real usage, and C's reservation.
	msgC := "after the release"
	bodyC := chatBody(t, model, msgC, map[string]any{"max_tokens": 10})
	reservedC := tk.CountPrompt(model, []byte(bodyC)) + 10
	actualC := int64(fakeopenai.PromptTokens(msgC) + fakeopenai.CountWords(fakeopenai.EchoReply(msgC)))
	rC := s.mustDo(t, path, tok.Token, bodyC, noStore, 200)
	actualA := actualPromptA + actualCompletionA
	if got, want := headerInt(t, rC.header, "X-Ratelimit-Remaining-Tokens"), limit-actualA-actualB-reservedC; got != want {
		t.Fatalf("after A settled, C sees %d tokens remaining, want %d = %d - A's real %d - B's real %d - C's reservation %d",
			got, want, limit, actualA, actualB, reservedC)
	}

	promptB, promptC := int64(fakeopenai.PromptTokens(msgB)), int64(fakeopenai.PromptTokens(msgC))
	want := amountsUsage{Requests: 3, Prompt: actualPromptA + promptB + promptC,
		Completion: actualCompletionA + (actualB - promptB) + (actualC - promptC)}
	want.CostMicroUSD = handPrice(t, model, actualPromptA, 0, actualCompletionA) +
		handPrice(t, model, promptB, 0, actualB-promptB) + handPrice(t, model, promptC, 0, actualC-promptC)
	s.waitRollup(t, p.ID, since, fmt.Sprintf("%+v", want), func(u amountsUsage) bool { return u == want })
}

// TestAmountsBudgetReservedAtBody: the budget is reserved when the body
// arrives, at the worst case, so a second request that would fit the
// budget only if the first one's worst case were not counted is refused
// while the first is in flight, and accepted once the first has settled to
// its (much smaller) real cost.
//
// Catches: no budget reservation at the body (request 2 would pass while 1
// runs); a reservation that is not settled back to the real cost (request 2
// would still be refused afterwards); the roll-up or the budget charged
// something other than the real cost.
func TestAmountsBudgetReservedAtBody(t *testing.T) {
	s := startStack(t, stackOptions{})
	since := time.Now()
	const budgetMicro = 2000
	var p project
	s.mustManage("POST", "/manage/projects", map[string]any{"name": "amounts-budget", "openai_api_key": realKey,
		"monthly_budget_usd": json.Number("0.002")}, 201, &p)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	tk := newTokenizer(t)
	const model = "gpt-4.1-mini" // $0.40 in, $1.60 out per million
	const path = "/v1/chat/completions"

	msg1 := "first request holds a large reservation"
	body1 := chatBody(t, model, msg1, map[string]any{"max_tokens": 1000})
	r1 := handEstimate(t, model, tk.CountPrompt(model, []byte(body1)), 1000)
	prompt1, completion1 := int64(fakeopenai.PromptTokens(msg1)), int64(fakeopenai.CountWords(fakeopenai.EchoReply(msg1)))
	actual1 := handPrice(t, model, prompt1, 0, completion1)
	msg2 := "second request wants half as much"
	body2 := chatBody(t, model, msg2, map[string]any{"max_tokens": 500})
	r2 := handEstimate(t, model, tk.CountPrompt(model, []byte(body2)), 500)
	prompt2, completion2 := int64(fakeopenai.PromptTokens(msg2)), int64(fakeopenai.CountWords(fakeopenai.EchoReply(msg2)))
	actual2 := handPrice(t, model, prompt2, 0, completion2)
	// The premise: 1 alone fits (so the refusal of 2 is the body's
	// reservation, not the headers' "budget spent" check), 1 and 2 at their
	// worst do not, 1 at its real cost and 2 at its worst do.
	if !(r1 < budgetMicro && r1+r2 > budgetMicro && actual1+r2 <= budgetMicro) {
		t.Fatalf("bad premise: R1 %d, R2 %d, actual1 %d, budget %d", r1, r2, actual1, budgetMicro)
	}
	t.Logf("budget %d micro-USD: R1 %d, R2 %d, actual1 %d, actual2 %d", budgetMicro, r1, r2, actual1, actual2)

	hold := holdID(t, "1")
	type result struct {
		r   reply
		err error
	}
	done1 := make(chan result, 1)
	go func() {
		r, err := s.do("POST", path, tok.Token, body1, withHeaders("x-fake-hold", hold))
		done1 <- result{r, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.upstream.WaitHeld(ctx, hold); err != nil {
		t.Fatalf("request 1 never reached the upstream: %v", err)
	}

	refused := s.mustDo(t, path, tok.Token, body2, noStore, 429)
	if refused.errorField("type") != "insufficient_quota" || refused.errorField("code") != "insufficient_quota" ||
		refused.header.Get("X-Should-Retry") != "false" {
		t.Fatalf("request 2 with 1 in flight: %v %s, want 429 insufficient_quota (R1 %d + R2 %d > budget %d)",
			refused.header, refused.body, r1, r2, budgetMicro)
	}
	if n := s.upstream.Count(); n != 1 {
		t.Fatalf("the upstream received %d requests, want only request 1", n)
	}

	s.upstream.Release(hold)
	res1 := <-done1
	if res1.err != nil || res1.r.status != 200 {
		t.Fatalf("request 1: %d %s %v", res1.r.status, res1.r.body, res1.err)
	}
	s.waitEvent(t, p.ID, res1.r.header.Get("X-Request-Id")) // settled: finish emits after settle

	ok2 := s.mustDo(t, path, tok.Token, body2, noStore, 200)
	if got, want := responseUsage(t, ok2), [4]int64{prompt2, completion2, 0, 0}; got != want {
		t.Fatalf("request 2's usage %v, want %v", got, want)
	}

	// Only the real costs of the two that ran are charged; the refusal is free.
	ev := s.waitEvent(t, p.ID, refused.header.Get("X-Request-Id"))
	if ev.GetStatus() != 429 || ev.GetErrorCode() != "insufficient_quota" || ev.GetCostMicroUsd() != 0 {
		t.Errorf("refusal event: status %d, code %q, cost %d", ev.GetStatus(), ev.GetErrorCode(), ev.GetCostMicroUsd())
	}
	want := amountsUsage{Requests: 2, Prompt: prompt1 + prompt2, Completion: completion1 + completion2, CostMicroUSD: actual1 + actual2}
	s.waitRollup(t, p.ID, since, fmt.Sprintf("%+v", want), func(u amountsUsage) bool { return u == want })
}

// TestAmountsCacheHitIsFree: a hit of an opted-in POST is answered from the
// cache and costs nothing; the miss before it is charged exactly.
//
// Catches: a hit charged the prompt estimate (or anything: the roll-up's
// tokens and cost after the hit, and the hit's event); a miss charged
// other than the upstream's usage at the table's prices.
func TestAmountsCacheHitIsFree(t *testing.T) {
	s := startStack(t, stackOptions{})
	since := time.Now()
	p := s.createProject("amounts-cache", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	const model = "gpt-4.1-mini"
	const path = "/v1/chat/completions"
	opt := map[string]string{"Cache-Control": optIn}

	msg := "cache me if you can please"
	body := chatBody(t, model, msg, map[string]any{"max_tokens": 50})
	prompt, completion := int64(fakeopenai.PromptTokens(msg)), int64(fakeopenai.CountWords(fakeopenai.EchoReply(msg)))
	missCost := handPrice(t, model, prompt, 0, completion)

	miss := s.mustDo(t, path, tok.Token, body, opt, 200)
	if isHit(miss) {
		t.Fatalf("first request is a hit: %q", miss.header.Get("Cache-Status"))
	}
	wantMiss := amountsUsage{Requests: 1, Prompt: prompt, Completion: completion, CostMicroUSD: missCost}
	s.waitRollup(t, p.ID, since, fmt.Sprintf("%+v", wantMiss), func(u amountsUsage) bool { return u == wantMiss })
	if ev := s.waitEvent(t, p.ID, miss.header.Get("X-Request-Id")); ev.GetCostMicroUsd() != missCost ||
		eventUsage(ev) != [5]int64{prompt, 0, completion, 0, prompt + completion} || ev.GetCacheStatus() != "miss" {
		t.Errorf("miss event: cost %d, usage %v, cache_status %q; want %d, %v, miss", ev.GetCostMicroUsd(), eventUsage(ev),
			ev.GetCacheStatus(), missCost, [5]int64{prompt, 0, completion, 0, prompt + completion})
	}

	hit := s.mustDo(t, path, tok.Token, body, opt, 200)
	if !isHit(hit) || !bytes.Equal(hit.body, miss.body) {
		t.Fatalf("second request: Cache-Status %q, body equal %v; want a hit replaying the miss",
			hit.header.Get("Cache-Status"), bytes.Equal(hit.body, miss.body))
	}
	if n := s.upstream.Count(); n != 1 {
		t.Fatalf("the upstream received %d requests, want 1", n)
	}
	ev := s.waitEvent(t, p.ID, hit.header.Get("X-Request-Id"))
	if ev.GetCacheStatus() != "hit" || ev.GetCostMicroUsd() != 0 || eventUsage(ev) != [5]int64{} {
		t.Errorf("hit event: cache_status %q, cost %d, usage %v; want hit, 0, no tokens", ev.GetCacheStatus(), ev.GetCostMicroUsd(), eventUsage(ev))
	}

	// The hit's event is out, so its roll-up record was made (settle runs
	// before the event). A later, uncached marker request shows up in the
	// roll-up only in a flush that includes everything recorded before it:
	// once the marker is there, whatever the hit added is too.
	markerMsg := "marker after the hit"
	markerPrompt, markerCompletion := int64(fakeopenai.PromptTokens(markerMsg)), int64(fakeopenai.CountWords(fakeopenai.EchoReply(markerMsg)))
	s.mustDo(t, path, tok.Token, chatBody(t, model, markerMsg, nil), noStore, 200)
	want := amountsUsage{Prompt: prompt + markerPrompt, Completion: completion + markerCompletion,
		CostMicroUSD: missCost + handPrice(t, model, markerPrompt, 0, markerCompletion)}
	s.waitRollup(t, p.ID, since, fmt.Sprintf("tokens and cost of the miss and the marker only: %+v", want),
		func(u amountsUsage) bool { return u.charged() == want.charged() })
}

// TestAmountsConcurrentOnRedis: token-rate and budget limits through Envoy,
// with the counts in Redis, under concurrent requests. Every request is held
// at the upstream until all have been decided, so that no settlement frees
// room during the race and the number admitted is exact.
//
// Catches: no token or budget reservation at the body on Redis (every
// request would be admitted: nothing is spent at the headers yet);
// reservations of another size (another count than floor(limit /
// reservation)); a settlement that does not reach Redis (the follow-up
// request would find no room); a cost doubled or a roll-up that differs
// from what the upstream billed; a limiter that silently fell back to the
// in-process one.
func TestAmountsConcurrentOnRedis(t *testing.T) {
	s := startStack(t, stackOptions{env: map[string]string{
		"LLM_PROXY_REDIS_URL":    testenv.Redis(t),
		"LLM_PROXY_REDIS_PREFIX": fmt.Sprintf("t:%s:%d:", t.Name(), time.Now().UnixNano()),
		// Two cores under the race detector can take a Redis call past the
		// default timeout, and the limits would then fall back to the
		// in-process limiter: this test is about Redis.
		"LLM_PROXY_REDIS_TIMEOUT": "5s",
	}})
	tk := newTokenizer(t)
	const model = "gpt-4.1-mini"
	const path = "/v1/chat/completions"

	// race sends n copies of body at once, all held at the upstream, and
	// waits until each was either refused or is held there; then it
	// releases them and returns every reply.
	race := func(t *testing.T, n int, tok, body string, hdr map[string]string) (admitted int, replies []reply) {
		t.Helper()
		hold := holdID(t, "race")
		h := withHeaders("x-fake-hold", hold)
		for k, v := range hdr {
			h[k] = v
		}
		var mu sync.Mutex
		var refused int
		var errs []error
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				r, err := s.do("POST", path, tok, body, h)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				if r.status != 200 {
					refused++
				}
				replies = append(replies, r)
			})
		}
		atUpstream := func() int {
			c := 0
			for _, rec := range s.upstream.Requests() {
				if rec.Header.Get("X-Fake-Hold") == hold {
					c++
				}
			}
			return c
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			decided := refused + len(errs)
			mu.Unlock()
			if admitted = atUpstream(); admitted+decided == n {
				break
			}
			if time.Now().After(deadline) {
				s.upstream.Release(hold)
				wg.Wait()
				t.Fatalf("after 30s %d of %d requests were refused and %d reached the upstream", decided, n, admitted)
			}
			time.Sleep(20 * time.Millisecond)
		}
		s.upstream.Release(hold)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("requests failed: %v", errs)
		}
		return admitted, replies
	}

	t.Run("tokens per minute", func(t *testing.T) {
		since := time.Now()
		const key = "sk-proj-AMOUNTS-TPM-0123456789abcdefghijklmnop"
		p := s.createProject("amounts-redis-tpm", key)
		const limit = 1000
		tok := s.createToken(map[string]any{"project_id": p.ID, "limits": map[string]any{"tokens_per_minute": limit}})
		msg := "concurrent token rate request"
		body := chatBody(t, model, msg, map[string]any{"max_tokens": 100})
		reserved := tk.CountPrompt(model, []byte(body)) + 100
		wantAdmitted := int(limit / reserved)
		if wantAdmitted < 2 || wantAdmitted >= 20 {
			t.Fatalf("bad premise: %d of 20 requests of %d tokens fit %d", wantAdmitted, reserved, limit)
		}
		t.Logf("limit %d tokens, %d reserved each: %d of 20 fit", limit, reserved, wantAdmitted)

		admitted, replies := race(t, 20, tok.Token, body, nil)
		statuses := map[int]int{}
		for _, r := range replies {
			statuses[r.status]++
			if r.status == 429 && (r.errorField("code") != "rate_limit_exceeded" || r.errorField("type") != "tokens") {
				t.Errorf("429 that is not the tokens limit: %s", r.body)
			}
		}
		// floor(L / reservation): the (k+1)-th reservation would exceed L.
		if admitted != wantAdmitted || statuses[200] != wantAdmitted || statuses[429] != 20-wantAdmitted {
			t.Fatalf("%d reached the upstream, statuses %v; want exactly %d = floor(%d / %d) admitted, the rest 429",
				admitted, statuses, wantAdmitted, limit, reserved)
		}

		// Settled: each admitted request's real usage, which in all stays
		// within the limit, and which the roll-up records exactly.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.upstream.WaitLedger(ctx, wantAdmitted)
		charges := ledgerOf(s.upstream.Ledger(), key)
		want := ledgerRollup(t, charges)
		actualEach := int64(fakeopenai.PromptTokens(msg) + fakeopenai.CountWords(fakeopenai.EchoReply(msg)))
		if len(charges) != wantAdmitted || want.Prompt+want.Completion != int64(wantAdmitted)*actualEach {
			t.Fatalf("the upstream billed %d charges %+v, want %d of %d tokens", len(charges), charges, wantAdmitted, actualEach)
		}
		if settled := want.Prompt + want.Completion; settled > limit {
			t.Fatalf("settled tokens %d exceed the limit %d within the minute", settled, limit)
		}
		s.waitRollup(t, p.ID, since, fmt.Sprintf("the ledger's %+v", want), func(u amountsUsage) bool { return u == want })

		// The roll-up is recorded after the limiter settles: the window now
		// holds the real usage, and one more request sees exactly the rest.
		next := s.mustDo(t, path, tok.Token, body, noStore, 200)
		if got, wantRemaining := headerInt(t, next.header, "X-Ratelimit-Remaining-Tokens"), limit-int64(wantAdmitted)*actualEach-reserved; got != wantRemaining {
			t.Fatalf("after settling, remaining tokens %d, want %d = %d - %d×%d settled - %d reserved",
				got, wantRemaining, limit, wantAdmitted, actualEach, reserved)
		}
	})

	t.Run("budget", func(t *testing.T) {
		since := time.Now()
		const key = "sk-proj-AMOUNTS-BUDGET-0123456789abcdefghijklm"
		const budgetMicro = 1000 // $0.001
		var p project
		s.mustManage("POST", "/manage/projects", map[string]any{"name": "amounts-redis-budget", "openai_api_key": key,
			"monthly_budget_usd": json.Number("0.001")}, 201, &p)
		tok := s.createToken(map[string]any{"project_id": p.ID})
		msg := "budget race request"
		const maxTokens = 60
		body := chatBody(t, model, msg, map[string]any{"max_tokens": maxTokens})
		promptEstimate := tk.CountPrompt(model, []byte(body))
		reserved := handEstimate(t, model, promptEstimate, maxTokens)
		prompt := int64(fakeopenai.PromptTokens(msg))
		actual := handPrice(t, model, prompt, 0, maxTokens) // x-fake-words = max_tokens: the full cap
		wantAdmitted := int(budgetMicro / reserved)
		// The bound asserted below is 0: each admitted request is reserved
		// at its worst case before it goes upstream, and the worst case
		// bounds what it is billed — the reply is capped by max_tokens (the
		// fake cuts it there, as OpenAI does) and the fake's prompt count
		// is within tiktoken's estimate (checked here) — so the reservations
		// admitted, at most the budget, bound the bill. Were the output not
		// bounded by max_tokens, an overrun of the last request would be
		// the documented slack; here there is none.
		if prompt > promptEstimate || wantAdmitted < 2 || wantAdmitted >= 30 || int64(30)*actual <= budgetMicro {
			t.Fatalf("bad premise: prompt %d vs estimate %d, reservation %d, actual %d, budget %d",
				prompt, promptEstimate, reserved, actual, budgetMicro)
		}
		t.Logf("budget %d micro-USD, %d reserved each (actual %d): %d of 30 fit", budgetMicro, reserved, actual, wantAdmitted)

		admitted, replies := race(t, 30, tok.Token, body, map[string]string{"x-fake-words": fmt.Sprint(maxTokens)})
		statuses := map[int]int{}
		for _, r := range replies {
			statuses[r.status]++
			if r.status == 429 && r.errorField("code") != "insufficient_quota" {
				t.Errorf("429 that is not the budget: %s", r.body)
			}
		}
		if admitted != wantAdmitted || statuses[200] != wantAdmitted || statuses[429] != 30-wantAdmitted {
			t.Fatalf("%d reached the upstream, statuses %v; want exactly %d = floor(%d / %d) admitted, the rest 429 insufficient_quota",
				admitted, statuses, wantAdmitted, budgetMicro, reserved)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.upstream.WaitLedger(ctx, wantAdmitted)
		charges := ledgerOf(s.upstream.Ledger(), key)
		want := ledgerRollup(t, charges)
		if len(charges) != wantAdmitted || want.CostMicroUSD != int64(wantAdmitted)*actual {
			t.Fatalf("the upstream billed %d charges %+v (%d micro-USD), want %d at %d", len(charges), charges, want.CostMicroUSD, wantAdmitted, actual)
		}
		if want.CostMicroUSD > budgetMicro {
			t.Fatalf("the upstream billed %d micro-USD against a budget of %d (bound 0)", want.CostMicroUSD, budgetMicro)
		}
		s.waitRollup(t, p.ID, since, fmt.Sprintf("the ledger's %+v", want), func(u amountsUsage) bool { return u == want })
	})

	// The limits above were Redis's: the limiter never fell back.
	m := s.metrics(t)
	if !strings.Contains(m, "llm_proxy_ratelimit_degraded 0") || strings.Contains(m, "llm_proxy_ratelimit_fallbacks_total{") {
		t.Fatalf("the limiter left Redis during the test:\n%s", grepLines(m, "llm_proxy_ratelimit_"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}

// TestAmountsEventsMatchLedger: over mixed requests — a chat with a cache
// hit in its prompt, a stream the gateway asks usage for, a stream whose
// client asked for it itself on a reasoning model, embeddings — the events
// charge exactly what the upstream billed, priced with our table, request by
// request and in sum.
//
// Catches: a cost doubled or off on any route; cached and reasoning tokens
// swapped in events; a stream settled from the tokenizer instead of the
// provider's usage (tiktoken's counts are not the fake's word counts); an
// event missing or duplicated.
func TestAmountsEventsMatchLedger(t *testing.T) {
	s := startStack(t, stackOptions{})
	p := s.createProject("amounts-ledger", realKey)
	tok := s.createToken(map[string]any{"project_id": p.ID})
	const chat = "/v1/chat/completions"

	s.mustDo(t, chat, tok.Token, chatBody(t, "gpt-4.1-mini", strings.TrimSpace(strings.Repeat("prompt cache words ", 40)), nil),
		withHeaders("x-fake-cached-tokens", "100", "x-fake-words", "30"), 200)
	stream := s.mustDo(t, chat, tok.Token, chatBody(t, "gpt-4o-mini", "stream me forty words", map[string]any{"stream": true}),
		withHeaders("x-fake-words", "40"), 200)
	if !strings.Contains(string(stream.body), "data: [DONE]") {
		t.Fatalf("stream did not finish: %s", stream.body)
	}
	reasoning := s.mustDo(t, chat, tok.Token, chatBody(t, "gpt-5-mini", "think hard then answer", map[string]any{
		"stream": true, "stream_options": map[string]any{"include_usage": true}, "max_completion_tokens": 500}),
		withHeaders("x-fake-reasoning-tokens", "200", "x-fake-cached-tokens", "4", "x-fake-words", "25"), 200)
	if !strings.Contains(string(reasoning.body), "data: [DONE]") {
		t.Fatalf("stream did not finish: %s", reasoning.body)
	}
	s.mustDo(t, "/v1/embeddings", tok.Token, `{"model":"text-embedding-3-small","input":["first embedded text here","and a second one"]}`, noStore, 200)
	const requests = 4

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.upstream.WaitLedger(ctx, requests)
	charges := ledgerOf(s.upstream.Ledger(), realKey)
	if len(charges) != requests {
		t.Fatalf("the upstream billed %d charges, want %d: %+v", len(charges), requests, charges)
	}
	evs := s.waitEvents(t, p.ID, fmt.Sprintf("%d settled events", requests), func(evs []*llmproxyv1.UsageEvent) bool {
		return len(evs) >= requests
	})
	if len(evs) != requests {
		t.Fatalf("%d events, want %d: %v", len(evs), requests, evs)
	}

	// Request by request: (model, prompt, cached, completion, reasoning, cost).
	type line struct {
		model                                               string
		prompt, cached, completion, reasoning, costMicroUSD int64
	}
	cmp := func(a, b line) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
	var billed, charged []line
	var billedSum, chargedSum int64
	for _, c := range charges {
		l := line{c.Model, c.PromptTokens, c.CachedTokens, c.CompletionTokens, c.ReasoningTokens,
			handPrice(t, c.Model, c.PromptTokens, c.CachedTokens, c.CompletionTokens)}
		billed = append(billed, l)
		billedSum += l.costMicroUSD
	}
	for _, ev := range evs {
		u := ev.GetUsage()
		if ev.GetStatus() != 200 || ev.GetUsageSource() != "provider" {
			t.Errorf("event %s: status %d, usage source %q; want 200, provider", ev.GetRequestId(), ev.GetStatus(), ev.GetUsageSource())
		}
		l := line{ev.GetModel(), u.GetPromptTokens(), u.GetCachedTokens(), u.GetCompletionTokens(), u.GetReasoningTokens(), ev.GetCostMicroUsd()}
		charged = append(charged, l)
		chargedSum += l.costMicroUSD
	}
	slices.SortFunc(billed, cmp)
	slices.SortFunc(charged, cmp)
	if !slices.Equal(billed, charged) {
		t.Errorf("events charged\n  %+v\nthe upstream billed (priced with our table)\n  %+v", charged, billed)
	}
	if chargedSum != billedSum {
		t.Fatalf("events charged %d micro-USD in all, the ledger priced with our table %d", chargedSum, billedSum)
	}
}
