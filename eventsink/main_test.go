package eventsink

import (
	"testing"

	"github.com/llm-proxy/llm-proxy/tests/testenv"
)

// TestMain stops the Redis server testenv may start for the sink tests.
func TestMain(m *testing.M) { testenv.Main(m) }
