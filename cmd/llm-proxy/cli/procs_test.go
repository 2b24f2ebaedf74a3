package cli

import (
	"runtime"
	"testing"
)

func TestShareCPUs(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	for _, tc := range []struct {
		name          string
		procs, numCPU int
		env           map[string]string
		want          int
	}{
		{"Go's default on 2 CPUs: one for the sidecar", 2, 2, nil, 1},
		{"Go's default on 16 CPUs: half", 16, 16, nil, 8},
		{"Go's default on 3 CPUs: rounded down", 3, 3, nil, 1},
		{"one CPU stays one", 1, 1, nil, 1},
		{"GOMAXPROCS set by the operator is kept", 2, 2, map[string]string{"GOMAXPROCS": "2"}, 2},
		{"a CPU limit below the CPU count is kept", 4, 16, nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.procs)
			if got := shareCPUs(env(tc.env), tc.numCPU); got != tc.want {
				t.Errorf("shareCPUs = %d, want %d", got, tc.want)
			}
			if got := runtime.GOMAXPROCS(0); got != tc.want {
				t.Errorf("GOMAXPROCS is %d, want %d", got, tc.want)
			}
		})
	}
}
