package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-proxy/llm-proxy/redisclient"
)

// The Lua scripts; lib.lua is prepended to each.
var (
	//go:embed lua/lib.lua
	luaLib string
	//go:embed lua/admit.lua
	luaAdmit string
	//go:embed lua/reserve.lua
	luaReserve string
	//go:embed lua/settle.lua
	luaSettle string
	//go:embed lua/release.lua
	luaRelease string
	//go:embed lua/renew.lua
	luaRenew string
	//go:embed lua/compensate.lua
	luaCompensate string
)

// Kind codes of the scripts' replies (see lib.lua).
var kindCodes = map[int64]Kind{1: KindRequests, 2: KindTokens, 3: KindConcurrency, 4: KindBudget, 5: KindLifetime}

var (
	// errDegraded is the cause given while calls skip a failing Redis.
	errDegraded = errors.New("redis limiter degraded, waiting for redis to come back")
	// errUndone is the cause given when a charge script finds its call
	// already compensated.
	errUndone = errors.New("call already compensated")
)

// redisBackend runs the scripts. Each call is one EVALSHA (EVAL when Redis
// lacks the script) bounded by Options.Timeout. Once Redis fails it is
// degraded: calls fail at once with a *backendError, for [fallback] to
// answer, until its probe sees Redis answer again.
type redisBackend struct {
	l *Limiter
	c redis.UniversalClient

	admitSrc, reserveSrc, settleSrc *redis.Script // charges
	relSrc, renewSrc                *redis.Script // concurrency slots
	compSrc                         *redis.Script // undoes a charge

	down    atomic.Bool   // degraded: calls skip Redis
	kick    chan struct{} // wakes the prober: down was set, or something was queued
	pending struct {
		sync.Mutex
		ops []pendingOp // releases and compensations, oldest first
	}

	stop context.CancelFunc // stops the probe
	wg   sync.WaitGroup     // the probe
}

// NewRedis returns a Limiter whose counts live in Redis, shared by every
// replica using the same client target and [Options.Prefix]: exact across
// replicas. c may be a single server, a Sentinel failover client or a
// Cluster (see the package documentation for keys and hash slots); build it
// with ContextTimeoutEnabled so that [Options.Timeout] bounds every call.
// While Redis fails, each kind follows its [FailureMode]; a probe started
// here checks for recovery every second until [Limiter.Close].
func NewRedis(c redis.UniversalClient, o Options) *Limiter {
	l := newLimiter(o)
	b := &redisBackend{
		l:          l,
		c:          c,
		admitSrc:   redis.NewScript(luaLib + luaAdmit),
		reserveSrc: redis.NewScript(luaLib + luaReserve),
		settleSrc:  redis.NewScript(luaLib + luaSettle),
		relSrc:     redis.NewScript(luaLib + luaRelease),
		renewSrc:   redis.NewScript(luaLib + luaRenew),
		compSrc:    redis.NewScript(luaLib + luaCompensate),
		kick:       make(chan struct{}, 1),
	}
	l.b = &fallback{l: l, primary: b, local: l.mem}
	if enabled, known := redisclient.ContextTimeoutEnabled(c); known && !enabled {
		l.log.Warn().Msg("redis client built without ContextTimeoutEnabled: a hung redis can stall rate-limit calls for the client's read timeout instead of " + l.o.Timeout.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	b.wg.Add(1)
	go b.probe(ctx)
	return l
}

func (b *redisBackend) degraded() bool { return b.down.Load() }

// close stops the probe and waits for it; what is still queued is dropped.
func (b *redisBackend) close() {
	b.stop()
	b.wg.Wait()
}

// base is the start of lim's keys: prefix, hash tag, scope.
func (b *redisBackend) base(lim Limit) string {
	return b.l.o.Prefix + "{" + lim.group() + "}:" + lim.Scope + ":"
}

// record is the key of c's record, in the hash slot of its limits (see
// lib.lua).
func (b *redisBackend) record(c *call) string {
	return b.l.o.Prefix + "{" + c.limits[0].group() + "}:call:" + c.id
}

// tombstoneTTL is how long a compensated call's tombstone lives: longer than
// its script can plausibly take to reach Redis (an hour), and than a slot's
// lease or a window entry it could have taken.
func tombstoneTTL(lease, window time.Duration) time.Duration {
	return max(minTombstoneTTL, lease+window)
}

// run runs script s, or fails at once while Redis is known to be down. A
// failure that is Redis's (not the caller giving up) marks the limiter
// degraded and comes back as a *backendError.
func (b *redisBackend) run(ctx context.Context, s *redis.Script, keys []string, args ...any) ([]any, error) {
	if b.down.Load() {
		return nil, &backendError{errDegraded}
	}
	cctx, cancel := context.WithTimeout(ctx, b.l.o.Timeout)
	defer cancel()
	v, err := s.Run(cctx, b.c, keys, args...).Result()
	if err == nil {
		if out, ok := v.([]any); ok {
			return out, nil
		}
		if _, ok := v.(int64); ok {
			return []any{v}, nil
		}
		err = fmt.Errorf("unexpected script reply %T", v)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ratelimit: %w", context.Cause(ctx))
	}
	b.markDegraded(err)
	return nil, &backendError{err}
}

// charge runs a charge script of call c (tokens: the amount a reservation
// reserves, "" for an admission). If the caller gets no answer after the
// script may have been sent — Redis failed or was too slow, the caller gave
// up — Redis may have run it or may still, so c is queued for compensation.
func (b *redisBackend) charge(ctx context.Context, c *call, tokens string, s *redis.Script, keys []string, args []any) ([]any, error) {
	if b.down.Load() {
		return nil, &backendError{errDegraded}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ratelimit: %w", context.Cause(ctx))
	}
	reply, err := b.run(ctx, s, keys, args...)
	if err != nil {
		b.compensate(c, tokens)
	}
	return reply, err
}

// compensate queues the undoing of whatever call c charged on Redis; see
// compensate.lua.
func (b *redisBackend) compensate(c *call, tokens string) {
	keys := make([]string, 0, 1+6*len(c.limits))
	keys = append(keys, b.record(c))
	for _, lim := range c.limits {
		base := b.base(lim)
		keys = append(keys, base+"req", base+"conc", base+"life", base+"tok", base+"toksum", base+"budget")
	}
	ttl := tombstoneTTL(b.l.o.Lease, b.l.window)
	b.queue(pendingOp{s: b.compSrc, keys: keys, args: []any{c.id, tokens, b.l.window.Microseconds(), ttl.Milliseconds()}})
}

// seedArgs are the seed arguments of n limits (lifetime, budget month,
// budget): empty, so the script asks for the seeds it needs, when there is a
// Seed to ask; else zero seeds for any month ("*").
func (b *redisBackend) seedArgs(n int) [][3]string {
	s := make([][3]string, n)
	if b.l.o.Seed == nil {
		for i := range s {
			s[i] = [3]string{"0", "*", "0"}
		}
	}
	return s
}

// applySeeds resolves the needs listed in a {2, ...} reply into seeds
// (lifetime, budget month, budget).
func (b *redisBackend) applySeeds(ctx context.Context, c *call, reply []any, seeds [][3]string) error {
	var needs []seedNeed
	for i := 1; i+2 < len(reply); i += 3 {
		idx, k, month := toInt(reply[i]), kindCodes[toInt(reply[i+1])], toString(reply[i+2])
		if idx < 1 || int(idx) > len(c.limits) || k == "" {
			return &backendError{fmt.Errorf("bad seed request in script reply %v", reply)}
		}
		needs = append(needs, seedNeed{limit: int(idx) - 1, kind: k, month: month})
	}
	vals, err := b.l.seed(ctx, c, needs)
	if err != nil {
		return err
	}
	for j, nd := range needs {
		v := strconv.FormatInt(vals[j].n, 10)
		if vals[j].skip {
			v = "-"
		}
		switch nd.kind {
		case KindLifetime:
			seeds[nd.limit][0] = v
		case KindBudget:
			seeds[nd.limit][1], seeds[nd.limit][2] = nd.month, v
		}
	}
	return nil
}

// refusal turns a {1, limit, kind, retry µs} reply into a *LimitError.
func refusal(c *call, reply []any) error {
	if len(reply) < 4 {
		return &backendError{fmt.Errorf("bad refusal in script reply %v", reply)}
	}
	idx, k := toInt(reply[1]), kindCodes[toInt(reply[2])]
	if idx < 1 || int(idx) > len(c.limits) || k == "" {
		return &backendError{fmt.Errorf("bad refusal in script reply %v", reply)}
	}
	lim := c.limits[idx-1]
	le := &LimitError{Kind: k, Scope: lim.Scope, Limit: limitOf(lim, k),
		RetryAfter: time.Duration(toInt(reply[3])) * time.Microsecond}
	if k == KindConcurrency {
		le.RetryAfter = ConcurrencyRetryAfter
	}
	return le
}

// seedRounds bounds the round trips for seeds (a month may turn meanwhile).
const seedRounds = 4

// notAccepted handles a charging script's reply other than 0 (accepted): nil
// after seeding the counters the script asked for, so the caller runs it
// again, else the error to return. tokens is what charge was given, for
// [redisBackend.compensate]; what names the script in errors.
func (b *redisBackend) notAccepted(ctx context.Context, c *call, tokens, what string, reply []any, seeds [][3]string) error {
	switch code(reply) {
	case 1:
		return refusal(c, reply)
	case 2:
		return b.applySeeds(ctx, c, reply, seeds)
	case 3:
		return &backendError{errUndone}
	default:
		return b.badReply(c, tokens, what, reply)
	}
}

// badReply undoes a charge whose script reply it cannot read and returns
// the error for it.
func (b *redisBackend) badReply(c *call, tokens, what string, reply []any) error {
	b.compensate(c, tokens)
	return &backendError{fmt.Errorf("bad %s reply %v", what, reply)}
}

// replyStatus is the [Status] of a limit from its remaining and reset (µs)
// fields in a script reply.
func replyStatus(limit int64, remaining, reset any) Status {
	return Status{
		Limit:     limit,
		Remaining: max(toInt(remaining), 0),
		Reset:     time.Duration(toInt(reset)) * time.Microsecond,
	}
}

func (b *redisBackend) admit(ctx context.Context, c *call) (*Admission, error) {
	keys := make([]string, 0, 4*len(c.limits)+1)
	for _, lim := range c.limits {
		base := b.base(lim)
		keys = append(keys, base+"req", base+"conc", base+"life", base+"budget")
	}
	keys = append(keys, b.record(c))
	seeds := b.seedArgs(len(c.limits))
	args := make([]any, 0, 3+7*len(c.limits))
	for range seedRounds {
		args = append(args[:0], b.l.window.Microseconds(), b.l.o.Lease.Microseconds(), c.id)
		for i, lim := range c.limits {
			args = append(args, lim.RequestsPerMinute, lim.MaxConcurrent, lim.MaxRequests, lim.MonthlyBudget,
				seeds[i][0], seeds[i][1], seeds[i][2])
		}
		reply, err := b.charge(ctx, c, "", b.admitSrc, keys, args)
		if err != nil {
			return nil, err
		}
		if code(reply) != 0 {
			if err := b.notAccepted(ctx, c, "", "admit", reply, seeds); err != nil {
				return nil, err
			}
			continue
		}
		if len(reply) != 2+2*len(c.limits) {
			return nil, b.badReply(c, "", "admit", reply)
		}
		a := newAdmission(b.l, c.id, b)
		for i, lim := range c.limits {
			if lim.RequestsPerMinute > 0 {
				a.requests = restrictive(a.requests, replyStatus(lim.RequestsPerMinute, reply[2+2*i], reply[3+2*i]))
			}
			if lim.MaxConcurrent > 0 {
				a.conc = append(a.conc, lim)
			}
		}
		return a, nil
	}
	return nil, fmt.Errorf("ratelimit: counters of %s kept changing while being seeded", c.limits[0].Scope)
}

func (b *redisBackend) concKeys(conc []Limit) []string {
	keys := make([]string, len(conc))
	for i, lim := range conc {
		keys[i] = b.base(lim) + "conc"
	}
	return keys
}

// release ends the slots of request id, or queues that for when Redis is back.
func (b *redisBackend) release(ctx context.Context, conc []Limit, id string) {
	keys := b.concKeys(conc)
	if _, err := b.run(ctx, b.relSrc, keys, id); err != nil {
		b.queue(pendingOp{s: b.relSrc, keys: keys, args: []any{id}})
	}
}

// renew extends the slots of request id to a full lease from now.
func (b *redisBackend) renew(ctx context.Context, conc []Limit, id string) error {
	reply, err := b.run(ctx, b.renewSrc, b.concKeys(conc), id, b.l.o.Lease.Microseconds())
	if err != nil {
		var be *backendError
		if errors.As(err, &be) {
			return fmt.Errorf("ratelimit: renew: %w: %w", ErrUnavailable, be.err)
		}
		return err
	}
	if lost := toInt(reply[0]); lost > 0 {
		return fmt.Errorf("ratelimit: renew: %w for %d of %d slots", ErrLeaseEnded, lost, len(conc))
	}
	return nil
}

func (b *redisBackend) reserve(ctx context.Context, c *call, tokens, cost int64) (*Reservation, error) {
	keys := make([]string, 0, 3*len(c.limits)+1)
	for _, lim := range c.limits {
		base := b.base(lim)
		keys = append(keys, base+"tok", base+"toksum", base+"budget")
	}
	keys = append(keys, b.record(c))
	amount := strconv.FormatInt(tokens, 10)
	seeds := b.seedArgs(len(c.limits))
	args := make([]any, 0, 4+4*len(c.limits))
	for range seedRounds {
		args = append(args[:0], b.l.window.Microseconds(), c.id, tokens, cost)
		for i, lim := range c.limits {
			args = append(args, lim.TokensPerMinute, lim.MonthlyBudget, seeds[i][1], seeds[i][2])
		}
		reply, err := b.charge(ctx, c, amount, b.reserveSrc, keys, args)
		if err != nil {
			return nil, err
		}
		if code(reply) != 0 {
			if err := b.notAccepted(ctx, c, amount, "reserve", reply, seeds); err != nil {
				return nil, err
			}
			continue
		}
		if len(reply) != 2+3*len(c.limits) {
			return nil, b.badReply(c, amount, "reserve", reply)
		}
		r := &Reservation{id: c.id, b: b, tokens: tokens, cost: cost, month: toString(reply[1])}
		for i, lim := range c.limits {
			if lim.TokensPerMinute > 0 {
				r.status = restrictive(r.status, replyStatus(lim.TokensPerMinute, reply[2+3*i], reply[3+3*i]))
			}
			if toInt(reply[4+3*i]) == 0 {
				lim.MonthlyBudget = 0 // not charged, so not to be settled
			}
			r.limits = append(r.limits, lim)
		}
		return r, nil
	}
	return nil, fmt.Errorf("ratelimit: counters of %s kept changing while being seeded", c.limits[0].Scope)
}

func (b *redisBackend) settle(ctx context.Context, r *Reservation, tokens, cost int64) error {
	keys := make([]string, 0, 3*len(r.limits))
	args := make([]any, 0, 6+2*len(r.limits))
	args = append(args, r.id, r.tokens, tokens, r.month, cost-r.cost, b.l.window.Microseconds())
	for _, lim := range r.limits {
		base := b.base(lim)
		keys = append(keys, base+"tok", base+"toksum", base+"budget")
		args = append(args, flag(lim.TokensPerMinute > 0), flag(lim.MonthlyBudget > 0))
	}
	if _, err := b.run(ctx, b.settleSrc, keys, args...); err != nil {
		var be *backendError
		if errors.As(err, &be) {
			return fmt.Errorf("ratelimit: settle: %w: %w", ErrUnavailable, be.err)
		}
		return err
	}
	return nil
}

// code is the first element of a script's reply, -1 if there is none.
func code(reply []any) int64 {
	if len(reply) == 0 {
		return -1
	}
	return toInt(reply[0])
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ping checks that Redis runs scripts again, bypassing the degraded state.
func (b *redisBackend) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.l.o.Timeout)
	defer cancel()
	return b.relSrc.Run(ctx, b.c, []string{b.l.o.Prefix + "{probe}:conc"}, "probe").Err()
}

// replay runs the queued operations, oldest first, bypassing the degraded
// state; it stops at the first failure, keeping the rest. Each is
// idempotent, so one that failed after Redis ran it is harmless to repeat.
func (b *redisBackend) replay(ctx context.Context) error {
	b.pending.Lock()
	todo := b.pending.ops
	b.pending.ops = nil
	b.pending.Unlock()
	for i, op := range todo {
		cctx, cancel := context.WithTimeout(ctx, b.l.o.Timeout)
		err := op.s.Run(cctx, b.c, op.keys, op.args...).Err()
		cancel()
		if err != nil {
			b.pending.Lock()
			b.pending.ops = append(todo[i:], b.pending.ops...)
			b.pending.Unlock()
			return err
		}
	}
	return nil
}

// A pendingOp is a script to run once Redis answers: the release of a
// concurrency slot that failed, or the compensation of a call whose caller
// got no answer.
type pendingOp struct {
	s    *redis.Script
	keys []string
	args []any
}

// queue keeps op for the probe to run when Redis answers (at once if it
// does now).
func (b *redisBackend) queue(op pendingOp) {
	b.pending.Lock()
	if len(b.pending.ops) < maxPending {
		b.pending.ops = append(b.pending.ops, op)
	}
	b.pending.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// markDegraded records a Redis failure; the first after a healthy spell logs
// a warning and wakes the probe.
func (b *redisBackend) markDegraded(err error) {
	l := b.l
	l.metrics.backendError()
	if b.down.CompareAndSwap(false, true) {
		l.metrics.setDegraded(true)
		l.log.Warn().Err(err).Str("timeout", l.o.Timeout.String()).
			Msg("redis limiter degraded; applying each limit's failure mode")
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// probe waits to be kicked: if Redis is healthy it runs what is queued (a
// call whose caller gave up, or queued while a recovery finished); if the
// limiter degraded, it checks Redis every probeInterval, and once Redis
// answers and the queue went through, calls use it again.
func (b *redisBackend) probe(ctx context.Context) {
	defer b.wg.Done()
	l := b.l
	t := time.NewTimer(probeInterval)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		if !b.down.Load() {
			if err := b.replay(ctx); err != nil && ctx.Err() == nil {
				b.markDegraded(err)
			}
		}
		for b.down.Load() {
			t.Reset(probeInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			err := b.ping(ctx)
			if err == nil {
				err = b.replay(ctx)
			}
			if err != nil {
				if ctx.Err() == nil {
					l.metrics.backendError()
				}
				continue
			}
			b.down.Store(false)
			l.metrics.setDegraded(false)
			l.log.Info().Msg("redis limiter recovered")
		}
	}
}

func toInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return ""
}
