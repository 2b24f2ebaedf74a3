package extproc

import (
	"fmt"
	"strings"

	"github.com/llm-proxy/llm-proxy/config"
)

// allowlist matches request paths against the configured routes. Paths are
// compared segment by segment; "{name}" matches exactly one non-empty segment,
// so /v1/models/{model} admits /v1/models/gpt-4o but not /v1/modelsXYZ or
// /v1/models/a/b.
type allowlist struct {
	routes []compiledRoute
}

type compiledRoute struct {
	config.Route
	segments []string // "" marks a placeholder
}

func newAllowlist(routes []config.Route) allowlist {
	a := allowlist{routes: make([]compiledRoute, 0, len(routes))}
	for _, r := range routes {
		segs := strings.Split(strings.Trim(r.Path, "/"), "/")
		for i, s := range segs {
			if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
				segs[i] = ""
			}
		}
		a.routes = append(a.routes, compiledRoute{Route: r, segments: segs})
	}
	return a
}

// match returns the route for method and path, errUnknownURL when no route has
// the path, or a *methodError when routes have it under other methods.
func (a allowlist) match(method, path string) (*compiledRoute, error) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var allowed []string
	for i := range a.routes {
		r := &a.routes[i]
		if !r.matches(segs) || path != "/"+strings.Trim(path, "/") {
			continue
		}
		if r.Method == method {
			return r, nil
		}
		allowed = append(allowed, r.Method)
	}
	if len(allowed) > 0 {
		return nil, &methodError{method: method, path: path, allowed: allowed}
	}
	return nil, fmt.Errorf("%w: %s %s", errUnknownURL, method, path)
}

func (r *compiledRoute) matches(segs []string) bool {
	if len(segs) != len(r.segments) {
		return false
	}
	for i, want := range r.segments {
		if segs[i] == "" || (want != "" && want != segs[i]) {
			return false
		}
	}
	return true
}
