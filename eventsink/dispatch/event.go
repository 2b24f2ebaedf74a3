package dispatch

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/llm-proxy/llm-proxy/eventsink"
	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// decodeEvent decodes an entry's event with [eventsink.UnmarshalEvent], the
// schema owner's decoder. A failure is permanent: the same bytes will never
// decode.
func decodeEvent(e Entry) (*llmproxyv1.UsageEvent, error) {
	ev, err := eventsink.UnmarshalEvent(e.JSON)
	if err != nil {
		return nil, Permanent(fmt.Errorf("event %s: %w", e.ID, err))
	}
	return ev, nil
}

// span returns when the request started and ended: the event's time is the
// start (event.proto), latency_ms its duration. An event without a time is
// placed at now.
func span(ev *llmproxyv1.UsageEvent, now time.Time) (start, end time.Time) {
	start = now
	if ts := ev.GetTime(); ts != nil && ts.IsValid() {
		start = ts.AsTime()
	}
	lat := ev.GetLatencyMs()
	if !(lat > 0) || math.IsInf(lat, 0) {
		lat = 0
	}
	return start.UTC(), start.Add(time.Duration(lat * float64(time.Millisecond))).UTC()
}

// totalTokens is usage.total_tokens, or prompt + completion when unset.
func totalTokens(ev *llmproxyv1.UsageEvent) int64 {
	u := ev.GetUsage()
	if u.GetTotalTokens() != 0 {
		return u.GetTotalTokens()
	}
	return u.GetPromptTokens() + u.GetCompletionTokens()
}

// runIDNamespace is the UUID namespace under which [RunID] derives UUIDs
// from event ids that are not UUIDs themselves.
var runIDNamespace = [16]byte{0x6c, 0x6c, 0x6d, 0x2d, 0x70, 0x72, 0x6f, 0x78, 0x79, 0x2d, 0x65, 0x76, 0x65, 0x6e, 0x74, 0x73}

// RunID returns the UUID the Lunary and Helicone backends use for an event:
// the event id itself when it is a UUID (lower-cased), else a name-based
// version 5 UUID derived from it. The same id always yields the same UUID, so
// a redelivered event is recognised as the same run or request.
func RunID(eventID string) string {
	if isUUID(eventID) {
		return strings.ToLower(eventID)
	}
	// A name-based (SHA-1, version 5) UUID, per RFC 4122.
	return uuid.NewSHA1(uuid.UUID(runIDNamespace), []byte(eventID)).String()
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
