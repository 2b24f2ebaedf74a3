package ids

import (
	"regexp"
	"testing"
)

func TestNew(t *testing.T) {
	shape := regexp.MustCompile(`^tok_[a-z2-7]{20}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := New("tok")
		if !shape.MatchString(id) || seen[id] {
			t.Fatalf("id %q: malformed or repeated", id)
		}
		seen[id] = true
	}
}
