package testenv

import (
	"os"
	"testing"
)

// Chromium returns the path of a Chromium (or Chrome) binary for browser
// tests: $CHROME_BIN, else chromium, chromium-browser or google-chrome on
// PATH (`make deps` installs Debian's chromium). Without one it skips tb,
// or fails it under CI.
func Chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("CHROME_BIN"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p := lookPath(name); p != "" {
			return p
		}
	}
	unavailable(tb, "no chromium on PATH and CHROME_BIN unset (make deps installs it)")
	return ""
}
