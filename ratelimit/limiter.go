package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// A Limit is what one scope may use. A zero field means "unlimited" for that
// kind; a Limit with every field zero costs nothing.
type Limit struct {
	// Scope names whose quota this is: a [Scope]'s String, e.g.
	// "project:proj_123" or "token:tok_456". It never contains a secret: it
	// is part of Redis keys, errors and logs.
	Scope string
	// Group is the Redis Cluster hash tag of the scope's keys; empty means
	// Scope. All limits of one [Limiter.Admit] or [Limiter.Reserve] call must
	// share a group (give a token's limits its project's scope as group), and
	// one scope must always be used with the same group: the group is part of
	// the keys.
	Group string

	RequestsPerMinute int64 // requests admitted in any 60-second window
	TokensPerMinute   int64 // tokens reserved (then settled) in any 60-second window
	MaxConcurrent     int64 // requests admitted and not yet Done
	MonthlyBudget     int64 // micro-USD reserved (then settled) per calendar month, UTC
	MaxRequests       int64 // requests admitted, ever
}

func (l Limit) group() string {
	if l.Group == "" {
		return l.Scope
	}
	return l.Group
}

// A Kind is one of the five things a [Limit] bounds.
type Kind string

// The kinds of limit.
const (
	KindRequests    Kind = "requests"    // Limit.RequestsPerMinute
	KindTokens      Kind = "tokens"      // Limit.TokensPerMinute
	KindConcurrency Kind = "concurrency" // Limit.MaxConcurrent
	KindBudget      Kind = "budget"      // Limit.MonthlyBudget
	KindLifetime    Kind = "lifetime"    // Limit.MaxRequests
)

// kinds lists every Kind, in the order Admit and Reserve report refusals:
// those retrying cannot cure first.
var kinds = [...]Kind{KindLifetime, KindBudget, KindConcurrency, KindRequests, KindTokens}

// A FailureMode says what a kind of limit does when its backend fails (see the
// package documentation for each kind's default).
type FailureMode string

// The failure modes.
const (
	FailClosed FailureMode = "closed" // refuse: the call returns an error wrapping ErrUnavailable
	FailOpen   FailureMode = "open"   // allow without counting
	FailLocal  FailureMode = "local"  // count in an in-process limiter, per replica
)

// DefaultFailureModes returns the failure mode of each kind when
// [Options.FailureModes] does not name it: local for everything but the
// budget, which fails closed. The package documentation says why.
func DefaultFailureModes() map[Kind]FailureMode {
	return map[Kind]FailureMode{
		KindRequests:    FailLocal,
		KindTokens:      FailLocal,
		KindConcurrency: FailLocal,
		KindLifetime:    FailLocal,
		KindBudget:      FailClosed,
	}
}

var (
	// ErrUnavailable is wrapped by the error of a call that needed the
	// backend (or a [Options.Seed]) for a kind whose failure mode is closed,
	// while it failed, and by [Admission.Renew] and [Reservation.Settle] when
	// Redis could not be updated.
	ErrUnavailable = errors.New("rate limiter unavailable")
	// ErrLeaseEnded is wrapped by the error of [Admission.Renew] when a
	// concurrency slot's lease had already ended: the slot is not taken
	// again, since another request may hold it by now.
	ErrLeaseEnded = errors.New("concurrency lease ended")
)

// A LimitError is a refusal: the call would take Scope over its Limit of
// Kind. RetryAfter is when trying again may succeed: 0 for budget and
// lifetime (retrying cannot help before the month or the limit changes) and
// for a request larger than a whole limit; a fixed [ConcurrencyRetryAfter]
// for concurrency, since when a slot frees cannot be known; for requests and
// tokens, the time until enough of the window's entries leave it.
type LimitError struct {
	Kind       Kind
	Scope      string
	Limit      int64
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	var what string
	switch e.Kind {
	case KindRequests:
		what = "requests per minute"
	case KindTokens:
		what = "tokens per minute"
	case KindConcurrency:
		what = "concurrent requests"
	case KindBudget:
		what = "micro-USD per month"
	case KindLifetime:
		what = "requests in total"
	default:
		what = string(e.Kind)
	}
	msg := fmt.Sprintf("ratelimit: %s over its %s limit of %d %s", e.Scope, e.Kind, e.Limit, what)
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf("; retry after %s", e.RetryAfter)
	}
	return msg
}

// ConcurrencyRetryAfter is the RetryAfter of a concurrency refusal.
const ConcurrencyRetryAfter = time.Second

// A Status is one kind's standing for OpenAI's x-ratelimit-limit-*,
// -remaining-* and -reset-* headers, for the most restrictive scope of a
// call (fewest remaining; on a tie, the later reset). A zero Status (Limit 0)
// means no scope of the call limits that kind, or the backend failed open.
type Status struct {
	Limit     int64
	Remaining int64         // after this call's charge; never negative
	Reset     time.Duration // until the oldest entry of the window leaves it
}

// Options configures a [Limiter]. The zero value is usable.
type Options struct {
	// Prefix starts every Redis key; default "llmproxy:rl:". It must not
	// contain "{" or "}", which would change the keys' hash slot.
	Prefix string
	// FailureModes overrides [DefaultFailureModes] per kind. An unknown mode
	// counts as closed.
	FailureModes map[Kind]FailureMode
	// Lease is how long a concurrency slot lives unless [Admission.Renew]
	// extends it; default 10 minutes. It bounds how long a replica that dies
	// before [Admission.Done] keeps its slots, so it is short; a request that
	// may run longer renews its slot while it lives.
	Lease time.Duration
	// Timeout bounds each Redis call; default 50ms. The Redis client must be
	// built with ContextTimeoutEnabled, or go-redis bounds socket reads by its
	// own ReadTimeout instead (NewRedis logs a warning then).
	Timeout time.Duration
	// Seed returns the use so far of a counter the backend does not have
	// (first use, Redis restarted or flushed, a new month): for KindLifetime
	// the scope's stored request count (since is zero), for KindBudget the
	// micro-USD spent since the start of the month. Nil means zero. A Seed
	// error fails the call (closed) or skips that kind for the call (open,
	// local) and is retried on the next call.
	Seed func(ctx context.Context, kind Kind, scope string, since time.Time) (int64, error)
	// Now is the clock of the in-memory limiter (the memory backend, and the
	// local fallback of the Redis one); default time.Now. The Redis backend
	// itself uses Redis's clock.
	Now func() time.Time
	// Registerer receives the limiter's metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger receives the degraded/recovered transitions.
	Logger zerolog.Logger
}

const (
	defaultPrefix  = "llmproxy:rl:"
	defaultTimeout = 50 * time.Millisecond
	// window is the span of the per-minute limits.
	window = time.Minute
	// defaultLease is Options.Lease's default.
	defaultLease = 10 * time.Minute
	// minTombstoneTTL is how long, at least, a compensated call's tombstone
	// keeps its script from charging if it reaches Redis late (see
	// tombstoneTTL).
	minTombstoneTTL = time.Hour
	// probeInterval is how often a degraded Redis limiter checks whether
	// Redis is back; meanwhile calls do not touch Redis at all.
	probeInterval = time.Second
	// maxPending bounds the releases and compensations kept for when Redis
	// answers again; beyond it, slots are left to their lease and charges
	// stand.
	maxPending = 10000
)

// A Limiter enforces [Limit]s. It is safe for concurrent use. Build one with
// [NewMemory] or [NewRedis] and [Limiter.Close] it when done.
type Limiter struct {
	o       Options
	window  time.Duration // window; tests shorten it
	modes   map[Kind]FailureMode
	b       backend // the counts: the memory backend, or Redis with a local fallback
	mem     *memory // the in-process counts: b itself, or b's local fallback
	metrics *metrics
	log     zerolog.Logger
	seeds   singleflight.Group
}

func newLimiter(o Options) *Limiter {
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultTimeout
	}
	if o.Lease <= 0 {
		o.Lease = defaultLease
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		o.Logger.Warn().Str("prefix", o.Prefix).
			Msg("rate-limit key prefix contains { or }: it becomes the Redis Cluster hash tag of every key")
	}
	modes := DefaultFailureModes()
	for k, m := range o.FailureModes {
		switch m {
		case FailClosed, FailOpen, FailLocal:
		default:
			o.Logger.Warn().Str("kind", string(k)).Str("failure_mode", string(m)).
				Msg("unknown rate-limit failure mode; using closed")
			m = FailClosed
		}
		modes[k] = m
	}
	l := &Limiter{
		o:       o,
		window:  window,
		modes:   modes,
		metrics: newMetrics(o.Registerer),
		log:     o.Logger,
	}
	l.mem = newMemory(l)
	l.b = l.mem
	return l
}

// NewMemory returns a Limiter that keeps its counts in this process: exact for
// one replica, and per replica when there are several.
func NewMemory(o Options) *Limiter {
	return newLimiter(o)
}

// Degraded reports whether the Redis backend is failing and calls are being
// answered by their failure modes. It is always false for [NewMemory].
func (l *Limiter) Degraded() bool { return l.b.degraded() }

// Close stops the Redis limiter's health probe and waits for it. It does not
// close the Redis client. The Limiter must not be used after Close.
func (l *Limiter) Close() error {
	l.b.close()
	return nil
}

// call is the validated input of Admit or Reserve.
type call struct {
	id     string
	limits []Limit // only those limiting a kind of the call
}

// newID returns a request id, unique with overwhelming probability across
// replicas. It is a member of Redis sorted sets, so it is short and holds no
// ":" (the separator of token entries).
func newID() string {
	return strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
}

// prepare validates limits and keeps those that limit one of the given kinds.
func prepare(limits []Limit, uses func(Limit) bool) (*call, error) {
	c := &call{id: newID()}
	seen := make(map[string]bool, len(limits))
	for i, lim := range limits {
		switch {
		case lim.Scope == "":
			return nil, fmt.Errorf("ratelimit: limit %d has no scope", i)
		case lim.RequestsPerMinute < 0 || lim.TokensPerMinute < 0 || lim.MaxConcurrent < 0 ||
			lim.MonthlyBudget < 0 || lim.MaxRequests < 0:
			return nil, fmt.Errorf("ratelimit: limit of %s is negative", lim.Scope)
		case seen[lim.Scope]:
			return nil, fmt.Errorf("ratelimit: scope %s given twice", lim.Scope)
		case i > 0 && lim.group() != limits[0].group():
			return nil, fmt.Errorf("ratelimit: scopes %s and %s are in different groups (%s, %s); one call must stay in one group",
				limits[0].Scope, lim.Scope, limits[0].group(), lim.group())
		}
		seen[lim.Scope] = true
		if uses(lim) {
			c.limits = append(c.limits, lim)
		}
	}
	return c, nil
}

func usesAdmit(l Limit) bool {
	return l.RequestsPerMinute > 0 || l.MaxConcurrent > 0 || l.MonthlyBudget > 0 || l.MaxRequests > 0
}

func usesReserve(l Limit) bool { return l.TokensPerMinute > 0 || l.MonthlyBudget > 0 }

// limitOf returns lim's bound of kind k (0: unlimited).
func limitOf(lim Limit, k Kind) int64 {
	switch k {
	case KindRequests:
		return lim.RequestsPerMinute
	case KindTokens:
		return lim.TokensPerMinute
	case KindConcurrency:
		return lim.MaxConcurrent
	case KindBudget:
		return lim.MonthlyBudget
	case KindLifetime:
		return lim.MaxRequests
	}
	return 0
}

// An Admission is an admitted request: it holds a concurrency slot until
// [Admission.Done], or until its lease ends ([Options.Lease]) if it is not
// renewed ([Admission.Renew]). A nil *Admission is valid and holds nothing.
type Admission struct {
	l        *Limiter
	id       string
	b        backend // the backend holding the slots; nil: nothing charged (no limit, or failed open)
	conc     []Limit // the limits whose concurrency slot this holds
	requests Status
	done     atomic.Bool
	renewed  atomic.Int64 // when the lease was last set, Unix ns on Options.Now
}

func newAdmission(l *Limiter, id string, b backend) *Admission {
	a := &Admission{l: l, id: id, b: b}
	a.renewed.Store(l.o.Now().UnixNano())
	return a
}

// Requests returns the request-rate Status of the admission, for the
// x-ratelimit-*-requests headers.
func (a *Admission) Requests() Status {
	if a == nil {
		return Status{}
	}
	return a.requests
}

// Done releases the admission's concurrency slot. Only the first call does
// anything. It ignores ctx's cancellation, so an aborted request's context
// will do, and is bounded by [Options.Timeout]. If Redis cannot be reached the
// release is retried when it is back (and the slot's lease ends it anyway).
func (a *Admission) Done(ctx context.Context) {
	if a == nil || a.b == nil || len(a.conc) == 0 || a.done.Swap(true) {
		return
	}
	a.b.release(context.WithoutCancel(ctx), a.conc, a.id)
}

// Renew keeps the admission's concurrency slots for a full [Options.Lease]
// from now, so that a request that outlives the lease — a long stream — keeps
// its slot and the limit holds. Call it while the request lives, at least
// every Lease/3; it may be called as often as convenient (on every response
// chunk): it reaches the backend only once a third of the lease has passed
// since the slot was taken or last renewed, and otherwise returns nil at
// once. It does nothing after [Admission.Done], for a nil admission or one
// without a slot. An error wraps [ErrLeaseEnded] when a slot's lease had
// already ended (the request goes on without it), or [ErrUnavailable] when
// Redis could not be reached (the lease stands; the next Renew tries again).
func (a *Admission) Renew(ctx context.Context) error {
	if a == nil || a.b == nil || len(a.conc) == 0 || a.done.Load() {
		return nil
	}
	now := a.l.o.Now()
	if now.Sub(time.Unix(0, a.renewed.Load())) < a.l.o.Lease/3 {
		return nil
	}
	err := a.b.renew(ctx, a.conc, a.id)
	if err == nil || errors.Is(err, ErrLeaseEnded) {
		a.renewed.Store(now.UnixNano())
	}
	return err
}

// Admit decides, at a request's headers and atomically across all limits
// (all or nothing), whether the request may start: it checks lifetime caps,
// exhausted budgets, concurrency and requests per minute, then counts one
// request against the lifetime and per-minute limits and takes a concurrency
// slot. A refusal is a *[LimitError] (the first by kind: lifetime, budget,
// concurrency, requests); an error wrapping [ErrUnavailable] means the
// backend failed for a kind that fails closed.
func (l *Limiter) Admit(ctx context.Context, limits []Limit) (*Admission, error) {
	c, err := prepare(limits, usesAdmit)
	if err != nil {
		return nil, err
	}
	if len(c.limits) == 0 {
		return newAdmission(l, "", nil), nil
	}
	a, err := l.b.admit(ctx, c)
	l.countDenial(err)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// A Reservation is tokens and cost reserved for one request until it is
// settled. A nil *Reservation is valid and holds nothing.
type Reservation struct {
	id      string
	b       backend // the backend holding the charge; nil: nothing charged
	limits  []Limit // the limits charged
	tokens  int64   // reserved
	cost    int64   // reserved
	month   string  // "2006-01" the cost was charged to
	status  Status
	settled atomic.Bool
}

// Tokens returns the token-rate Status right after the reservation, for the
// x-ratelimit-*-tokens headers.
func (r *Reservation) Tokens() Status {
	if r == nil {
		return Status{}
	}
	return r.status
}

// Reserve charges, at a request's body and atomically across all limits,
// tokens against tokens per minute and cost micro-USD against the month's
// budget. A request larger than a whole limit is refused at once, with
// RetryAfter 0; otherwise a refusal says when the window will have room.
// Errors are as for [Limiter.Admit].
func (l *Limiter) Reserve(ctx context.Context, limits []Limit, tokens, cost int64) (*Reservation, error) {
	if tokens < 0 || cost < 0 {
		return nil, fmt.Errorf("ratelimit: negative reservation (%d tokens, %d micro-USD)", tokens, cost)
	}
	c, err := prepare(limits, usesReserve)
	if err != nil {
		return nil, err
	}
	if len(c.limits) == 0 {
		return &Reservation{}, nil
	}
	for _, k := range [...]Kind{KindBudget, KindTokens} {
		for _, lim := range c.limits {
			n, amount := limitOf(lim, k), tokens
			if k == KindBudget {
				amount = cost
			}
			if n > 0 && amount > n {
				err := &LimitError{Kind: k, Scope: lim.Scope, Limit: n}
				l.countDenial(err)
				return nil, err
			}
		}
	}
	r, err := l.b.reserve(ctx, c, tokens, cost)
	l.countDenial(err)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Settle replaces the reservation with what the request really used: less
// releases the difference, more charges the overage (a request whose window
// entry has already expired is charged the overage now). A request that
// failed or was aborted settles with what it used, maybe 0. Only the first
// call counts. Like [Admission.Done] it ignores ctx's cancellation. An error
// wraps [ErrUnavailable]: Redis could not be updated and the reservation
// stands as reserved (tokens leave the window within a minute).
func (r *Reservation) Settle(ctx context.Context, tokens, cost int64) error {
	if r == nil || r.b == nil || r.settled.Swap(true) {
		return nil
	}
	if tokens < 0 {
		tokens = 0
	}
	if cost < 0 {
		cost = 0
	}
	return r.b.settle(context.WithoutCancel(ctx), r, tokens, cost)
}

// unavailable is the error of a call refused because kind fails closed.
func unavailable(k Kind, scope string, cause error) error {
	return fmt.Errorf("ratelimit: %w: %s limit of %s fails closed: %w", ErrUnavailable, k, scope, cause)
}

func (l *Limiter) countDenial(err error) {
	var le *LimitError
	if errors.As(err, &le) {
		l.metrics.denied(le.Kind)
	}
}

// A seedNeed is a counter a backend lacks.
type seedNeed struct {
	limit int // index into call.limits
	kind  Kind
	month string // KindBudget: the month, "2006-01"
}

// A seedValue is the answer to a seedNeed: skip means the Seed failed and the
// kind fails open or local, so the call goes on without that counter.
type seedValue struct {
	n    int64
	skip bool
}

// seed resolves needs with Options.Seed, one call per counter however many
// requests wait for it.
func (l *Limiter) seed(ctx context.Context, c *call, needs []seedNeed) ([]seedValue, error) {
	out := make([]seedValue, len(needs))
	if l.o.Seed == nil {
		return out, nil
	}
	for i, nd := range needs {
		scope := c.limits[nd.limit].Scope
		var since time.Time
		if nd.kind == KindBudget {
			since = monthStart(nd.month)
		}
		key := string(nd.kind) + "\x00" + nd.month + "\x00" + scope
		v, err, _ := l.seeds.Do(key, func() (any, error) {
			return l.o.Seed(ctx, nd.kind, scope, since)
		})
		if err != nil {
			if l.modes[nd.kind] == FailClosed {
				return nil, unavailable(nd.kind, scope, fmt.Errorf("seed: %w", err))
			}
			l.log.Warn().Err(err).Str("kind", string(nd.kind)).Str("scope", scope).
				Msg("rate-limit seed failed; limit skipped for this request")
			out[i] = seedValue{skip: true}
			continue
		}
		out[i] = seedValue{n: max(v.(int64), 0)}
	}
	return out, nil
}

// monthOf returns the UTC calendar month of t as "2006-01".
func monthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// monthStart is the inverse of monthOf.
func monthStart(month string) time.Time {
	t, err := time.Parse("2006-01", month)
	if err != nil {
		return time.Time{}
	}
	return t
}

// restrictive returns the more restrictive of two statuses.
func restrictive(a, b Status) Status {
	switch {
	case a.Limit == 0:
		return b
	case b.Limit == 0:
		return a
	case b.Remaining < a.Remaining, b.Remaining == a.Remaining && b.Reset > a.Reset:
		return b
	}
	return a
}
