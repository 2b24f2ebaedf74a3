package eventsink

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// eventJSONDecode accepts what a newer llm-proxy writes: unknown fields are
// skipped, so a dispatcher can run behind the proxies it reads from.
var eventJSONDecode = protojson.UnmarshalOptions{DiscardUnknown: true}

// MarshalEvent returns the JSON encoding of ev that every sink writes and the
// dispatcher reads: one JSON object on one line (no newline), in the proto3
// JSON mapping with the proto field names of event.proto ("request_id",
// "usage": {"prompt_tokens": …}, …), in field-number order. Every scalar field
// is present, zero values included; "usage" and "time" are left out when
// unset. As the mapping prescribes, int64 fields (the token counts,
// "cost_micro_usd") are JSON strings ("12"), doubles are numbers, and "time"
// is an RFC 3339 string in UTC. It fails only for a time outside the range of
// google.protobuf.Timestamp.
func MarshalEvent(ev *llmproxyv1.UsageEvent) ([]byte, error) {
	return appendEvent(nil, ev)
}

// UnmarshalEvent decodes what [MarshalEvent] wrote. It also accepts int64
// fields as JSON numbers and camelCase field names, and skips fields it does
// not know (written by a newer llm-proxy).
func UnmarshalEvent(data []byte) (*llmproxyv1.UsageEvent, error) {
	ev := new(llmproxyv1.UsageEvent)
	if err := eventJSONDecode.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("decode usage event: %w", err)
	}
	return ev, nil
}

// NewEventID returns a new event id: a UUIDv7 (RFC 9562) in canonical text
// form, "xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx" in lowercase hex. Ids sort as
// strings in the order of the time they were made (to about 250 ns within a
// millisecond, by the RFC's method 3), and carry 62 random bits from
// crypto/rand, so ids made on different replicas do not collide.
func NewEventID() string {
	var random [8]byte
	_, _ = rand.Read(random[:]) // never fails: crypto/rand crashes the program instead
	return newEventID(time.Now(), random)
}

// newEventID is [NewEventID] with its clock reading and random bits given.
func newEventID(now time.Time, random [8]byte) string {
	var u [16]byte
	copy(u[8:], random[:])
	ns := now.UnixNano()
	ms := ns / int64(time.Millisecond)
	// 12 bits of sub-millisecond precision in rand_a (RFC 9562, 6.2 method 3).
	frac := (ns % int64(time.Millisecond)) * 4096 / int64(time.Millisecond)
	binary.BigEndian.PutUint64(u[:8], uint64(ms)<<16|0x7000|uint64(frac))
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return formatUUID(&u)
}

func formatUUID(u *[16]byte) string { return uuid.UUID(*u).String() }
