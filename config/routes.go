package config

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
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
		}
	}
	return f.Routes, errors.Join(errs...)
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
		return true
	}
	return false
}
