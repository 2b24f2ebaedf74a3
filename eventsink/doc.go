// Package eventsink will hold usage and audit events: the event schema, the
// bounded asynchronous pipeline the request path never waits on, offline
// tiktoken counting, the JSONL and Redis Stream sinks and the dispatcher that
// delivers to Lunary, Helicone and webhooks. The ext_proc server will emit one
// event per request from its stream's finish step.
package eventsink
