package ratelimit_test

import (
	"context"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

func TestZZDiag(t *testing.T) {
	dumped := false
	for i := 0; i < 12 && !dumped; i++ {
		srv := testenv.NewOwnedRedis(t)
		c := newClient(t, srv.URL())
		s := redis.NewScript("return 0")
		if err := s.Run(t.Context(), c, nil).Err(); err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		for j := 0; j < 3; j++ {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			start := time.Now()
			done := make(chan struct{})
			go func() {
				select {
				case <-done:
				case <-time.After(600 * time.Millisecond):
					if !dumped {
						dumped = true
						pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
					}
				}
			}()
			err := s.Run(ctx, c, nil).Err()
			close(done)
			cancel()
			t.Logf("run %d/%d: %v %v", i, j, time.Since(start), err)
		}
	}
}
