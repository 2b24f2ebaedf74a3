package extproc

import "testing"

func TestHeadersLookup(t *testing.T) {
	h := headers{
		{Key: "cache-control", RawValue: []byte("no-cache")},
		{Key: "x-a", Value: "plain value"}, // an older Envoy's field
		{Key: "cache-control", RawValue: []byte("max-age=5")},
	}
	if v, ok := h.Lookup("cache-control"); !ok || v != "no-cache" {
		t.Errorf("repeated header: %q, %v; want the first", v, ok)
	}
	if h.get("x-a") != "plain value" {
		t.Errorf("value field not read")
	}
	if v, ok := h.Lookup("missing"); ok || v != "" {
		t.Errorf("missing header: %q, %v", v, ok)
	}
	// The storing decision's view of an opted-in POST's answer: no-cache
	// dropped, the rest as it came.
	view := optInView("POST", headers{{Key: "cache-control", RawValue: []byte("no-cache, max-age=60")}, {Key: "vary", RawValue: []byte("x")}})
	if cc, _ := view.Lookup("cache-control"); cc != "max-age=60" {
		t.Errorf("opt-in view cache-control %q", cc)
	}
	if v, _ := view.Lookup("vary"); v != "x" {
		t.Errorf("opt-in view lost vary: %q", v)
	}
}

// Reading a request's headers builds nothing.
func TestHeadersLookupAllocs(t *testing.T) {
	h := headers{{Key: ":method", RawValue: []byte("POST")}, {Key: "authorization", Value: "Bearer x"}}
	if n := testing.AllocsPerRun(100, func() { _, _ = h.Lookup("authorization") }); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
}
