package adminapi

import (
	"errors"

	"github.com/llm-proxy/llm-proxy/policy"
)

// rulesRequest is the rules object of a project or token as a request sends
// it: it replaces the rules whole; null clears them.
type rulesRequest policy.Rules

func (r *rulesRequest) UnmarshalJSON(b []byte) error {
	return decodeMember(b, "rules", (*policy.Rules)(r))
}

// validateRules checks a rules object; a token's may not set CORS (a
// preflight carries no token, so only a project's origins can answer it).
func validateRules(o optional[rulesRequest], forToken bool) error {
	if !o.has() {
		return nil
	}
	var fe *policy.FieldError
	if err := policy.Rules(o.Value).Validate(forToken); errors.As(err, &fe) {
		return invalid(codeInvalidValue, fe.Field, "%s: %v.", fe.Field, fe.Err)
	} else if err != nil {
		return invalid(codeInvalidValue, "rules", "rules: %v.", err)
	}
	return nil
}
