// Package dispatch delivers usage events from the Redis Stream the event sink
// writes to the places that want them: a JSONL file, a signed webhook,
// Lunary, Helicone and an OpenTelemetry collector (OTLP). It is what
// `llm-proxy dispatch` runs.
//
// # Backends
//
//   - [File] appends each event, as produced, to a JSONL file.
//   - [Webhook] POSTs each event, as produced, signed with HMAC-SHA-256.
//   - [Lunary] sends each event as an LLM run (start, then end or error) to
//     Lunary's run ingestion API.
//   - [Helicone] logs each event through Helicone's asynchronous logging API.
//   - [OTLP] exports each event as an OpenTelemetry span following the GenAI
//     semantic conventions, over OTLP gRPC or HTTP.
//
// When an event carries a capture of the request and response bodies (the
// project opted in; the bodies are redacted and capped before the event
// leaves the sidecar), Lunary gets the conversation as the run's input and
// output, Helicone the OpenAI request and response bodies, and the span an
// event with the input and output messages; each backend's doc says what
// exactly. A body the capture kept only as metadata (not JSON, or cut at the
// cap mid-document) sends only its content type, size and truncation flag.
// Without a capture, every backend sends usage, cost and metadata only; the
// client address is never sent to Lunary, Helicone or the collector.
//
// # Delivery contract
//
// Delivery is at least once. A [Dispatcher] reads the stream through a
// consumer group (created at "0" with MKSTREAM when missing, so entries
// written before the group existed are delivered too) and:
//
//   - hands each batch (XREADGROUP COUNT, BLOCK) to every [Backend];
//   - acknowledges (XACK) an entry only once every backend accepted it; a
//     backend that accepted an entry is not given it again while the others
//     are retried;
//   - retries failures with exponential backoff and jitter, bounded by
//     [Options.MaxBackoff], waking early when its context ends;
//   - counts attempts with Redis's own delivery counter (XPENDING "times
//     delivered"), so the count survives a crash: each retry re-claims the
//     entry to itself, which increments it;
//   - after [Options.MaxAttempts] deliveries, or at once on a permanent
//     failure (see [IsPermanent]), copies the entry to the dead-letter stream
//     (default "<stream>:dead") with the last error, and only then
//     acknowledges it;
//   - claims entries that sat unacknowledged on another consumer for
//     [Options.ClaimIdle] (XAUTOCLAIM), every [Options.ClaimInterval], so a
//     dispatcher killed mid-batch loses nothing: its batch is delivered again
//     by the next one;
//   - while it works on a batch, renews its claim on the batch's entries
//     (XCLAIM JUSTID, which resets their idle time without counting a
//     delivery), so a slow backend does not let a second dispatcher take
//     entries that are still being delivered.
//
// When its context ends, the dispatcher lets the delivery in flight finish
// for up to [Options.StopTimeout], acknowledges what was accepted, and
// leaves the rest pending for the next dispatcher to claim. It never
// acknowledges an entry a backend did not accept.
//
// # Idempotency
//
// Because an entry may be delivered more than once (a crash between a
// backend's answer and XACK, a retry of a partly accepted batch), every
// backend carries the event id so the receiver can drop repeats: the
// webhook and Helicone send it as the Idempotency-Key header; Helicone also
// gets a Helicone-Request-Id and Lunary a runId that are UUIDs derived from
// it (see [RunID]); the file backend writes it at the start of each line;
// the OTLP span has the event's trace and span ids (or ids derived from the
// event id), so a repeat is the same span again.
//
// # Stream entries
//
// Each stream entry has the fields "id" (the event id) and "event" (the
// event as JSON). An entry whose event is missing or not JSON, or that has
// no id, cannot be delivered and goes to the dead-letter stream at once.
package dispatch
