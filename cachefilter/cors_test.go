package cachefilter_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

// An entry never holds CORS headers or Vary, and Origin is not in the key:
// one entry serves every origin, and the ext_proc server adds the CORS
// headers of the request each hit answers (extproc/stream_cors.go).
func TestEntriesHoldNoCORSHeaders(t *testing.T) {
	t.Parallel()
	upstream := map[string]string{
		"content-type": "application/json", "vary": "Origin", "access-control-allow-origin": "https://a.example.com",
		"access-control-expose-headers": "x-request-id", "access-control-allow-credentials": "true",
	}
	want := map[string]string{"content-type": "application/json"}
	if got := cachefilter.StoredHeaders(maps.All(upstream)); !maps.Equal(got, want) {
		t.Errorf("StoredHeaders = %v, want %v", got, want)
	}
	if _, ok := cachefilter.Storable("GET", cachefilter.Map{}, cachefilter.Map{"vary": "Origin"}, 200, time.Minute); !ok {
		t.Error("a response that varies by Origin is not storable")
	}

	c := cachefilter.NewMemory(cachefilter.Options{MaxBytes: 1 << 20})
	ctx := context.Background()
	keyFor := func(origin string) string {
		t.Helper()
		k, err := cachefilter.KeyFor("proj_1", "GET", "/v1/models", "", nil, cachefilter.Variant(cachefilter.Map{"origin": origin}))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if a, b := keyFor("https://a.example.com"), keyFor("https://b.example.com"); a != b {
		t.Fatalf("keys differ by Origin: %s, %s", a, b)
	}
	if err := c.Set(ctx, "proj_1", keyFor("https://a.example.com"), &cachefilter.Entry{Status: 200, Header: upstream, Body: []byte(`{}`), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	e, ok, err := c.Get(ctx, "proj_1", keyFor("https://b.example.com"))
	if err != nil || !ok {
		t.Fatalf("Get: %v, %v", ok, err)
	}
	if !maps.Equal(e.Header, want) {
		t.Errorf("stored headers %v, want %v", e.Header, want)
	}
}
