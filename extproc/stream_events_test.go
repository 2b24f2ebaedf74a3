package extproc

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// At level warn a request that went well logs nothing at all; one that
// failed in the sidecar logs its line, with its request id.
func TestRequestLogAtWarn(t *testing.T) {
	h := newHarness(t, func(h *harness, o *Options) { o.Logger = zerolog.New(h.logs).Level(zerolog.WarnLevel) })
	c := h.open()
	c.send(reqHeaders("GET", "/v1/models", tokFree))
	c.end()
	if got := h.logs.String(); got != "" {
		t.Fatalf("a forwarded request logged at warn: %s", got)
	}
	c = h.open()
	c.send(reqHeaders("GET", "/v1/models", tokOutage))
	c.end()
	got := h.logs.String()
	if strings.Count(got, "\n") != 1 || !strings.Contains(got, `"level":"error"`) || !strings.Contains(got, `"request_id":"rid-1"`) {
		t.Fatalf("the failed request's line: %q", got)
	}
}
