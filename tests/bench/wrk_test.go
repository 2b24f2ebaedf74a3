package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// load is one kind of request, as wrk sends it.
type load struct {
	method, path, body string
	headers            map[string]string
}

// wrkResult is what one wrk run measured (its Lua done() hook prints it).
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Non2xx     int64   `json:"non2xx"` // status above 399
	Errors     int64   `json:"errors"`
	P50US      float64 `json:"p50_us"`
	P99US      float64 `json:"p99_us"`
}

func (r wrkResult) rps() float64 { return float64(r.Requests) / (float64(r.DurationUS) / 1e6) }

// wrkScript writes the Lua script that makes wrk send l and report its
// figures as one JSON line after "BENCH ".
func wrkScript(b *testing.B, l load) string {
	b.Helper()
	var s strings.Builder
	// Long brackets: the body needs no escaping.
	fmt.Fprintf(&s, "wrk.method = %q\nwrk.body = [==[%s]==]\n", l.method, l.body)
	keys := make([]string, 0, len(l.headers))
	for k := range l.headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&s, "wrk.headers[%q] = %q\n", k, l.headers[k])
	}
	s.WriteString(`
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50_us":%.1f,"p99_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`)
	// No response() hook: wrk would parse every answer in Lua. Its
	// summary.errors.status counts the answers with a status above 399.
	path := filepath.Join(b.TempDir(), "load.lua")
	if err := os.WriteFile(path, []byte(s.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// runWrk runs wrk closed-loop: conns connections on two threads for d.
func runWrk(b *testing.B, script, url string, conns int, d time.Duration) wrkResult {
	b.Helper()
	cmd := exec.Command("wrk", "-t", "2", "-c", fmt.Sprint(conns), "-d", fmt.Sprintf("%.0fs", d.Seconds()),
		"--timeout", "10s", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "BENCH "); ok {
			var r wrkResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				b.Fatalf("wrk output %q: %v", rest, err)
			}
			if r.Non2xx+r.Errors > 0 {
				b.Fatalf("wrk %s: %d non-2xx answers and %d socket errors of %d\n%s", url, r.Non2xx, r.Errors, r.Requests, out)
			}
			return r
		}
	}
	b.Fatalf("wrk printed no result:\n%s", out)
	return wrkResult{}
}

// requireWrk fails the benchmark when wrk is missing: `make deps` installs it.
func requireWrk(b *testing.B) {
	b.Helper()
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk not found: run `make deps` (it installs Debian's wrk)")
	}
}
