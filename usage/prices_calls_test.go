package usage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCallCost: a route billed per call costs its price once per call,
// rounded up to the micro-USD; a route the table does not name is unknown
// (never a silent zero), and only the exact "METHOD /path" matches.
func TestCallCost(t *testing.T) {
	p := DefaultPrices()
	const search = "POST /v1/vector_stores/{vector_store_id}/search"
	for _, tc := range []struct {
		route string
		cost  int64
		known bool
	}{
		{search, 2_500, true}, // $2.50 per 1,000 calls
		{"GET /v1/vector_stores/{vector_store_id}/search", 0, false},
		{"POST /v1/vector_stores/vs_1/search", 0, false}, // a request path, not the route
		{"POST /v1/vector_stores", 0, false},
	} {
		if cost, known := p.CallCost(tc.route); cost != tc.cost || known != tc.known {
			t.Errorf("CallCost(%q) = %d, %v; want %d, %v", tc.route, cost, known, tc.cost, tc.known)
		}
	}
	odd := &Prices{Calls: map[string]float64{"POST /x": 0.0000001}}
	if cost, _ := odd.CallCost("POST /x"); cost != 1 {
		t.Errorf("a tenth of a micro-USD costs %d, want 1 (rounded up)", cost)
	}
	var none *Prices
	if _, known := none.CallCost(search); known {
		t.Error("a nil table knows a call price")
	}
}

// TestLoadPricesCalls: the calls section is checked like every price, and
// its keys must be routes as the allowlist writes them.
func TestLoadPricesCalls(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, calls string
		wantErr     []string
	}{
		{name: "valid", calls: `{"POST /v1/vector_stores/{vector_store_id}/search":0.0025}`},
		{name: "bad", calls: `{"post /v1/x":1,"POST":1,"POST v1/x":1,"POST /v1/x?y":1,"POST /v1/a":-1,"POST /v1/b":null}`,
			wantErr: []string{`calls["post /v1/x"]: want "METHOD /path"`, `calls["POST"]: want`, `calls["POST v1/x"]: want`,
				`calls["POST /v1/x?y"]: want`, `calls["POST /v1/a"]: must not be negative`, `calls["POST /v1/b"]: required`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".json")
			file := `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},"calls":` + tc.calls + `}`
			if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := LoadPrices(path)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := p.Calls["POST /v1/vector_stores/{vector_store_id}/search"]; got != 0.0025 {
					t.Errorf("calls price %g, want 0.0025", got)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadPrices = %+v, want an error", p)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}
