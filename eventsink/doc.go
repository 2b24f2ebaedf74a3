// Package eventsink records what requests used. Today it holds the usage
// roll-up ([Rollup]): per project, day, model and price-table version, summed
// in memory and flushed to the store in batches, which budgets and the usage
// API read.
//
// It will also hold usage and audit events: the event schema, the
// bounded asynchronous pipeline the request path never waits on, offline
// tiktoken counting, the JSONL and Redis Stream sinks and the dispatcher that
// delivers to Lunary, Helicone and webhooks. The ext_proc server will emit one
// event per request from its stream's finish step.
package eventsink
