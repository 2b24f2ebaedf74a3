// Package redact removes secrets and a project's own patterns from captured
// request and response bodies before they leave the process in a usage
// event: whoever reads the events (a trace backend, an analyst) must not
// learn a key, and a project that captures prompts decides which personal
// data it would rather not ship.
//
// Two things are removed:
//
//   - always, whatever the project says and by a nil [*Redactor] too: OpenAI
//     API keys ("sk-…", including sk-proj-, sk-svcacct- and sk-admin- keys) and
//     the predecessor's "sk-" tokens our imported tokens keep, proxy tokens
//     ("llmp_…"), the token of a "Bearer <token>" credential, the value after
//     an "authorization" header or key in text, and the value of any JSON
//     member keyed "authorization" (or another credential key, see
//     [Redactor.JSON]);
//   - per project, the patterns given to [New]: a preset of [Presets]
//     ("email", "card_number", …) or "re:" and an RE2 regular expression.
//
// Each match is replaced by [Placeholder]. The shapes are deliberately a
// little wider than the secrets (an "sk-" word of eight characters is taken
// for a key): a word lost from a captured prompt costs nothing, a leaked key
// costs a rotation.
//
// # Redact after merge
//
// A pattern only matches text it can see whole. Callers redact a whole
// merged text — a request body, the one response a stream was merged into
// (package transcript) — never the chunks it arrived in, since a key split
// across two chunks is in neither. For the same reason, redact before
// cutting a body to a cap: a cut can leave the head of a key too short to be
// recognised (heads of fewer than eight characters after "sk-" survive).
// Inside a JSON document each string is redacted on its decoded text, so
// JSON escapes cannot hide a key, but a key split across two strings of a
// document is not found.
//
// A [Redactor] is immutable once built and safe for concurrent use; build one
// per pattern list and reuse it, since compiling costs more than redacting.
package redact
