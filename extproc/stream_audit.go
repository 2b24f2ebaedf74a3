package extproc

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/llm-proxy/llm-proxy/authz"
	"github.com/llm-proxy/llm-proxy/ratelimit"
	"github.com/llm-proxy/llm-proxy/store"
)

// auditDenial records a security denial in the audit log: a missing, unknown,
// revoked or expired token, an inactive project, a used-up budget or lifetime
// cap, a model the rules do not allow (its detail names the model). Rate
// limits, malformed requests and the other rules' refusals are not security
// events.
func (st *stream) auditDenial(err error) {
	if st.srv.audit == nil {
		return
	}
	action := denialAction(err)
	if action == "" {
		return
	}
	detail := st.method + " " + truncate(st.path, 200)
	if re := (*ruleError)(nil); errors.As(err, &re) {
		named := "no model named"
		if re.model != "" {
			named = "model " + strconv.Quote(truncate(re.model, 100))
		}
		detail += ": " + named
	}
	if st.srv.denials != nil {
		record, suppressed := st.srv.denials.ShouldAudit(st.clientAddress, action)
		if !record {
			return // counted; it reaches the log in a summary row
		}
		if suppressed > 0 {
			detail += fmt.Sprintf(" (+%d similar denials from this address not recorded one by one)", suppressed)
		}
	}
	ev := store.AuditEvent{
		Time: st.srv.now(), Action: action, Actor: "client", Outcome: store.AuditOutcomeDenied,
		TargetType: store.AuditTargetToken, TargetID: st.principal.TokenID, ProjectID: st.principal.ProjectID,
		RequestID: st.requestID, ClientAddress: st.clientAddress, Detail: detail,
	}
	var de *authz.DeniedError
	if errors.As(err, &de) {
		ev.TargetID, ev.ProjectID = de.TokenID, de.ProjectID
	}
	st.srv.audit.Record(ev)
}

func denialAction(err error) string {
	var (
		le *ratelimit.LimitError
		re *ruleError
	)
	switch {
	case errors.Is(err, errMissingToken):
		return store.AuditAuthMissingToken
	case errors.Is(err, authz.ErrInvalidToken):
		return store.AuditAuthUnknownToken
	case errors.Is(err, authz.ErrTokenRevoked):
		return store.AuditAuthRevokedToken
	case errors.Is(err, authz.ErrTokenExpired):
		return store.AuditAuthExpiredToken
	case errors.Is(err, authz.ErrProjectInactive):
		return store.AuditAuthProjectInactive
	case errors.As(err, &le) && (le.Kind == ratelimit.KindBudget || le.Kind == ratelimit.KindLifetime):
		return store.AuditAuthQuotaExhausted
	case errors.As(err, &re) && re.rule == ruleModel:
		return store.AuditAuthModelNotAllowed
	}
	return ""
}
