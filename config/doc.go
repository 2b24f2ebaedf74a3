// Package config reads llm-proxy's settings from the environment (12-factor:
// what ECS task definitions and Kubernetes pods inject) and from the optional
// routes file.
//
// [Load] applies the documented defaults, validates everything once and returns
// every problem at once (errors.Join), each naming the variable, so a bad
// deployment fails at start-up with one readable message instead of at the
// first request. Components receive their part of [Config] in their
// constructors and never read the environment themselves.
package config
