// Package cachefilter will hold the response cache: tenant-scoped cache keys,
// the HTTP cache policy, memory and Redis backends, bounded capture of
// streamed responses and purge. The ext_proc server will look up entries in
// the request phases and store them at the end of the response body.
package cachefilter
