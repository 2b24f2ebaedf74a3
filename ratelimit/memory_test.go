package ratelimit_test

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/ratelimit/limittest"
)

func newMemory(t *testing.T, o ratelimit.Options) *ratelimit.Limiter {
	l := ratelimit.NewMemory(o)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestMemory(t *testing.T) {
	t.Parallel()
	limittest.Run(t, newMemory)
}

func TestMemoryClock(t *testing.T) {
	t.Parallel()
	limittest.RunClock(t, newMemory)
}
