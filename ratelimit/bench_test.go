package ratelimit_test

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// benchLimits are a request's usual pair: its project's limits and its
// token's, in the project's group. The limits are high enough never to
// refuse, so every iteration takes the full path (check, count, slot).
func benchLimits() []ratelimit.Limit {
	return []ratelimit.Limit{
		{Scope: "project:bench", Group: "project:bench", RequestsPerMinute: 1 << 40, MaxConcurrent: 1 << 20, MonthlyBudget: 1 << 50},
		{Scope: "token:bench", Group: "project:bench", RequestsPerMinute: 1 << 40, MaxRequests: 1 << 50},
	}
}

func benchBackends(b *testing.B) map[string]func(b *testing.B) *ratelimit.Limiter {
	return map[string]func(b *testing.B) *ratelimit.Limiter{
		"memory": func(b *testing.B) *ratelimit.Limiter { return ratelimit.NewMemory(ratelimit.Options{}) },
		"redis": func(b *testing.B) *ratelimit.Limiter {
			// A generous timeout: this measures the path through Redis, and a
			// busy machine must not turn it into a failure mode.
			return ratelimit.NewRedis(newClient(b, testenv.Redis(b)), ratelimit.Options{Prefix: testPrefix(), Timeout: suiteTimeout})
		},
	}
}

// BenchmarkAdmit measures Admit + Done, the request-headers cost of limits.
func BenchmarkAdmit(b *testing.B) {
	for _, name := range []string{"memory", "redis"} {
		newLimiter := benchBackends(b)[name]
		b.Run(name, func(b *testing.B) {
			l := newLimiter(b)
			defer l.Close()
			limits := benchLimits()
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				a, err := l.Admit(ctx, limits)
				if err != nil {
					b.Fatal(err)
				}
				a.Done(ctx)
			}
			if l.Degraded() {
				b.Fatal("degraded")
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			l := newLimiter(b)
			defer l.Close()
			limits := benchLimits()
			ctx := b.Context()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a, err := l.Admit(ctx, limits)
					if err != nil {
						b.Error(err)
						return
					}
					a.Done(ctx)
				}
			})
			if l.Degraded() {
				b.Fatal("degraded")
			}
		})
	}
}

// BenchmarkReserveSettle measures Reserve + Settle, the request-body and
// end-of-response cost of token and budget limits.
func BenchmarkReserveSettle(b *testing.B) {
	for _, name := range []string{"memory", "redis"} {
		newLimiter := benchBackends(b)[name]
		b.Run(name, func(b *testing.B) {
			l := newLimiter(b)
			defer l.Close()
			limits := benchLimits()
			limits[0].TokensPerMinute = 1 << 50
			limits[1].TokensPerMinute = 1 << 50
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				r, err := l.Reserve(ctx, limits, 1000, 500)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Settle(ctx, 700, 350); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
