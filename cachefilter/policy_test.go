package cachefilter_test

import (
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

func TestLookupable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		method  string
		h       cachefilter.Map
		optIn   bool
		wantOK  bool
		wantTTL time.Duration
	}{
		{"GET", "GET", nil, false, true, 0},
		{"HEAD", "HEAD", nil, false, true, 0},
		{"GET max-age", "GET", map[string]string{"cache-control": "max-age=30"}, false, true, 30 * time.Second},
		{"GET max-age=0", "GET", map[string]string{"cache-control": "max-age=0"}, false, false, 0},
		{"GET no-store", "GET", map[string]string{"cache-control": "no-store"}, false, false, 0},
		{"GET no-cache", "GET", map[string]string{"cache-control": "No-Cache"}, false, false, 0},
		{"GET pragma", "GET", map[string]string{"pragma": "no-cache"}, false, false, 0},
		{"POST plain", "POST", nil, false, false, 0},
		{"POST public without age", "POST", map[string]string{"cache-control": "public"}, false, false, 0},
		{"POST max-age without public", "POST", map[string]string{"cache-control": "max-age=60"}, false, false, 0},
		{"POST public max-age", "POST", map[string]string{"cache-control": "public, max-age=60"}, false, true, 60 * time.Second},
		{"POST s-maxage over max-age", "post", map[string]string{"cache-control": "max-age=60, PUBLIC, s-maxage=120"}, false, true, 120 * time.Second},
		{"POST public max-age=0", "POST", map[string]string{"cache-control": "public, max-age=0"}, false, false, 0},
		{"POST opt-in", "POST", nil, true, true, 0},
		{"POST opt-in with max-age", "POST", map[string]string{"cache-control": "max-age=5"}, true, true, 5 * time.Second},
		{"POST opt-in no-store", "POST", map[string]string{"cache-control": "no-store"}, true, false, 0},
		{"POST public no-store", "POST", map[string]string{"cache-control": "public, max-age=60, no-store"}, true, false, 0},
		{"PUT", "PUT", map[string]string{"cache-control": "public, max-age=60"}, true, false, 0},
		{"DELETE", "DELETE", nil, true, false, 0},
		{"bad max-age", "POST", map[string]string{"cache-control": "public, max-age=abc"}, false, false, 0},
		{"quoted max-age", "POST", map[string]string{"cache-control": `public, max-age="60"`}, false, true, 60 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, ttl := cachefilter.Lookupable(tc.method, tc.h, tc.optIn)
			if ok != tc.wantOK || ttl != tc.wantTTL {
				t.Fatalf("Lookupable = %v, %v; want %v, %v", ok, ttl, tc.wantOK, tc.wantTTL)
			}
		})
	}
}

func TestStorable(t *testing.T) {
	t.Parallel()
	const def = 5 * time.Minute
	for _, tc := range []struct {
		name    string
		method  string
		req     cachefilter.Map
		resp    cachefilter.Map
		status  int
		defTTL  time.Duration
		wantTTL time.Duration
		wantOK  bool
	}{
		{"GET default", "GET", nil, nil, 200, def, def, true},
		{"GET no default", "GET", nil, nil, 200, 0, 0, false},
		{"GET max-age", "GET", nil, map[string]string{"cache-control": "public, max-age=60"}, 200, def, time.Minute, true},
		{"GET s-maxage over max-age", "GET", nil, map[string]string{"cache-control": "max-age=60, s-maxage=600"}, 200, def, 10 * time.Minute, true},
		{"GET max-age=0", "GET", nil, map[string]string{"cache-control": "max-age=0"}, 200, def, 0, false},
		{"resp no-store", "GET", nil, map[string]string{"cache-control": "no-store"}, 200, def, 0, false},
		{"resp no-cache", "GET", nil, map[string]string{"cache-control": "no-cache"}, 200, def, 0, false},
		{"resp private", "GET", nil, map[string]string{"cache-control": "private, max-age=60"}, 200, def, 0, false},
		{"resp private field", "GET", nil, map[string]string{"cache-control": `private="set-cookie", max-age=60`}, 200, def, 0, false},
		{"set-cookie", "GET", nil, map[string]string{"set-cookie": "a=b"}, 200, def, 0, false},
		{"vary star", "GET", nil, map[string]string{"vary": "*"}, 200, def, 0, false},
		{"vary keyed", "GET", nil, map[string]string{"vary": "Accept-Encoding, Origin"}, 200, def, def, true},
		{"vary unkeyed", "GET", nil, map[string]string{"vary": "Accept-Encoding, X-Custom"}, 200, def, 0, false},
		{"status 201", "GET", nil, nil, 201, def, 0, false},
		{"status 206", "GET", nil, nil, 206, def, 0, false},
		{"status 500", "POST", nil, nil, 500, def, 0, false},
		{"POST default", "POST", nil, nil, 200, def, def, true},
		{"POST request max-age", "POST", map[string]string{"cache-control": "public, max-age=60"}, nil, 200, def, time.Minute, true},
		{"POST request s-maxage", "POST", map[string]string{"cache-control": "public, max-age=60, s-maxage=90"}, nil, 200, def, 90 * time.Second, true},
		{"POST response over request", "POST", map[string]string{"cache-control": "public, max-age=60"}, map[string]string{"cache-control": "max-age=30"}, 200, def, 30 * time.Second, true},
		{"POST request no-store", "POST", map[string]string{"cache-control": "no-store"}, nil, 200, def, 0, false},
		{"PATCH", "PATCH", nil, nil, 200, def, 0, false},
		{"huge max-age capped", "GET", nil, map[string]string{"cache-control": "max-age=99999999999999999999"}, 200, def, 365 * 24 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl, ok := cachefilter.Storable(tc.method, tc.req, tc.resp, tc.status, tc.defTTL)
			if ok != tc.wantOK || ttl != tc.wantTTL {
				t.Fatalf("Storable = %v, %v; want %v, %v", ttl, ok, tc.wantTTL, tc.wantOK)
			}
		})
	}
}
