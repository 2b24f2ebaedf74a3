package extproc

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBufferBudget(t *testing.T) {
	b := newBufferBudget(100, prometheus.NewRegistry())
	if !b.take("x", 60) || b.take("x", 41) || !b.take("x", 40) {
		t.Fatal("takes up to the limit, not beyond")
	}
	b.give(100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 50 {
		wg.Go(func() {
			if b.take("x", 10) {
				mu.Lock()
				taken++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if taken != 10 || b.used.Load() != 100 || b.peak.Load() != 100 {
		t.Fatalf("%d takes of 10 fit a budget of 100 (used %d, peak %d), want 10", taken, b.used.Load(), b.peak.Load())
	}
	var unlimited *bufferBudget
	if !unlimited.take("x", 1<<40) {
		t.Error("a nil budget refused")
	}
}
