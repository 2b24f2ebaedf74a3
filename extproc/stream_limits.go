package extproc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
)

// limitState is what the limits keep of one stream: the limits that apply
// to its principal, its admission (which holds a concurrency slot until
// settled) and its reservation of tokens and cost.
type limitState struct {
	list        []ratelimit.Limit
	admission   *ratelimit.Admission
	reservation *ratelimit.Reservation
}

// limitsOf lists the limits that apply to a principal: its project's and its
// token's. Both share the project as group, so on a Redis Cluster all keys of
// one request live in one slot and stay atomic.
func (st *stream) limitsOf() []ratelimit.Limit {
	p := st.principal
	group := ratelimit.ProjectScope(p.ProjectID).String()
	project := ratelimit.Limit{Scope: group, Group: group, MonthlyBudget: deref(p.MonthlyBudgetMicroUSD)}
	setRates(&project, p.ProjectLimits)
	token := ratelimit.Limit{Scope: ratelimit.TokenScope(p.TokenID).String(), Group: group, MaxRequests: deref(p.MaxRequests)}
	setRates(&token, p.TokenLimits)
	return []ratelimit.Limit{project, token}
}

func setRates(l *ratelimit.Limit, s store.Limits) {
	l.RequestsPerMinute = deref(s.RequestsPerMinute)
	l.TokensPerMinute = deref(s.TokensPerMinute)
	l.MaxConcurrent = deref(s.MaxConcurrent)
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// admit charges the request against the request-rate, concurrency, budget
// and lifetime limits, before anything goes upstream.
func (st *stream) admit() error {
	st.limits.list = st.limitsOf()
	a, err := st.srv.limiter.Admit(st.ctx, st.limits.list)
	if err != nil {
		return fmt.Errorf("admit: %w", err)
	}
	st.limits.admission = a
	st.srv.counter.CountRequest(st.principal.TokenID)
	return nil
}

// limitDecision is what the limiter decided, for the event: "" when no
// limit applies to the request, "limited" when one refused it, else
// "allowed".
func (st *stream) limitDecision() string {
	var le *ratelimit.LimitError
	switch {
	case st.denial != nil && errors.As(st.denial.Err, &le):
		return "limited"
	case !slices.ContainsFunc(st.limits.list, bounds):
		return ""
	}
	return "allowed"
}

// bounds reports whether l limits anything.
func bounds(l ratelimit.Limit) bool {
	return l.RequestsPerMinute > 0 || l.TokensPerMinute > 0 || l.MaxConcurrent > 0 || l.MonthlyBudget > 0 || l.MaxRequests > 0
}

// renewSlot keeps a long response's concurrency slot: Admission.Renew
// extends the lease at most every third of it and is free otherwise, so it
// runs on every response message. A failure is logged, the slot kept until
// its lease ends.
func (st *stream) renewSlot() {
	if err := st.limits.admission.Renew(st.ctx); err != nil {
		st.logger().Warn().Err(err).Msg("concurrency lease not renewed")
	}
}

// reserve charges the request's worst case (prompt estimate plus the
// completion it may produce) against tokens per minute and the budget; the
// reservation is settled with the real usage when the response ends. Without
// a token limit or budget there is nothing to reserve, and a free route (a
// moderation, a token count) settles at nothing, so it reserves nothing:
// holding tokens per minute for it would refuse others' requests for nothing.
func (st *stream) reserve() error {
	if st.charge() == config.ChargeFree || !slices.ContainsFunc(st.limits.list, func(l ratelimit.Limit) bool { return l.TokensPerMinute > 0 || l.MonthlyBudget > 0 }) {
		return nil
	}
	var tokens, cost int64
	if st.charge() == config.ChargeBatch {
		// A batch does not count against tokens per minute (OpenAI keeps
		// batch quotas apart); its cost is every line's, discounted.
		c, err := st.estimateBatch()
		if err != nil {
			return err
		}
		cost = c
	} else {
		tokens, cost = st.estimate()
	}
	r, err := st.srv.limiter.Reserve(st.ctx, st.limits.list, tokens, cost)
	if err != nil {
		return fmt.Errorf("reserve %d tokens: %w", tokens, err)
	}
	st.limits.reservation = r
	return nil
}

// settleReservation replaces the reservation with what the request used.
// A failure is logged: the reservation then stands as reserved.
func (st *stream) settleReservation(ctx context.Context, tokens, cost int64) {
	if st.limits.reservation == nil {
		return
	}
	if err := st.limits.reservation.Settle(ctx, tokens, cost); err != nil {
		st.logger().Warn().Err(err).Msg("settle reservation")
	}
}

// maxOutput is the completion size the request may produce.
func (st *stream) maxOutput() int64 {
	if st.path == "/v1/embeddings" {
		return 0 // embeddings produce no output tokens
	}
	n := st.req.MaxOutputTokens
	if n <= 0 {
		n = st.srv.defaultMaxTokens
	}
	return n * max(st.req.N, 1)
}

// rateLimitHeaders are OpenAI's x-ratelimit-* response headers, for the most
// restrictive limit that applies, so SDKs and clients can pace themselves.
func (st *stream) rateLimitHeaders() []*corev3.HeaderValueOption {
	var hs []*corev3.HeaderValueOption
	add := func(kind string, s ratelimit.Status) {
		if s.Limit <= 0 {
			return
		}
		hs = append(hs,
			setHeader("x-ratelimit-limit-"+kind, strconv.FormatInt(s.Limit, 10)),
			setHeader("x-ratelimit-remaining-"+kind, strconv.FormatInt(max(s.Remaining, 0), 10)),
			setHeader("x-ratelimit-reset-"+kind, resetString(s.Reset)),
		)
	}
	if st.limits.admission != nil {
		add("requests", st.limits.admission.Requests())
	}
	if st.limits.reservation != nil {
		add("tokens", st.limits.reservation.Tokens())
	}
	return hs
}

// resetString formats a reset delay as OpenAI does ("1s", "6m0s", "20ms").
func resetString(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
