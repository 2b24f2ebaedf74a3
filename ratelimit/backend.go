package ratelimit

import (
	"context"
	"errors"
)

// A backend keeps a [Limiter]'s counts: the memory backend ([NewMemory]), or
// Redis composed with the memory backend as its local fallback ([NewRedis]).
// The Limiter validates calls and counts denials; the backend checks and
// charges. An Admission or Reservation remembers the backend that charged
// it (b), which alone releases, renews or settles it.
type backend interface {
	// admit checks and charges c's lifetime, budget, concurrency and
	// request limits, all or nothing.
	admit(ctx context.Context, c *call) (*Admission, error)
	// reserve checks and charges c's budget and token limits, all or nothing.
	reserve(ctx context.Context, c *call, tokens, cost int64) (*Reservation, error)
	// release frees the concurrency slots of request id; it reports no
	// failure (a slot that cannot be freed ends with its lease).
	release(ctx context.Context, conc []Limit, id string)
	// renew extends the slots of request id to a full lease from now; a slot
	// whose lease ended is not taken again (ErrLeaseEnded).
	renew(ctx context.Context, conc []Limit, id string) error
	// settle replaces r's reserved amounts with tokens and cost.
	settle(ctx context.Context, r *Reservation, tokens, cost int64) error
	// degraded reports whether calls are answered by failure modes.
	degraded() bool
	// close stops what the backend runs in the background, and waits.
	close()
}

var (
	_ backend = (*memory)(nil)
	_ backend = (*redisBackend)(nil)
	_ backend = (*fallback)(nil)
)

// backendError is a failure of a shared backend (Redis), before failure
// modes are applied: the error that makes a [fallback] answer by them.
type backendError struct{ err error }

func (e *backendError) Error() string { return "redis: " + e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// fallback is the backend of [NewRedis]: it passes calls to primary and,
// when primary fails with a *backendError, answers them by each kind's
// [FailureMode] — refuses (closed), allows uncounted (open), or charges the
// kinds that fail local on local. An Admission or Reservation carries the
// backend that charged it, primary or local, so fallback's own release,
// renew and settle pass to primary and serve only a reservation rebuilt
// from a [Ticket] that primary charged ([Limiter.SettleTicket]).
type fallback struct {
	l       *Limiter // modes and metrics
	primary backend
	local   *memory
}

func (f *fallback) admit(ctx context.Context, c *call) (*Admission, error) {
	a, err := f.primary.admit(ctx, c)
	var be *backendError
	if !errors.As(err, &be) {
		return a, err
	}
	local, err := f.reduce(c, []Kind{KindLifetime, KindBudget, KindConcurrency, KindRequests}, be)
	if err != nil {
		return nil, err
	}
	if len(local.limits) == 0 {
		return newAdmission(f.l, "", nil), nil
	}
	return f.local.admit(ctx, local)
}

func (f *fallback) reserve(ctx context.Context, c *call, tokens, cost int64) (*Reservation, error) {
	r, err := f.primary.reserve(ctx, c, tokens, cost)
	var be *backendError
	if !errors.As(err, &be) {
		return r, err
	}
	local, err := f.reduce(c, []Kind{KindBudget, KindTokens}, be)
	if err != nil {
		return nil, err
	}
	if len(local.limits) == 0 {
		return &Reservation{}, nil
	}
	return f.local.reserve(ctx, local, tokens, cost)
}

func (f *fallback) release(ctx context.Context, conc []Limit, id string) {
	f.primary.release(ctx, conc, id)
}

func (f *fallback) renew(ctx context.Context, conc []Limit, id string) error {
	return f.primary.renew(ctx, conc, id)
}

func (f *fallback) settle(ctx context.Context, r *Reservation, tokens, cost int64) error {
	return f.primary.settle(ctx, r, tokens, cost)
}

func (f *fallback) degraded() bool { return f.primary.degraded() }

func (f *fallback) close() {
	f.primary.close()
	f.local.close()
}

// reduce applies the failure modes of the kinds c uses (listed in ks): it
// returns an error if one fails closed, else the limits reduced to the kinds
// that fail local (none: the call is allowed uncounted).
func (f *fallback) reduce(c *call, ks []Kind, cause error) (*call, error) {
	l := f.l
	for _, k := range ks {
		for _, lim := range c.limits {
			if limitOf(lim, k) > 0 && l.modes[k] == FailClosed {
				l.metrics.fallback(k, FailClosed)
				return nil, unavailable(k, lim.Scope, cause)
			}
		}
	}
	local := &call{id: c.id}
	for _, lim := range c.limits {
		keep := Limit{Scope: lim.Scope, Group: lim.Group}
		for _, k := range ks {
			if limitOf(lim, k) == 0 {
				continue
			}
			l.metrics.fallback(k, l.modes[k])
			if l.modes[k] != FailLocal {
				continue
			}
			switch k {
			case KindRequests:
				keep.RequestsPerMinute = lim.RequestsPerMinute
			case KindTokens:
				keep.TokensPerMinute = lim.TokensPerMinute
			case KindConcurrency:
				keep.MaxConcurrent = lim.MaxConcurrent
			case KindBudget:
				keep.MonthlyBudget = lim.MonthlyBudget
			case KindLifetime:
				keep.MaxRequests = lim.MaxRequests
			}
		}
		if keep != (Limit{Scope: lim.Scope, Group: lim.Group}) {
			local.limits = append(local.limits, keep)
		}
	}
	return local, nil
}
