package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// A Ticket is a [Reservation] written down, so that work which ends after its
// request — a background response, a batch — stays charged at the reserved
// amount until it is settled much later: by another goroutine, another
// replica, or after a restart ([Limiter.SettleTicket]). It holds scopes and
// amounts, never a secret, and marshals to JSON for the store.
type Ticket struct {
	ID     string  `json:"id"`
	Tokens int64   `json:"tokens"`
	Cost   int64   `json:"cost"`
	Month  string  `json:"month"`
	Local  bool    `json:"local,omitempty"` // counted by the in-process limiter
	Limits []Limit `json:"limits"`
}

// Ticket returns the reservation written down, without ending it: once the
// ticket is stored, [Reservation.Keep] hands the settlement over to it; if it
// cannot be stored, Settle the reservation as usual. ok is false for a nil,
// empty, settled or kept reservation, which leaves nothing to settle.
func (r *Reservation) Ticket() (t Ticket, ok bool) {
	if r == nil || r.b == nil || r.settled.Load() {
		return Ticket{}, false
	}
	_, local := r.b.(*memory)
	return Ticket{ID: r.id, Tokens: r.tokens, Cost: r.cost, Month: r.month, Local: local,
		Limits: append([]Limit(nil), r.limits...)}, true
}

// Keep ends the reservation as it stands: it stays charged, a later Settle
// on it does nothing, and the ticket taken from it settles it
// ([Limiter.SettleTicket]). It reports false, and does nothing, for a nil,
// empty, settled or already kept reservation.
func (r *Reservation) Keep() bool {
	return r != nil && r.b != nil && !r.settled.Swap(true)
}

// MarshalTicket and UnmarshalTicket convert a Ticket to and from its stored
// form.
func MarshalTicket(t Ticket) ([]byte, error) { return json.Marshal(t) }

// UnmarshalTicket reads a ticket stored by [MarshalTicket].
func UnmarshalTicket(b []byte) (Ticket, error) {
	var t Ticket
	if err := json.Unmarshal(b, &t); err != nil {
		return Ticket{}, fmt.Errorf("ratelimit: ticket: %w", err)
	}
	if t.ID == "" || t.Tokens < 0 || t.Cost < 0 {
		return Ticket{}, errors.New("ratelimit: ticket: missing id or negative amount")
	}
	return t, nil
}

// SettleTicket settles a reservation kept as a [Ticket], as
// [Reservation.Settle] would have: tokens and cost replace the reserved
// amounts — an overage is charged now (the window entry has long left), the
// budget of the ticket's month gets the difference. It is not idempotent:
// callers settle a ticket once (the store's settled mark says whether).
// A ticket the in-process limiter counted is settled there; after a restart
// that limiter starts from its seed, so the difference lands on a counter
// that never held the reservation (callers add outstanding reservations to
// the budget seed). Errors wrap [ErrUnavailable] when Redis could not be
// updated.
func (l *Limiter) SettleTicket(ctx context.Context, t Ticket, tokens, cost int64) error {
	b := l.b
	if t.Local {
		b = l.mem
	}
	r := &Reservation{id: t.ID, b: b, limits: t.Limits, tokens: t.Tokens, cost: t.Cost, month: t.Month}
	return r.Settle(ctx, tokens, cost)
}
