package usage

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultPrices(t *testing.T) {
	p := DefaultPrices()
	if p.Version != "2026-11-01" {
		t.Errorf("Version = %q", p.Version)
	}
	for _, model := range []string{
		"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini",
		"gpt-5-nano", "o3", "o3-mini", "o4-mini", "gpt-3.5-turbo", "text-embedding-3-small", "text-embedding-3-large",
	} {
		pr, ok := p.Models[model]
		if !ok {
			t.Errorf("no price for %s", model)
			continue
		}
		if pr.InputPerMTok <= 0 || pr.CachedInputPerMTok <= 0 || pr.CachedInputPerMTok > pr.InputPerMTok || pr.OutputPerMTok < 0 {
			t.Errorf("%s: implausible price %+v", model, pr)
		}
	}
	// Each call returns a table of its own.
	p.Models["gpt-4o"] = Price{}
	if DefaultPrices().Models["gpt-4o"] == (Price{}) {
		t.Error("DefaultPrices shares its map")
	}
}

func TestLookup(t *testing.T) {
	p := DefaultPrices()
	for _, tc := range []struct {
		model, want string // want "" = unknown
	}{
		{"gpt-4o", "gpt-4o"},
		{"gpt-4o-2024-08-06", "gpt-4o"},
		{"gpt-4o-2024-05-13", "gpt-4o-2024-05-13"},
		{"gpt-4o-mini", "gpt-4o-mini"},
		{"gpt-4o-mini-2024-07-18", "gpt-4o-mini"},
		{"gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"},
		{"gpt-5-chat-latest", "gpt-5"},
		{"gpt-5-mini-2025-08-07", "gpt-5-mini"},
		{"o3-mini-2025-01-31", "o3-mini"},
		{"o3-2025-04-16", "o3"},
		{"o4-mini-deep-research-2025-06-26", "o4-mini-deep-research"},
		{"gpt-4-turbo-2024-04-09", "gpt-4-turbo"},
		{"gpt-4-0613", "gpt-4"},
		{"gpt-3.5-turbo-0125", "gpt-3.5-turbo"},
		{"text-embedding-3-small", "text-embedding-3-small"},
		{"gpt-4o1", ""},
		{"gpt-4.5-preview", ""},
		{"gpt-4-", "gpt-4"},
		{"-", ""},
		{"", ""},
		{"ft:gpt-4o-mini-2024-07-18:org::x", ""},
	} {
		got, ok := p.Lookup(tc.model)
		want, wantOK := p.Models[tc.want]
		if ok != wantOK || got != want {
			t.Errorf("Lookup(%q) = %+v, %v; want %s's %+v", tc.model, got, ok, tc.want, want)
		}
	}
	var nilPrices *Prices
	if _, ok := nilPrices.Lookup("gpt-4o"); ok {
		t.Error("nil table knows gpt-4o")
	}
}

func TestCost(t *testing.T) {
	p := &Prices{Version: "t", Models: map[string]Price{
		"m":     {InputPerMTok: 2.5, CachedInputPerMTok: 1.25, OutputPerMTok: 10},
		"cheap": {InputPerMTok: 0.15, CachedInputPerMTok: 0.075, OutputPerMTok: 0.6},
		"nano":  {InputPerMTok: 0.05, CachedInputPerMTok: 0.005, OutputPerMTok: 0.4},
		"free":  {},
		"max":   {InputPerMTok: 1e6, OutputPerMTok: 1e6},
	}}
	for _, tc := range []struct {
		name  string
		model string
		u     Usage
		want  int64
		known bool
	}{
		{"million prompt tokens", "m", Usage{PromptTokens: 1_000_000}, 2_500_000, true},
		{"million completion tokens", "m", Usage{CompletionTokens: 1_000_000}, 10_000_000, true},
		{"cached billed once at the cached rate", "m", Usage{PromptTokens: 1_000_000, CachedTokens: 400_000}, 600_000*5/2 + 400_000*5/4, true},
		{"all cached", "m", Usage{PromptTokens: 1000, CachedTokens: 1000}, 1250, true},
		{"cached beyond prompt clamps", "m", Usage{PromptTokens: 1000, CachedTokens: 5000}, 1250, true},
		{"rounds up", "m", Usage{PromptTokens: 1}, 3, true}, // 2.5 µUSD
		{"no float error", "cheap", Usage{PromptTokens: 1000, CompletionTokens: 1000}, 750, true},
		{"tiny rates", "nano", Usage{PromptTokens: 1000, CachedTokens: 1000}, 5, true},
		{"tiny rates round up", "nano", Usage{PromptTokens: 1, CachedTokens: 1}, 1, true},
		{"zero usage", "m", Usage{}, 0, true},
		{"negative counts as zero", "m", Usage{PromptTokens: -5, CompletionTokens: -1, CachedTokens: -3}, 0, true},
		{"free model", "free", Usage{PromptTokens: 1e9, CompletionTokens: 1e9}, 0, true},
		{"saturates", "max", Usage{PromptTokens: math.MaxInt64, CompletionTokens: math.MaxInt64}, math.MaxInt64, true},
		{"family prefix", "m-2025-01-01", Usage{PromptTokens: 1_000_000}, 2_500_000, true},
		{"unknown model", "other", Usage{PromptTokens: 1000}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, known := p.Cost(tc.model, tc.u)
			if got != tc.want || known != tc.known {
				t.Errorf("Cost = %d, %v; want %d, %v", got, known, tc.want, tc.known)
			}
		})
	}
}

func TestEstimate(t *testing.T) {
	p := DefaultPrices()
	for _, tc := range []struct {
		model             string
		prompt, maxOutput int64
		want              int64
	}{
		{"gpt-4o", 1000, 500, 2500 + 5000},
		{"gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000, 150_000 + 600_000},
		{"gpt-5-nano", 1, 1, 1},
		{"text-embedding-3-small", 1_000_000, 0, 20_000},
		{"gpt-4o", -1, -1, 0},
		{"unknown", 1000, 1000, 0},
	} {
		if got := p.Estimate(tc.model, tc.prompt, tc.maxOutput); got != tc.want {
			t.Errorf("Estimate(%s, %d, %d) = %d, want %d", tc.model, tc.prompt, tc.maxOutput, got, tc.want)
		}
	}
	// The estimate bounds the cost of any usage within it.
	u := Usage{PromptTokens: 1000, CachedTokens: 800, CompletionTokens: 500}
	if cost, _ := p.Cost("gpt-4o", u); cost > p.Estimate("gpt-4o", 1000, 500) {
		t.Errorf("cost %d above estimate", cost)
	}
}

func TestLoadPrices(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		file    string
		wantErr []string // substrings of the error; none = success
		check   func(*testing.T, *Prices)
	}{
		{name: "valid", file: `{"version":"v1","models":{"m":{"input_per_mtok":1,"cached_input_per_mtok":0.5,"output_per_mtok":2},"e":{"input_per_mtok":0.02,"output_per_mtok":0}}}`,
			check: func(t *testing.T, p *Prices) {
				if p.Version != "v1" || p.Models["m"] != (Price{1, 0.5, 2}) || p.Models["e"] != (Price{0.02, 0.02, 0}) {
					t.Errorf("loaded %+v", p)
				}
			}},
		{name: "unknown top-level field", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},"currency":"EUR"}`,
			wantErr: []string{`"currency"`}},
		{name: "unknown price field", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1,"batch_per_mtok":1}}}`,
			wantErr: []string{`"batch_per_mtok"`}},
		{name: "negative", file: `{"version":"v","models":{"m":{"input_per_mtok":-1,"output_per_mtok":1,"cached_input_per_mtok":-2}}}`,
			wantErr: []string{`models["m"].input_per_mtok: must not be negative`, `models["m"].cached_input_per_mtok: must not be negative`}},
		{name: "too large", file: `{"version":"v","models":{"m":{"input_per_mtok":1e7,"output_per_mtok":1}}}`,
			wantErr: []string{`models["m"].input_per_mtok: must not exceed`}},
		{name: "missing version and prices", file: `{"models":{"m":{"cached_input_per_mtok":1}}}`,
			wantErr: []string{"version: required", `models["m"].input_per_mtok: required`, `models["m"].output_per_mtok: required`}},
		{name: "blank version", file: `{"version":" ","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}}}`,
			wantErr: []string{"version: required"}},
		{name: "no models", file: `{"version":"v","models":{}}`, wantErr: []string{"models: at least one model"}},
		{name: "empty model name", file: `{"version":"v","models":{"":{"input_per_mtok":1,"output_per_mtok":1}}}`,
			wantErr: []string{"empty model name"}},
		{name: "wrong type", file: `{"version":"v","models":{"m":{"input_per_mtok":"1","output_per_mtok":1}}}`,
			wantErr: []string{"input_per_mtok"}},
		{name: "trailing data", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}}} {}`,
			wantErr: []string{"unexpected data"}},
		{name: "not JSON", file: `version: v`, wantErr: []string{"invalid character"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := LoadPrices(path)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("LoadPrices: %v", err)
				}
				tc.check(t, p)
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
	if _, err := LoadPrices(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("LoadPrices of a missing file succeeded")
	}
}

// TestEmbeddedPricesFile checks prices.json loads through LoadPrices too.
func TestEmbeddedPricesFile(t *testing.T) {
	p, err := LoadPrices("prices.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Models) != len(DefaultPrices().Models) {
		t.Errorf("LoadPrices(prices.json) has %d models, DefaultPrices %d", len(p.Models), len(DefaultPrices().Models))
	}
}
