// Package ratelimit will hold the limiter: requests per minute, tokens per
// minute with reserve-and-settle, concurrency and USD budgets, with an
// in-memory backend for one instance and a Redis backend (atomic Lua on Redis
// time) for several. Until then the only limit is a token's lifetime
// max_requests, counted by authz.
//
// The ext_proc server will declare the small interface it needs (reserve,
// settle) and call it from the request-headers and request-body phases.
package ratelimit
