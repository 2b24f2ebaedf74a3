package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/llm-proxy/llm-proxy/store"
)

// Limits is the limits object as the API shows it, on projects and
// tokens alike: every member is present, null meaning unlimited.
type Limits struct {
	RequestsPerMinute *int64 `json:"requests_per_minute"`
	TokensPerMinute   *int64 `json:"tokens_per_minute"`
	MaxConcurrent     *int64 `json:"max_concurrent"`
}

func limitsView(l store.Limits) Limits {
	return Limits{RequestsPerMinute: l.RequestsPerMinute, TokensPerMinute: l.TokensPerMinute, MaxConcurrent: l.MaxConcurrent}
}

// limitsField is the request member holding a [limitsRequest]; error params
// inside it are "limits.<member>".
const limitsField = "limits"

// limitsRequest is the limits object as a request sends it. Each member may
// be absent (keep), null (unlimited) or an integer of at least 1 (set).
type limitsRequest struct {
	RequestsPerMinute optional[int64] `json:"requests_per_minute"`
	TokensPerMinute   optional[int64] `json:"tokens_per_minute"`
	MaxConcurrent     optional[int64] `json:"max_concurrent"`
}

// UnmarshalJSON decodes the object as strictly as the body around it: an
// unknown member is refused, named with its full path. (Type errors get
// their path from encoding/json itself.)
func (l *limitsRequest) UnmarshalJSON(b []byte) error {
	type plain limitsRequest // without this method
	return decodeMember(b, limitsField, (*plain)(l))
}

// decodeMember decodes the object b of request member field into dst as
// strictly as the body around it: an unknown member is refused, named with
// its full path ("field.member").
func decodeMember(b []byte, field string, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		return nil
	}
	if rest, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, uerr := strconv.Unquote(rest); uerr == nil {
			param := field + "." + name
			return invalid(codeUnknownField, param, "Unknown field %q.", param)
		}
	}
	return err
}

// members lists the limits with their full names, in the response's order.
func (l *limitsRequest) members() []struct {
	name string
	o    *optional[int64]
} {
	return []struct {
		name string
		o    *optional[int64]
	}{
		{limitsField + ".requests_per_minute", &l.RequestsPerMinute},
		{limitsField + ".tokens_per_minute", &l.TokensPerMinute},
		{limitsField + ".max_concurrent", &l.MaxConcurrent},
	}
}

// validate refuses a limit below 1: "no limit" is null, never 0.
func (l limitsRequest) validate() error {
	for _, m := range l.members() {
		if m.o.has() && m.o.Value < 1 {
			return invalid(codeInvalidValue, m.name, "%s must be at least 1, got %d; send null for no limit.", m.name, m.o.Value)
		}
	}
	return nil
}

// empty reports whether no member was sent, so applying it changes nothing.
func (l limitsRequest) empty() bool {
	for _, m := range l.members() {
		if m.o.Set {
			return false
		}
	}
	return true
}

// complete reports whether every member was sent, so applying it does not
// depend on the current limits.
func (l limitsRequest) complete() bool {
	for _, m := range l.members() {
		if !m.o.Set {
			return false
		}
	}
	return true
}

// apply returns cur changed by the members sent: a value sets, null clears,
// absence keeps. Call validate first.
func (l limitsRequest) apply(cur store.Limits) store.Limits {
	pick := func(o optional[int64], cur *int64) *int64 {
		switch {
		case !o.Set:
			return cur
		case o.Null:
			return nil
		}
		v := o.Value
		return &v
	}
	return store.Limits{
		RequestsPerMinute: pick(l.RequestsPerMinute, cur.RequestsPerMinute),
		TokensPerMinute:   pick(l.TokensPerMinute, cur.TokensPerMinute),
		MaxConcurrent:     pick(l.MaxConcurrent, cur.MaxConcurrent),
	}
}

// validateLimits validates the limits member of a request, if sent.
func validateLimits(o optional[limitsRequest]) error {
	if !o.has() {
		return nil
	}
	return o.Value.validate()
}

// limitsChange resolves the limits member of a PATCH: change reports whether
// the stored limits must be written at all, and needCurrent whether the
// result depends on them (some member absent), in which case the caller
// passes them as cur. null clears every limit; {} changes nothing.
func limitsChange(o optional[limitsRequest]) (change, needCurrent bool) {
	switch {
	case !o.Set, o.has() && o.Value.empty():
		return false, false
	case o.Null, o.Value.complete():
		return true, false
	}
	return true, true
}

// newLimits is the limits of a new project or token: absent, null, or
// absent members are unlimited.
func newLimits(o optional[limitsRequest]) store.Limits {
	if !o.has() {
		return store.Limits{}
	}
	return o.Value.apply(store.Limits{})
}

// patchLimits is limitsChange's result applied to cur.
func patchLimits(o optional[limitsRequest], cur store.Limits) store.Limits {
	if o.Null {
		return store.Limits{}
	}
	return o.Value.apply(cur)
}

// budgetField is the request and response member of a project's monthly budget.
const budgetField = "monthly_budget_usd"

// microPerUSD is how many micro-USD, the stored unit of money, make a dollar.
const microPerUSD = 1_000_000

// maxBudgetMicroUSD bounds a monthly budget: a billion dollars, as
// openapi.yaml's BudgetInput says.
const maxBudgetMicroUSD = 1_000_000_000 * microPerUSD

// USD is an amount of money held exactly as integer micro-USD. It marshals
// as a JSON number with no more decimals than it needs (at most six): 1.5,
// 0.000123, 20; it unmarshals such a number exactly.
type USD int64

func (u USD) MarshalJSON() ([]byte, error) { return []byte(formatMicroUSD(int64(u))), nil }

// String writes the amount as the API does, e.g. "12.5".
func (u USD) String() string { return formatMicroUSD(int64(u)) }

// UnmarshalJSON reads a JSON number of dollars with at most six decimals.
func (u *USD) UnmarshalJSON(b []byte) error {
	m, err := parseMicroUSD(string(b))
	if err != nil {
		return fmt.Errorf("amount of USD %s: %w", b, err)
	}
	*u = USD(m)
	return nil
}

// formatMicroUSD writes micro-USD as a decimal number of dollars, exactly.
func formatMicroUSD(micro int64) string {
	sign, abs := "", uint64(micro)
	if micro < 0 {
		sign, abs = "-", uint64(-(micro+1))+1 // no overflow at math.MinInt64
	}
	s := sign + strconv.FormatUint(abs/microPerUSD, 10)
	if frac := abs % microPerUSD; frac != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", frac), "0")
	}
	return s
}

func optionalUSD(micro *int64) *USD {
	if micro == nil {
		return nil
	}
	u := USD(*micro)
	return &u
}

// numberLiteral is a JSON number kept as written, so that a decimal amount
// can be converted exactly rather than through float64. Anything but a
// number is a type error, as for any numeric field.
type numberLiteral string

func (n *numberLiteral) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return &json.UnmarshalTypeError{Value: literalKind(b), Type: reflect.TypeFor[float64]()}
	}
	*n = numberLiteral(b)
	return nil
}

// literalKind names the JSON type of a non-number literal as
// UnmarshalTypeError.Value does.
func literalKind(b []byte) string {
	switch {
	case len(b) == 0:
		return "value"
	case b[0] == '"':
		return "string"
	case b[0] == 't', b[0] == 'f':
		return "bool"
	case b[0] == '[':
		return "array"
	case b[0] == '{':
		return "object"
	}
	return "value"
}

// Why an amount of dollars cannot be stored.
var (
	errNegative    = errors.New("must not be negative")
	errTooPrecise  = errors.New("must have at most 6 decimal places")
	errTooLarge    = errors.New("is too large")
	errNotADecimal = errors.New("is not a decimal number")
)

const (
	// maxMicroDigits is the number of digits of math.MaxInt64.
	maxMicroDigits = 19
	// maxExponentDigits bounds the exponents worth reading: with more
	// digits, a non-zero amount is out of range either way.
	maxExponentDigits = 4
)

// parseMicroUSD converts a JSON number of dollars to micro-USD, exactly:
// "12.5" is 12500000, "1e-6" is 1. It refuses negative amounts, more than six
// decimal places and amounts beyond int64 micro-USD, and it costs no more
// than the literal's length, whatever its exponent.
func parseMicroUSD(lit string) (int64, error) {
	s, neg := strings.CutPrefix(lit, "-")
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	if intPart == "" || strings.Trim(intPart+frac, "0123456789") != "" {
		return 0, errNotADecimal
	}
	if digits == "" {
		return 0, nil // zero, whatever its sign or exponent
	}
	if neg {
		return 0, errNegative
	}
	// The amount is digits × 10^shift micro-USD.
	shift := 6 - len(frac)
	if hasExp {
		expDigits := strings.TrimLeft(strings.TrimLeft(expPart, "+-"), "0")
		if len(expDigits) > maxExponentDigits {
			if strings.HasPrefix(expPart, "-") {
				return 0, errTooPrecise
			}
			return 0, errTooLarge
		}
		exp, err := strconv.Atoi(strings.TrimPrefix(expPart, "+"))
		if err != nil {
			return 0, errNotADecimal
		}
		shift += exp
	}
	trimmed := strings.TrimRight(digits, "0")
	shift += len(digits) - len(trimmed)
	switch {
	case shift < 0:
		return 0, errTooPrecise
	case len(trimmed)+shift > maxMicroDigits:
		return 0, errTooLarge
	}
	micro, err := strconv.ParseInt(trimmed+strings.Repeat("0", shift), 10, 64)
	if err != nil {
		return 0, errTooLarge
	}
	return micro, nil
}

// parseBudget resolves the monthly_budget_usd member: change reports whether it
// was sent, micro is nil when it was sent as null (no budget).
func parseBudget(o optional[numberLiteral]) (micro *int64, change bool, err error) {
	if !o.Set {
		return nil, false, nil
	}
	if o.Null {
		return nil, true, nil
	}
	v, err := parseMicroUSD(string(o.Value))
	if err == nil && v > maxBudgetMicroUSD {
		err = fmt.Errorf("must be at most %s", formatMicroUSD(maxBudgetMicroUSD))
	}
	if err != nil {
		return nil, false, invalid(codeInvalidValue, budgetField, "%s %v; it is in US dollars, e.g. 25 or 0.5.", budgetField, err)
	}
	return &v, true, nil
}
