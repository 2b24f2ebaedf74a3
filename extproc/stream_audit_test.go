package extproc

import (
	"reflect"
	"testing"

	"github.com/llm-proxy/llm-proxy/store"
)

// denialGate audits the first denial of each reason and suppresses the rest,
// reporting how many it suppressed with the next one it lets through.
type denialGate struct{ seen map[string]int }

func (d *denialGate) ShouldAudit(addr, reason string) (bool, int) {
	d.seen[addr+" "+reason]++
	switch n := d.seen[addr+" "+reason]; n {
	case 1:
		return true, 0
	case 2:
		return false, 0
	default:
		return true, n - 2
	}
}

func TestAuditDenials(t *testing.T) {
	denial := func(action, tokenID, projectID, detail string) store.AuditEvent {
		return store.AuditEvent{Time: testStart, Action: action, Actor: "client", Outcome: store.AuditOutcomeDenied,
			TargetType: store.AuditTargetToken, TargetID: tokenID, ProjectID: projectID, RequestID: "rid-1",
			ClientAddress: "192.0.2.7", Detail: detail}
	}
	for _, tc := range []struct {
		name, token string
		times       int
		want        []store.AuditEvent
	}{
		{"unknown token", "llmp_nope", 1, []store.AuditEvent{denial(store.AuditAuthUnknownToken, "", "", "GET /v1/models")}},
		{"no token", "", 1, []store.AuditEvent{denial(store.AuditAuthMissingToken, "", "", "GET /v1/models")}},
		{"revoked token: named", tokRevoked, 1, []store.AuditEvent{denial(store.AuditAuthRevokedToken, "tok_revoked", "proj_1", "GET /v1/models")}},
		{"a flood: the first, then a count", "llmp_nope", 3, []store.AuditEvent{
			denial(store.AuditAuthUnknownToken, "", "", "GET /v1/models"),
			denial(store.AuditAuthUnknownToken, "", "", "GET /v1/models (+1 similar denials from this address not recorded one by one)"),
		}},
		{"not a security event", tokOutage, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(_ *harness, o *Options) { o.Denials = &denialGate{seen: map[string]int{}} })
			for range tc.times {
				c := h.open()
				c.send(reqHeaders("GET", "/v1/models", tc.token))
				c.end()
			}
			if got := h.audit.events(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("audited\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
