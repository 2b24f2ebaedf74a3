// Package metric registers llm-proxy's Prometheus collectors the one way
// every package does: several components of a kind (limiters, caches,
// authorizers, emitters) may share a registry, so registering a collector
// whose series already exist returns the registered one instead of failing.
package metric

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector of
// the same type already registered under its name. Any other registration
// error — a name clash with a different kind of series — is a programming
// error and panics.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
