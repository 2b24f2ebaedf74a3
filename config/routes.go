package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
)

//go:embed routes.json
var defaultRoutes []byte

// Route allows one method on one path pattern. A pattern is an exact path whose
// segments may be placeholders such as {id}, each matching one non-empty segment.
type Route struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Body says how the request body is handled: "json" bodies are parsed for
	// model, stream and limits; "none" or "opaque" (uploads) are passed through.
	Body string `json:"body,omitempty"`
	// Charge says how a request on the route is charged; one of [Charges].
	// Every route must declare one: a route nobody thought about charging
	// would let its requests escape their cost.
	Charge string `json:"charge"`
	// Immutable marks a GET whose answer never changes (a model, a file's
	// content): it is cached for LLM_PROXY_CACHE_TTL when the upstream names
	// no lifetime. Any other GET is cached only when the upstream or the
	// client names a lifetime: a background response or a batch polled
	// until it completes must never be served stale.
	Immutable bool `json:"immutable,omitempty"`
	// Note says why the route is charged as it is, where that is not
	// obvious (docs/routes.md gathers the reasons); documentation only.
	Note string `json:"note,omitempty"`
}

// Charging rules a [Route] may declare.
const (
	ChargeTokens  = "tokens"  // the usage OpenAI reports, at the model's token prices; background Responses are reserved and settled when they end
	ChargeBatch   = "batch"   // a batch: reserved from its input file, settled from its output file, at the Batch API's discount
	ChargeImages  = "images"  // per image by size and quality, or the image model's token usage
	ChargeSpeech  = "speech"  // per character of input
	ChargeAudio   = "audio"   // per second of audio, or the model's token usage
	ChargeCall    = "call"    // a fixed price per successful call, from the price table's calls section (vector store search)
	ChargeSettles = "settles" // free, but an answer showing a background response or batch that has ended settles it
	ChargeFree    = "free"    // OpenAI does not bill it
)

// Charges describes each charging rule, for documentation (the README's
// charging table is checked against it).
var Charges = map[string]string{
	ChargeTokens:  "tokens: the usage OpenAI reports, at the model's prices (cached input at its rate); a background response is reserved when created and settled when it ends",
	ChargeBatch:   "batch: reserved from the input file when created, settled from the output file at the Batch API's discount (50%)",
	ChargeImages:  "per image, by model, size and quality; image models that report token usage by their tokens",
	ChargeSpeech:  "per character of input",
	ChargeAudio:   "per second of audio (whisper-1); transcription models that report token usage by their tokens",
	ChargeCall:    "per successful call, at the price the price table's `calls` section names for the route",
	ChargeSettles: "free; when the answer shows a background response or batch that has ended, it settles that one's cost",
	ChargeFree:    "free",
}

// RoutesFile is the document LLM_PROXY_ROUTES_FILE points to.
type RoutesFile struct {
	Routes []Route `json:"routes"`
}

// LoadRoutes reads the allowlist from path, or the built-in OpenAI defaults
// when path is empty. Unknown fields and invalid routes are errors.
func LoadRoutes(path string) ([]Route, error) {
	data := defaultRoutes
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("LLM_PROXY_ROUTES_FILE: %w", err)
		}
		data = b
	}
	routes, err := ParseRoutes(data)
	if err != nil && path != "" {
		return nil, fmt.Errorf("LLM_PROXY_ROUTES_FILE %s: %w", path, err)
	}
	return routes, err
}

// ParseRoutes decodes and validates a routes document.
func ParseRoutes(data []byte) ([]Route, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f RoutesFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse routes: %w", err)
	}
	if len(f.Routes) == 0 {
		return nil, errors.New("parse routes: no routes")
	}
	var errs []error
	for i := range f.Routes {
		r := &f.Routes[i]
		r.Method = strings.ToUpper(r.Method)
		if r.Body == "" {
			r.Body = "none"
		}
		switch {
		case !validMethod(r.Method):
			errs = append(errs, fmt.Errorf("routes[%d].method: %q is not an HTTP method", i, r.Method))
		case !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?#") || strings.Contains(r.Path, "//"):
			errs = append(errs, fmt.Errorf("routes[%d].path: %q must be an absolute path without query", i, r.Path))
		case r.Body != "none" && r.Body != "json" && r.Body != "opaque":
			errs = append(errs, fmt.Errorf("routes[%d].body: %q must be none, json or opaque", i, r.Body))
		case r.Charge == "":
			errs = append(errs, fmt.Errorf("routes[%d].charge: missing for %s %s: every route declares how it is charged (%s)", i, r.Method, r.Path, chargeNames()))
		case Charges[r.Charge] == "":
			errs = append(errs, fmt.Errorf("routes[%d].charge: %q must be one of %s", i, r.Charge, chargeNames()))
		}
	}
	return f.Routes, errors.Join(errs...)
}

func chargeNames() string {
	names := slices.Sorted(maps.Keys(Charges))
	return strings.Join(names, ", ")
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
		return true
	}
	return false
}
