package ratelimit

import (
	"fmt"
	"strings"
)

// A ScopeKind is what a [Scope] is the quota of.
type ScopeKind string

// The kinds of scope.
const (
	ScopeProject ScopeKind = "project" // a project: its limits and budget
	ScopeToken   ScopeKind = "token"   // a proxy token: its limits and lifetime cap
)

// A Scope names whose quota a [Limit] is: a kind and a public id, never a
// secret. [Scope.String] is the one place scopes are written as text, and
// [ParseScope] the one place they are read back.
type Scope struct {
	Kind ScopeKind
	ID   string
}

// ProjectScope returns the scope of project id.
func ProjectScope(id string) Scope { return Scope{Kind: ScopeProject, ID: id} }

// TokenScope returns the scope of proxy token id.
func TokenScope(id string) Scope { return Scope{Kind: ScopeToken, ID: id} }

// String returns the scope as [Limit.Scope] and [Limit.Group] hold it —
// "project:proj_123", "token:tok_456" — which is part of the Redis keys, so
// it must never change.
func (s Scope) String() string { return string(s.Kind) + ":" + s.ID }

// ParseScope reads a scope written by [Scope.String]: a known kind, ":", and
// the id (everything after the first ":", which may be empty). Any other
// text is an error.
func ParseScope(s string) (Scope, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok {
		return Scope{}, fmt.Errorf("ratelimit: scope %q has no kind", s)
	}
	switch k := ScopeKind(kind); k {
	case ScopeProject, ScopeToken:
		return Scope{Kind: k, ID: id}, nil
	}
	return Scope{}, fmt.Errorf("ratelimit: scope %q is of unknown kind %q", s, kind)
}
