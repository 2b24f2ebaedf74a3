// Package cachefilter is the response cache: tenant-scoped keys, the HTTP
// cache policy, bounded capture of (streamed) responses, memory and Redis
// backends with purge, and coalescing of identical misses. The ext_proc
// server declares the small interface it needs and calls it in its phases.
//
// # Flow
//
// In the request phases (once the project and the body are known):
//
//	ok, maxAge := cachefilter.Lookupable(method, reqHeaders, project.CachePOST)
//	key, err := cachefilter.KeyFor(projectID, method, path, rawQuery, body, variant)
//	e, hit, err := cache.Get(ctx, projectID, key) // err: log it, serve as a miss
//	if !hit { leader, e, release = cache.Acquire(ctx, projectID, key, wait) }
//	// hit (or e != nil from Acquire): answer with an ImmediateResponse of
//	// e.Status, e.ImmediateHeaders(now) and e.Body, unless maxAge > 0 and
//	// e.Age(now) > maxAge.
//
// In the response phases of a leader: [Storable] on the response headers
// decides whether to capture; [NewCapture] or [NewStreamCapture] take a
// bounded copy of each chunk while it passes on unchanged; at end of stream
// [Capture.End], and if [Capture.Complete], [Cache.Set]. Then release() —
// always, also when nothing was stored (finish is the place). Forwarded
// responses carry Cache-Status [MissStatus].
//
// # Guarantees
//
//   - Scope: every key and every entry belongs to one project. [KeyFor] hashes
//     the project id in, and both backends store per project as well, so a
//     project can neither read nor purge another's entries.
//   - Key: [KeyFor] is the only key function, used for lookup, store and
//     purge by request. Only Accept and OpenAI-Beta vary
//     the key; Origin, User-Agent and the like do not.
//   - Completeness: only 200s ([Storable]), only bodies that reached their
//     end within the size limit, and for SSE only streams that dispatched
//     their [DONE] event ([Capture.Complete]). Aborted or truncated streams
//     are never stored.
//   - Secrets: entries keep only the headers of [StoredHeaders]; keys are
//     hashes and are never shown to clients.
//   - Failure: a Redis that is down or slow costs a lookup at most the
//     timeout; Get reports the error and the caller serves the request as a
//     miss. Failures count in llm_proxy_cache_backend_errors_total and
//     llm_proxy_cache_requests_total{result="error"}.
//   - Purge reports the entries really removed (expired ones do not count),
//     by key, by project, by path prefix ([Entry.Path], set by the caller)
//     or all.
//
// # Backends
//
// [NewMemory] keeps entries in an otter cache bounded by bytes, with
// per-entry expiry; it starts no goroutine. [NewRedis] keeps each entry as
// one key, <prefix>{<project>}:<key>, with a native TTL (SET PX) and a
// compact binary value, and a per-project index of entry paths in the same
// Cluster slot, updated with the entry in one script; purges SCAN by
// pattern, and [Cache.PurgePrefix] walks the index. Package cachetest is
// the conformance suite both pass.
package cachefilter
