package ratelimit_test

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/ratelimit"
)

// Scopes are part of the Redis keys: their text must never change, and it
// must read back as the scope it was written from.
func TestScope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scope ratelimit.Scope
		text  string
	}{
		{ratelimit.ProjectScope("proj_123"), "project:proj_123"},
		{ratelimit.TokenScope("tok_456"), "token:tok_456"},
		{ratelimit.TokenScope("a:b"), "token:a:b"},
		{ratelimit.ProjectScope(""), "project:"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			if got := tc.scope.String(); got != tc.text {
				t.Errorf("String() = %q, want %q", got, tc.text)
			}
			got, err := ratelimit.ParseScope(tc.text)
			if err != nil || got != tc.scope {
				t.Errorf("ParseScope(%q) = %+v, %v; want %+v", tc.text, got, err, tc.scope)
			}
		})
	}
}

func TestParseScopeRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "project", "tok_456", "user:u1", ":p1", "Project:p1"} {
		if sc, err := ratelimit.ParseScope(s); err == nil {
			t.Errorf("ParseScope(%q) = %+v, want an error", s, sc)
		}
	}
}
