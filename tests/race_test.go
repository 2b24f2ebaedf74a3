//go:build race

package tests

// raceEnabled: the race detector slows the sidecar, Envoy's peer and the fake
// several times over; load tests scale their burst down by it so that what
// they prove (a bound, not a speed) does not turn into Envoy timeouts.
const raceEnabled = true
