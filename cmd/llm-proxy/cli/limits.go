package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/eventsink"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
)

func failureModes(m map[string]string) map[ratelimit.Kind]ratelimit.FailureMode {
	out := make(map[ratelimit.Kind]ratelimit.FailureMode, len(m))
	for k, v := range m {
		out[ratelimit.Kind(k)] = ratelimit.FailureMode(v)
	}
	return out
}

// limitSeed tells the limiter where a counter starts when its backend has
// none (first use, a restart of the in-memory limiter, a flushed Redis): a
// token's lifetime count from what this instance and the store know, a
// project's month spend from the usage roll-up, stored and pending.
func limitSeed(st *store.Store, auth *authz.Authorizer, rollup *eventsink.Rollup) func(context.Context, ratelimit.Kind, string, time.Time) (int64, error) {
	return func(ctx context.Context, kind ratelimit.Kind, scope string, since time.Time) (int64, error) {
		sc, err := ratelimit.ParseScope(scope)
		if err != nil {
			return 0, nil // not a scope of ours: nothing to seed from
		}
		id := sc.ID
		switch {
		case kind == ratelimit.KindLifetime && sc.Kind == ratelimit.ScopeToken:
			if n, ok := auth.RequestCount(id); ok {
				return n, nil
			}
			t, err := st.GetToken(ctx, id)
			if err != nil {
				return 0, fmt.Errorf("seed lifetime count of %s: %w", id, err)
			}
			return t.RequestCount, nil
		case kind == ratelimit.KindBudget && sc.Kind == ratelimit.ScopeProject:
			from := since.UTC().Format(time.DateOnly)
			cost, err := st.ProjectCost(ctx, id, from, "9999-12-31")
			if err != nil {
				return 0, fmt.Errorf("seed month spend of %s: %w", id, err)
			}
			// Background responses and batches not yet settled stay charged
			// at their reservation (their settlement moves the difference).
			outstanding, err := st.OutstandingMicroUSD(ctx, id, since)
			if err != nil {
				return 0, fmt.Errorf("seed month spend of %s: %w", id, err)
			}
			return cost + rollup.Pending(id, from) + outstanding, nil
		}
		return 0, nil
	}
}
