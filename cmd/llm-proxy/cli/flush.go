package cli

import (
	"context"
	"time"
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
