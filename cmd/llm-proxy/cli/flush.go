package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/eventsink"
	"github.com/llm-proxy/llm-proxy/store"
)

// flushEvery calls flush every interval until ctx ends, then once more with a
// short deadline of its own, so a graceful shutdown loses nothing that was
// counted in memory. Failures are reported and retried at the next tick (the
// flushers keep what they could not write). It returns the final flush's
// error.
func flushEvery(ctx context.Context, interval time.Duration, flush func(context.Context) error, onError func(error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := flush(ctx); err != nil {
				onError(err)
			}
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return flush(final)
		}
	}
}

// auditDenialSummaries writes, one row per client address and reason, the
// denials authz counted but did not have audited one by one (a flood of bad
// tokens); final closes every open window (at shutdown).
func auditDenialSummaries(auth *authz.Authorizer, audit *eventsink.AuditLog, final bool) {
	for _, s := range auth.DenialSummaries(final) {
		audit.Record(store.AuditEvent{
			Time: s.Until, Action: s.Reason, Actor: "client", Outcome: store.AuditOutcomeDenied,
			TargetType: store.AuditTargetToken, ClientAddress: s.Addr,
			Detail: fmt.Sprintf("%d more denials between %s and %s, not recorded one by one",
				s.Suppressed, s.Since.UTC().Format(time.RFC3339), s.Until.UTC().Format(time.RFC3339)),
		})
	}
}
