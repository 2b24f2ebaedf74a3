package cli

import (
	"runtime"
	"strings"
)

// shareCPUs sets how many threads run Go code at once (GOMAXPROCS) for a
// sidecar that shares its machine with Envoy, and returns the value in force.
//
// Go's default is every CPU the process may use. Envoy's workers spend more
// CPU per request than the sidecar does (make bench: about 1.8x), and each
// ext_proc message hands work between gRPC's goroutines: with a thread per
// CPU, every hand-off wakes an idle thread that spins looking for work on a
// CPU Envoy needs. With half the CPUs the sidecar spent 11-18% less CPU per
// request on this project's 2-core machine, and Envoy a little less too
// (docs/performance.md, an A/B in one make bench); throughput there is set
// by Envoy and moved within the noise. Half, at least one, is what the
// sidecar needs next to an Envoy with a worker per CPU: it spends about half
// of Envoy's CPU per request.
//
// Only Go's own default is changed: GOMAXPROCS set in the environment, or a
// CPU limit (a container's cgroup quota, which Go already reads and which is
// then below the CPU count), is kept as it is.
func shareCPUs(getenv func(string) string, numCPU int) int {
	current := runtime.GOMAXPROCS(0)
	if strings.TrimSpace(getenv("GOMAXPROCS")) != "" || current != numCPU {
		return current
	}
	half := max(1, numCPU/2)
	runtime.GOMAXPROCS(half)
	return half
}
