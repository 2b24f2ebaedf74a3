package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Rules say what a project's requests may do, beyond how many of them and
// at what cost: which models, which parameter values, how large a body, and
// (for a project) which browser origins may call it. A token's Rules can
// only narrow its project's: a request must pass both (see [Combined]).
// The zero value allows everything, as before Rules existed.
type Rules struct {
	// Models lists the models requests may name, each exact ("o3-mini") or
	// with * standing for any run of characters ("gpt-4o*"). Empty: any.
	Models []string `json:"models,omitempty"`
	// MaxOutputTokens is a ceiling on max_tokens, max_completion_tokens and
	// max_output_tokens (0: none). OverMax says what happens to a request
	// above it, or naming none: "refuse" (the default) refuses one above it
	// and sets the ceiling on one naming none; "clamp" lowers it to the
	// ceiling.
	MaxOutputTokens int64  `json:"max_output_tokens,omitempty"`
	OverMax         string `json:"over_max,omitempty"`
	// Params lists, per top-level body parameter, the JSON values it may
	// take, e.g. {"n": [1], "service_tier": ["auto", "default"]}. A request
	// that sets one to another value is refused; one that leaves it out
	// passes.
	Params map[string][]json.RawMessage `json:"params,omitempty"`
	// NoTools refuses requests that offer the model tools (a non-empty
	// "tools" or "functions").
	NoTools bool `json:"no_tools,omitempty"`
	// MaxBodyBytes caps the request body (0: Envoy's limit alone).
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// CORS lets browser pages of the listed origins call the API with this
	// project's tokens; nil: no cross-origin calls. Projects only.
	CORS *CORS `json:"cors,omitempty"`
}

// CORS is a project's cross-origin policy for browser apps.
type CORS struct {
	// Origins are exact ("https://app.example.com") or one wildcard label
	// ("https://*.example.com": any subdomain, not the apex).
	Origins []string `json:"origins"`
	// Methods and Headers a page may use; empty: GET, POST, DELETE and
	// Authorization, Content-Type, OpenAI-Beta and the OpenAI-*/X-Stainless-*
	// headers the SDKs send.
	Methods []string `json:"methods,omitempty"`
	Headers []string `json:"headers,omitempty"`
	// MaxAgeSeconds is how long a browser may cache a preflight (0: 600).
	MaxAgeSeconds int `json:"max_age_seconds,omitempty"`
}

// Over-max modes.
const (
	OverMaxRefuse = "refuse"
	OverMaxClamp  = "clamp"
)

// Bounds of a Rules document: every list is checked per request.
const (
	MaxModels     = 100
	MaxParams     = 20
	MaxValues     = 20
	MaxOrigins    = 50
	MaxBodyLimit  = 1 << 30
	maxPatternLen = 200
)

// IsZero reports whether r allows everything.
func (r Rules) IsZero() bool {
	return len(r.Models) == 0 && r.MaxOutputTokens == 0 && r.OverMax == "" && len(r.Params) == 0 &&
		!r.NoTools && r.MaxBodyBytes == 0 && r.CORS == nil
}

// Validate checks r; forToken refuses what only a project may say (CORS).
// The first problem is returned as a *FieldError under "rules.".
func (r Rules) Validate(forToken bool) error {
	bad := func(field string, format string, args ...any) error {
		return &FieldError{"rules." + field, fmt.Errorf(format, args...)}
	}
	if len(r.Models) > MaxModels {
		return bad("models", "at most %d models", MaxModels)
	}
	for i, m := range r.Models {
		if m == "" || len(m) > maxPatternLen || strings.TrimSpace(m) != m || strings.ContainsAny(m, "\x00\n\r\t") {
			return bad(fmt.Sprintf("models[%d]", i), "a model name or pattern of 1 to %d characters without spaces", maxPatternLen)
		}
	}
	if r.MaxOutputTokens < 0 {
		return bad("max_output_tokens", "must be 0 (no ceiling) or more")
	}
	switch r.OverMax {
	case "", OverMaxRefuse, OverMaxClamp:
	default:
		return bad("over_max", `must be "refuse" or "clamp"`)
	}
	if len(r.Params) > MaxParams {
		return bad("params", "at most %d parameters", MaxParams)
	}
	for name, values := range r.Params {
		switch {
		case name == "" || len(name) > 64:
			return bad("params", "parameter names are 1 to 64 characters")
		case name == "model" || name == "stream" || strings.HasPrefix(name, "max_"):
			return bad("params."+name, "is governed by models, max_output_tokens or the route, not params")
		case len(values) == 0 || len(values) > MaxValues:
			return bad("params."+name, "list 1 to %d allowed values", MaxValues)
		}
		for i, v := range values {
			if !json.Valid(v) {
				return bad(fmt.Sprintf("params.%s[%d]", name, i), "not a JSON value")
			}
		}
	}
	if r.MaxBodyBytes < 0 || r.MaxBodyBytes > MaxBodyLimit {
		return bad("max_body_bytes", "must be between 0 (no cap) and %d", MaxBodyLimit)
	}
	if r.CORS != nil {
		if forToken {
			return bad("cors", "is a project setting; a token's rules cannot set it")
		}
		if err := r.CORS.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (c *CORS) validate() error {
	if len(c.Origins) == 0 || len(c.Origins) > MaxOrigins {
		return &FieldError{"rules.cors.origins", fmt.Errorf("list 1 to %d origins", MaxOrigins)}
	}
	for i, o := range c.Origins {
		if err := checkOrigin(o); err != nil {
			return &FieldError{fmt.Sprintf("rules.cors.origins[%d]", i), err}
		}
	}
	for i, m := range c.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " ,\t") {
			return &FieldError{fmt.Sprintf("rules.cors.methods[%d]", i), errors.New("an upper-case HTTP method")}
		}
	}
	for i, h := range c.Headers {
		if h == "" || strings.ContainsAny(h, " ,:\t\r\n") {
			return &FieldError{fmt.Sprintf("rules.cors.headers[%d]", i), errors.New("a header name")}
		}
	}
	if c.MaxAgeSeconds < 0 || c.MaxAgeSeconds > 86400 {
		return &FieldError{"rules.cors.max_age_seconds", errors.New("must be between 0 (600) and 86400")}
	}
	return nil
}

// checkOrigin accepts scheme://host[:port] with an optional leading "*."
// label, nothing else (no path, no trailing slash): what a browser sends in
// Origin.
func checkOrigin(o string) error {
	u, err := url.Parse(strings.Replace(o, "://*.", "://wildcard.", 1))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" ||
		u.Fragment != "" || u.User != nil || strings.Count(o, "*") > 1 || (strings.Contains(o, "*") && !strings.Contains(o, "://*.")) {
		return errors.New(`an origin such as "https://app.example.com" or "https://*.example.com" (scheme, host, optional port; nothing after)`)
	}
	return nil
}

// AllowsModel reports whether model matches one of r's Models (or r has
// none).
func (r Rules) AllowsModel(model string) bool {
	return len(r.Models) == 0 || slices.ContainsFunc(r.Models, func(p string) bool { return matchWildcard(p, model) })
}

// matchWildcard matches s against p, where * stands for any run of
// characters (none included) and everything else for itself.
func matchWildcard(p, s string) bool {
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return p == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, last)
}

// AllowsValue reports whether the body's value raw for param is one r
// allows: r names no values for it, or one of them is equal as JSON
// (1 and 1.0 are equal, key order in objects does not matter).
func (r Rules) AllowsValue(param string, raw json.RawMessage) bool {
	values, ok := r.Params[param]
	if !ok {
		return true
	}
	return slices.ContainsFunc(values, func(v json.RawMessage) bool { return jsonEqual(v, raw) })
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	xj, _ := json.Marshal(x) // maps marshal with sorted keys; numbers as float64
	yj, _ := json.Marshal(y)
	return bytes.Equal(xj, yj)
}

// AllowsOrigin reports whether origin (as a browser sends it) matches one
// of the CORS origins: exactly, or under a "*." label, which stands for one
// or more labels of a subdomain (never the apex, never another scheme or
// port).
func (c *CORS) AllowsOrigin(origin string) bool {
	if c == nil || origin == "" {
		return false
	}
	for _, o := range c.Origins {
		if o == origin {
			return true
		}
		scheme, rest, ok := strings.Cut(o, "://*.")
		if !ok {
			continue
		}
		prefix := scheme + "://"
		if host, found := strings.CutPrefix(origin, prefix); found && strings.HasSuffix(host, "."+rest) &&
			len(host) > len(rest)+1 && !strings.ContainsAny(host[:len(host)-len(rest)-1], "/:@") {
			return true
		}
	}
	return false
}

// Combined is what a request of a token must pass: its project's rules and
// its token's, both. Lists must allow a value in both; ceilings take the
// lower; refusing wins over clamping; the project's CORS stands.
type Combined struct{ Project, Token Rules }

// AllowsModel reports whether both rules allow model.
func (e Combined) AllowsModel(model string) bool {
	return e.Project.AllowsModel(model) && e.Token.AllowsModel(model)
}

// AllowsValue reports whether both rules allow raw for param.
func (e Combined) AllowsValue(param string, raw json.RawMessage) bool {
	return e.Project.AllowsValue(param, raw) && e.Token.AllowsValue(param, raw)
}

// MaxOutputTokens is the lower non-zero ceiling, and how a request above it
// is treated: refused when either rules say so (or neither says).
func (e Combined) MaxOutputTokens() (ceiling int64, clamp bool) {
	for _, r := range []Rules{e.Project, e.Token} {
		if r.MaxOutputTokens > 0 && (ceiling == 0 || r.MaxOutputTokens < ceiling) {
			ceiling = r.MaxOutputTokens
		}
	}
	clamp = (e.Project.OverMax == OverMaxClamp || e.Project.MaxOutputTokens == 0) &&
		(e.Token.OverMax == OverMaxClamp || e.Token.MaxOutputTokens == 0)
	return ceiling, clamp && ceiling > 0
}

// NoTools reports whether either rules refuse tools.
func (e Combined) NoTools() bool { return e.Project.NoTools || e.Token.NoTools }

// MaxBodyBytes is the lower non-zero cap.
func (e Combined) MaxBodyBytes() int64 {
	a, b := e.Project.MaxBodyBytes, e.Token.MaxBodyBytes
	switch {
	case a == 0:
		return b
	case b == 0 || a < b:
		return a
	}
	return b
}

// Params lists every parameter either rules restrict, sorted.
func (e Combined) Params() []string {
	var names []string
	for _, r := range []Rules{e.Project, e.Token} {
		for n := range r.Params {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

// RestrictsBody reports whether a request body must be read against the
// rules beyond its model (params, tools, the output ceiling).
func (e Combined) RestrictsBody() bool {
	c, _ := e.MaxOutputTokens()
	return c > 0 || e.NoTools() || len(e.Project.Params) > 0 || len(e.Token.Params) > 0
}

// RestrictsModels reports whether either rules list models.
func (e Combined) RestrictsModels() bool { return len(e.Project.Models) > 0 || len(e.Token.Models) > 0 }
