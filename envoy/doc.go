// Package envoy holds llm-proxy's Envoy configuration: envoy.yaml, a complete
// reference bootstrap (listener, /v1/ to OpenAI through the ext_proc filter,
// /manage/ to the management API and /admin/ to its web console, OpenAI-shaped
// local replies), and filter-snippet.yaml, the pieces users paste into an Envoy
// of their own.
//
// Both files are embedded. Bootstrap returns envoy.yaml as it is; Render
// returns it with addresses, ports and the upstream CA bundle replaced, which
// is how the end-to-end tests run the very same file against local fakes.
package envoy
