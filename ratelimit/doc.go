// Package ratelimit enforces per-scope limits — requests per minute, tokens
// per minute, concurrent requests, a monthly USD budget and a lifetime
// request cap — exactly, across replicas when the counts live in Redis.
//
// A scope is a public id, a [Scope] such as [ProjectScope]("proj_123") or
// [TokenScope]("tok_456"), written "project:proj_123" or "token:tok_456" by
// [Scope.String] alone; a [Limit] gives one scope's bounds, 0 meaning
// unlimited. The ext_proc server calls, per request:
//
//	request headers   Limiter.Admit     lifetime, budget not yet spent, concurrency, requests/min;
//	                                    counts the request, takes a concurrency slot
//	request body      Limiter.Reserve   tokens/min and budget: the worst-case estimate
//	response end      Reservation.Settle  the real usage replaces the estimate
//	while it streams  Admission.Renew   keeps the slot past its lease
//	stream end        Admission.Done    frees the slot (also for aborted requests)
//
// Each call covers all the limits of a request (its project's and its
// token's) at once and is all or nothing: a refusal by one scope charges no
// other. A refusal is a *[LimitError] whose RetryAfter says when trying again
// can succeed (0 when it cannot: budget, lifetime, a request larger than a
// whole limit). [Status] values feed OpenAI's x-ratelimit-* headers.
//
// # Algorithms, and why
//
// Requests per minute use a sliding-window log: every admitted request is an
// entry stamped with its time, and a request is admitted when fewer than the
// limit are less than a minute old. It is exact over every 60-second span. A
// fixed window (a counter per clock minute) lets through twice the limit
// across a boundary; a sliding-window counter (two fixed windows, weighted)
// and GCRA/token buckets are O(1) but approximate counts or allow bursts
// beyond "N in any minute". The log costs memory per request in the window,
// which for per-minute limits of API requests is small. Retry-after is when
// enough old entries will have left; the header's reset is when the oldest
// leaves (the next slot frees).
//
// Tokens per minute use the same log, each entry carrying its amount
// ("id:tokens"), plus a running sum so that a check costs O(expired entries),
// not O(window). Reserve-then-settle needs entries, not a counter: Settle
// rewrites its entry's amount at the same timestamp, releasing what was not
// used or charging an overage (charged now if the entry already left the
// window). A reservation larger than the whole limit is refused at once.
//
// Concurrency is a set of in-flight request ids, each with a lease end
// ([Options.Lease], default 10 minutes): Done removes the id, and a replica
// that dies before Done loses its slots when their leases end. A request may
// outlive the lease — a stream has no overall deadline in envoy.yaml, only
// a 600 s idle timeout — so the caller renews it while the request lives:
// the ext_proc stream calls [Admission.Renew] on its response messages,
// which reaches the backend once per Lease/3 and sets the lease end to a
// full lease from then.
// A slot whose lease ended before its renewal is not taken again (Renew
// reports [ErrLeaseEnded]): another request may hold it. A stream gets
// messages only when Envoy sends some, so the lease must also exceed the
// longest silence within a response (the wait for a first token).
//
// The budget is a micro-USD counter per scope per calendar month (UTC),
// the month computed from the backend's clock. Admit refuses once spent >=
// budget; Reserve refuses when spent + cost > budget; Settle adds the
// difference between real and estimated cost, to the month it was reserved
// in. The lifetime cap is a plain counter, checked and incremented by Admit.
//
// # Redis
//
// [NewRedis] runs each operation as one Lua script (lua/*.lua, EVALSHA with
// EVAL fallback) that reads Redis's clock (TIME), never the callers', so
// replicas with skewed clocks share one timeline, and does the checks and
// the writes of all limits of a call atomically. Keys are
//
//	<prefix>{<group>}:<scope>:<counter>   e.g. llmproxy:rl:{project:p1}:token:t1:req
//
// with counters req, conc, life, budget, tok and toksum, and
//
//	<prefix>{<group>}:call:<id>
//
// for a call's record (see When Redis fails). The group
// ([Limit.Group], default the scope) is a hash tag: on Redis Cluster all keys
// of a group share a slot, which a multi-key script requires. A call's limits
// must therefore share one group — the ext_proc server puts a token's limits
// in its project's group, since a token belongs to one project — and a call
// that mixes groups is an error on every backend, so code that works on one
// Redis keeps working on a cluster. Keys hold scopes and random call ids,
// never secrets, and all expire: logs a minute after their last entry,
// in-flight sets after their last lease, budgets after 40 days, lifetime
// counts after 30, call records after 5 minutes, tombstones after an hour.
//
// Counters the backend does not have (first use, a flushed or replaced
// Redis, a new month) are initialised from [Options.Seed]: the store's
// request count for a lifetime cap, the month's recorded cost for a budget.
//
// # When Redis fails
//
// Every Redis call is bounded by [Options.Timeout] (default 50ms; the client
// must have ContextTimeoutEnabled). On a failure the limiter turns degraded:
// the llm_proxy_ratelimit_degraded gauge is 1, llm_proxy_ratelimit_backend_errors_total
// counts the failures, and one warning is logged for the transition. While
// degraded, calls do not touch Redis at all — no request waits for a dead
// server — and each kind of limit follows its [FailureMode]:
//
//	closed  refuse: the error wraps [ErrUnavailable]
//	open    allow without counting (no Status)
//	local   count in an in-process limiter, per replica (the memory backend)
//
// Defaults ([DefaultFailureModes]): requests, tokens, concurrency and
// lifetime fail local: with N replicas they admit up to N times their
// limits for the outage, which protects upstream quotas and tenants from
// each other without turning a Redis outage into an API outage. The budget
// fails closed: it is money, an overrun cannot be taken back, and a local
// count would start from its seed on every replica (or from zero without
// one), so N replicas could each spend the remaining budget again. Only
// projects that have a budget are refused; configure local to prefer
// availability.
//
// A probe owned by the Limiter checks Redis every second while degraded;
// when Redis answers, the releases and compensations queued meanwhile (see
// below) run, the gauge returns to 0 and "redis limiter recovered" is
// logged. Counts made locally during the outage are not copied to Redis.
// [Limiter.Close] stops the probe; what is still queued then is dropped.
//
// A call that times out has not necessarily failed: its script may be on its
// way and run later — after the request was answered by its failure mode,
// even after Redis answers again. Left alone it would hold a concurrency
// slot until its lease ends, count a request that was counted locally too
// (or refused), and charge a budget for a refused reservation. So every
// charge is keyed by its call's random id — the request-log and in-flight
// entries are the id, a token entry is "id:tokens" — and a call whose caller
// got no answer after its script may have been sent (Redis failed or was too
// slow, the caller gave up, the reply made no sense) is compensated: its id
// is queued, like a failed release (at most 10000; beyond that charges stand
// and slots end with their lease), and lua/compensate.lua runs for it when
// Redis answers — when the probe recovers, or at once if Redis is healthy
// (the caller gave up). Compensation is idempotent and exact:
//
//   - It first turns the call's record key into a tombstone ("undone", an
//     hour or Lease plus a minute, whichever is longer). Charge scripts look
//     the key up first and charge nothing for a tombstoned id, so a script
//     arriving after its compensation is void, and a second compensation of
//     the id does nothing. Undoing a call that never ran is a no-op: nothing
//     of its id exists.
//   - Request, slot and token entries are their own record: it removes the
//     id's entries (and their tokens from the running sum) if present.
//   - Lifetime counts and budgets leave no entry, so the charge script
//     writes what it charged in the call's record ("a 1 2": the lifetime
//     counts of limits 1 and 2; "r 2026-03 500 1": 500 micro-USD on limit 1's
//     March budget), for 5 minutes. Compensation decrements those counts and
//     gives the cost back to that month's budget.
//
// A record outlives any compensation unless Redis ran the script and then
// stayed unreachable from this replica for over 5 minutes: then the lifetime
// counts and budget stay charged (entries are still removed). The records
// cost one small key per budgeted reservation and per lifetime-capped
// admission, for 5 minutes.
//
// The same keys make a resent script harmless: go-redis sends a command again
// on a new connection when the first breaks before the reply, so a call can
// run twice. A charge script that finds its id's record or entries already
// there charges nothing more and answers as admitted or reserved.
//
// # Memory
//
// [NewMemory] keeps the same counters in process, under one mutex, on
// [Options.Now]'s clock: exact for a single replica, and the reference for
// the conformance suite in ratelimit/limittest, which both backends pass.
// The same memory backend is the local failure mode of [NewRedis]: there
// the Limiter's backend is Redis composed with it, a fallback that applies
// the failure modes when Redis fails.
//
// # Metrics
//
// Besides the two above: llm_proxy_ratelimit_denials_total{kind} and
// llm_proxy_ratelimit_fallbacks_total{kind,mode}. No label holds a scope.
package ratelimit
