package extproc

import (
	"os"
	"strings"
	"testing"
)

// TestDesignNotesPhaseTable keeps docs/design-notes.md's copy of the phase
// table equal to this package's documentation.
func TestDesignNotesPhaseTable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for l := range strings.SplitSeq(string(doc), "\n") {
		if rest, ok := strings.CutPrefix(l, "//\t"); ok {
			table = append(table, rest)
		}
	}
	notes, err := os.ReadFile("../docs/design-notes.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(table) == 0 || !strings.Contains(string(notes), "```\n"+strings.Join(table, "\n")+"\n```") {
		t.Errorf("docs/design-notes.md's phase table differs from extproc/doc.go's; copy it:\n%s", strings.Join(table, "\n"))
	}
}
