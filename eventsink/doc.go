// Package eventsink records what requests used.
//
// The usage roll-up ([Rollup]) sums settled requests per project, day, model
// and price-table version in memory and flushes the sums to the store in
// batches, which budgets and the usage API read. [BudgetMetrics] puts on
// /metrics how much of its monthly budget each project has used, from what
// the roll-up has flushed.
//
// Usage events are the per-request record: one [llmproxyv1.UsageEvent] per
// proxied request (forwarded, cache hit, denied, failed or aborted), built
// by the ext_proc server in its stream's finish step and handed to an
// [Emitter]. Emit never blocks: the emitter keeps a bounded queue and drops,
// counts and logs (at a limited rate) what does not fit, so the request path
// never waits on a sink. The emitter's Run loop, owned by main, writes the
// queue in batches to its [Sink]s — the JSONL file ([FileSink], with
// size-based rotation), a Redis Stream ([RedisStreamSink]) that the
// dispatcher reads, or stdout ([StdoutSink]). A failing sink is retried with
// backoff while the queue has room; when the queue is nearly full, and at
// shutdown, what it has not taken goes to its spill file instead. Every
// event lost for good is counted once, in llm_proxy_events_dropped_total.
//
// Every sink and the dispatcher use one JSON encoding of an event,
// [MarshalEvent] and [UnmarshalEvent]; [NewEventID] makes the event ids that
// consumers use as idempotency keys.
package eventsink
