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
	if p.Version != "2026-12-02" {
		t.Errorf("Version = %q", p.Version)
	}
	if p.BatchMultiplier != 0.5 {
		t.Errorf("BatchMultiplier = %g", p.BatchMultiplier)
	}
	for _, model := range []string{"gpt-image-1", "gpt-image-1-mini", "gpt-4o-mini-tts", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"} {
		if pr, ok := p.Models[model]; !ok || pr.InputPerMTok <= 0 || pr.OutputPerMTok <= 0 || pr.ImageInputPerMTok < pr.InputPerMTok {
			t.Errorf("%s: implausible price %+v (%v)", model, pr, ok)
		}
	}
	if len(p.Images["dall-e-3"]) != 6 || len(p.Images["dall-e-2"]) != 3 {
		t.Errorf("Images = %v", p.Images)
	}
	for _, model := range []string{"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} {
		if p.CharactersPerM[model] <= 0 {
			t.Errorf("no price per character for %s", model)
		}
	}
	if p.AudioPerMinute["whisper-1"] <= 0 {
		t.Error("no price per minute for whisper-1")
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
	p.Images["dall-e-3"]["1024x1024/hd"] = 0
	if q := DefaultPrices(); q.Models["gpt-4o"] == (Price{}) || q.Images["dall-e-3"]["1024x1024/hd"] == 0 {
		t.Error("DefaultPrices shares its maps")
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
		// Audio and image models are not priced as the chat model they extend.
		{"gpt-4o-mini-tts", "gpt-4o-mini-tts"},
		{"gpt-4o-mini-tts-2025-12-15", "gpt-4o-mini-tts"},
		{"gpt-4o-transcribe", "gpt-4o-transcribe"},
		{"gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-mini-transcribe"},
		{"gpt-image-1-mini", "gpt-image-1-mini"},
		{"gpt-image-1.5", ""},
		{"dall-e-3", ""},
		{"tts-1", ""},
		{"whisper-1", ""},
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

func TestCostImageTokens(t *testing.T) {
	p := DefaultPrices()
	for _, tc := range []struct {
		name  string
		model string
		u     Usage
		want  int64
	}{
		// gpt-image-1: text $5, cached $1.25, image input $10, output $40 per 1M.
		{"edit: text and image input, one high 1024x1024 image", "gpt-image-1",
			Usage{PromptTokens: 1000, ImageTokens: 800, CompletionTokens: 4160}, 200*5 + 800*10 + 4160*40},
		{"generation: text input only", "gpt-image-1", Usage{PromptTokens: 50, CompletionTokens: 1056}, 250 + 1056*40},
		{"image tokens beyond the prompt clamp", "gpt-image-1", Usage{PromptTokens: 100, ImageTokens: 500}, 1000},
		{"cached first, then image tokens", "gpt-image-1", Usage{PromptTokens: 1000, CachedTokens: 300, ImageTokens: 800}, 375 + 7000},
		{"negative image tokens", "gpt-image-1", Usage{PromptTokens: 100, ImageTokens: -5}, 500},
		{"mini", "gpt-image-1-mini", Usage{PromptTokens: 1000, ImageTokens: 1000, CompletionTokens: 1000}, 2500 + 8000},
		// Text models price image tokens at the input rate, as before.
		{"text model", "gpt-4o", Usage{PromptTokens: 1000, ImageTokens: 1000}, 2500},
		// Transcription input is priced at the audio input rate.
		{"gpt-4o-transcribe", "gpt-4o-transcribe", Usage{PromptTokens: 14, CompletionTokens: 45, TotalTokens: 59}, 14*6 + 45*10},
		{"gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe", Usage{PromptTokens: 1000, CompletionTokens: 1000}, 3000 + 5000},
		{"gpt-4o-mini-tts streamed usage", "gpt-4o-mini-tts", Usage{PromptTokens: 877, CompletionTokens: 5393}, 527 + 5393*12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, known := p.Cost(tc.model, tc.u); got != tc.want || !known {
				t.Errorf("Cost = %d, %v; want %d", got, known, tc.want)
			}
		})
	}
}

func TestBatchCost(t *testing.T) {
	p := DefaultPrices()
	custom := &Prices{Models: map[string]Price{
		"m":   {InputPerMTok: 2.5, OutputPerMTok: 10},
		"r":   {InputPerMTok: 3.2},
		"max": {InputPerMTok: 1e6, OutputPerMTok: 1e6},
	}}
	for _, tc := range []struct {
		name  string
		p     *Prices
		mult  float64 // set on p when not 0
		model string
		u     Usage
		want  int64
		known bool
	}{
		{"million prompt tokens at half price", p, 0, "gpt-4o", Usage{PromptTokens: 1_000_000}, 1_250_000, true},
		{"cached and completion", p, 0, "gpt-4o", Usage{PromptTokens: 1000, CachedTokens: 400, CompletionTokens: 500}, (1500 + 500 + 5000) / 2, true},
		{"embeddings", p, 0, "text-embedding-3-small", Usage{PromptTokens: 1_000_000, TotalTokens: 1_000_000}, 10_000, true},
		{"rounds up once", p, 0, "gpt-4o", Usage{PromptTokens: 1}, 2, true},                        // 2.5 × 0.5 = 1.25 µUSD
		{"tiny rates", p, 0, "gpt-5-nano", Usage{PromptTokens: 10, CompletionTokens: 10}, 3, true}, // (0.5+4) × 0.5 = 2.25
		{"family prefix", p, 0, "gpt-4o-mini-2024-07-18", Usage{PromptTokens: 1_000_000}, 75_000, true},
		{"unknown model", p, 0, "other", Usage{PromptTokens: 1000}, 0, false},
		{"a quarter", custom, 0.25, "m", Usage{PromptTokens: 3}, 2, true},     // 7.5 × 0.25 = 1.875
		{"rounds up once", custom, 0.3, "r", Usage{PromptTokens: 1}, 1, true}, // 3.2 × 0.3 = 0.96, not ⌈3.2⌉ × 0.3 = 1.2
		{"no discount", custom, 1, "m", Usage{PromptTokens: 1_000_000}, 2_500_000, true},
		{"zero in code means the default", custom, 0, "m", Usage{PromptTokens: 1_000_000}, 1_250_000, true},
		{"above 1 in code clamps", custom, 3, "m", Usage{PromptTokens: 1_000_000}, 2_500_000, true},
		{"saturates", custom, 0, "max", Usage{PromptTokens: math.MaxInt64, CompletionTokens: math.MaxInt64}, math.MaxInt64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.p == custom {
				custom.BatchMultiplier = tc.mult
			}
			got, known := tc.p.BatchCost(tc.model, tc.u)
			if got != tc.want || known != tc.known {
				t.Errorf("BatchCost = %d, %v; want %d, %v", got, known, tc.want, tc.known)
			}
			if std, _ := tc.p.Cost(tc.model, tc.u); got > std {
				t.Errorf("BatchCost %d above Cost %d", got, std)
			}
		})
	}
}

func TestImageCost(t *testing.T) {
	p := DefaultPrices()
	for _, tc := range []struct {
		model, size, quality string
		n                    int64
		want                 int64
		known                bool
	}{
		{"dall-e-3", "1024x1792", "hd", 3, 360_000, true},
		{"dall-e-3", "1792x1024", "hd", 1, 120_000, true},
		{"dall-e-3", "1024x1024", "hd", 1, 80_000, true},
		{"dall-e-3", "1024x1792", "standard", 1, 80_000, true},
		{"dall-e-3", "1024x1024", "standard", 1, 40_000, true},
		{"dall-e-3", "", "", 1, 40_000, true},          // OpenAI's defaults
		{"dall-e-3", "auto", "auto", 1, 40_000, true},  // the same
		{"dall-e-3", "1792x1024", "", 1, 80_000, true}, // standard
		{"dall-e-3", "", "hd", 1, 80_000, true},        // 1024x1024
		{"dall-e-3", "512x512", "", 1, 0, false},       // dall-e-2 only
		{"dall-e-3", "1024x1024", "ultra", 1, 0, false},
		{"dall-e-2", "256x256", "", 10, 160_000, true},
		{"dall-e-2", "512x512", "standard", 2, 36_000, true}, // one quality: priced by size
		{"dall-e-2", "", "", 1, 20_000, true},
		{"dall-e-2", "1024x1024", "", 0, 0, true},
		{"dall-e-2", "1024x1024", "", -1, 0, true},
		{"dall-e-2", "1792x1024", "", 1, 0, false},
		{"dall-e-3-preview", "", "", 1, 40_000, true},     // family prefix
		{"gpt-image-1", "1024x1024", "high", 1, 0, false}, // token-priced
		{"other", "1024x1024", "", 1, 0, false},
	} {
		if got, known := p.ImageCost(tc.model, tc.size, tc.quality, tc.n); got != tc.want || known != tc.known {
			t.Errorf("ImageCost(%q, %q, %q, %d) = %d, %v; want %d, %v", tc.model, tc.size, tc.quality, tc.n, got, known, tc.want, tc.known)
		}
	}
	var nilPrices *Prices
	if _, known := nilPrices.ImageCost("dall-e-2", "", "", 1); known {
		t.Error("nil table knows dall-e-2")
	}
	huge := &Prices{Images: map[string]map[string]float64{"m": {"1x1": 1e6}}}
	if got, _ := huge.ImageCost("m", "1x1", "", math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("ImageCost does not saturate: %d", got)
	}
}

func TestSpeechCost(t *testing.T) {
	p := DefaultPrices()
	for _, tc := range []struct {
		model string
		chars int64
		want  int64
		known bool
	}{
		{"tts-1", 4095, 61_425, true}, // $15 per 1M characters
		{"tts-1", 1, 15, true},
		{"tts-1-hd", 1000, 30_000, true},
		{"tts-1-hd-1106", 1000, 30_000, true}, // the longest family prefix
		{"tts-1-1106", 1000, 15_000, true},
		{"gpt-4o-mini-tts", 4096, 65_536, true}, // the per-character equivalent, $16 per 1M
		{"tts-1", 0, 0, true},
		{"tts-1", -5, 0, true},
		{"whisper-1", 1000, 0, false},
		{"gpt-4o", 1000, 0, false},
	} {
		if got, known := p.SpeechCost(tc.model, tc.chars); got != tc.want || known != tc.known {
			t.Errorf("SpeechCost(%q, %d) = %d, %v; want %d, %v", tc.model, tc.chars, got, known, tc.want, tc.known)
		}
	}
	var nilPrices *Prices
	if _, known := nilPrices.SpeechCost("tts-1", 1); known {
		t.Error("nil table knows tts-1")
	}
}

func TestAudioCost(t *testing.T) {
	p := DefaultPrices()
	for _, tc := range []struct {
		model   string
		seconds float64
		want    int64
		known   bool
	}{
		{"whisper-1", 60, 6000, true}, // $0.006 per minute = 100 µUSD per second
		{"whisper-1", 3600, 360_000, true},
		{"whisper-1", 3, 300, true},
		{"whisper-1", 8.470000267028809, 900, true}, // billed as 9 s, as OpenAI reports it
		{"whisper-1", 3.0000001, 400, true},
		{"whisper-1", 0.4, 100, true},
		{"whisper-1", 0, 0, true},
		{"whisper-1", -2, 0, true},
		{"whisper-1", math.NaN(), 0, true},
		{"whisper-1", 1e30, math.MaxInt64, true},
		{"whisper-1", math.Inf(1), math.MaxInt64, true},
		{"gpt-4o-transcribe", 60, 0, false}, // token-priced
		{"other", 60, 0, false},
	} {
		if got, known := p.AudioCost(tc.model, tc.seconds); got != tc.want || known != tc.known {
			t.Errorf("AudioCost(%q, %g) = %d, %v; want %d, %v", tc.model, tc.seconds, got, known, tc.want, tc.known)
		}
	}
	var nilPrices *Prices
	if _, known := nilPrices.AudioCost("whisper-1", 1); known {
		t.Error("nil table knows whisper-1")
	}
	// A per-minute price that is not a whole number of µUSD per second.
	odd := &Prices{AudioPerMinute: map[string]float64{"m": 0.001}}
	if got, _ := odd.AudioCost("m", 7); got != 117 { // 7 × 1000/60 = 116.67
		t.Errorf("AudioCost(7 s at $0.001/min) = %d, want 117", got)
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
		{"gpt-image-1", 1000, 4160, 10_000 + 166_400}, // the prompt at the image input rate
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
				if p.Version != "v1" || p.Models["m"] != (Price{InputPerMTok: 1, CachedInputPerMTok: 0.5, OutputPerMTok: 2, ImageInputPerMTok: 1}) || p.Models["e"] != (Price{InputPerMTok: 0.02, CachedInputPerMTok: 0.02, ImageInputPerMTok: 0.02}) {
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
		{name: "every section", file: `{"version":"v2","batch_multiplier":0.25,
			"models":{"img":{"input_per_mtok":5,"image_input_per_mtok":10,"output_per_mtok":40}},
			"images":{"d3":{"1024x1024/standard":0.04,"1024x1024/hd":0.08},"d2":{"256x256":0.016}},
			"characters_per_m":{"tts":15},"audio_per_minute":{"w":0.006}}`,
			check: func(t *testing.T, p *Prices) {
				if p.BatchMultiplier != 0.25 || p.Models["img"] != (Price{InputPerMTok: 5, CachedInputPerMTok: 5, ImageInputPerMTok: 10, OutputPerMTok: 40}) ||
					p.Images["d3"]["1024x1024/hd"] != 0.08 || p.Images["d2"]["256x256"] != 0.016 ||
					p.CharactersPerM["tts"] != 15 || p.AudioPerMinute["w"] != 0.006 {
					t.Errorf("loaded %+v", p)
				}
			}},
		{name: "optional sections absent", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}}}`,
			check: func(t *testing.T, p *Prices) {
				if p.BatchMultiplier != DefaultBatchMultiplier || p.Images != nil || p.CharactersPerM != nil || p.AudioPerMinute != nil {
					t.Errorf("loaded %+v", p)
				}
				if _, known := p.ImageCost("dall-e-2", "", "", 1); known {
					t.Error("a table without images knows dall-e-2")
				}
			}},
		{name: "batch_multiplier zero", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},"batch_multiplier":0}`,
			wantErr: []string{"batch_multiplier: must be at least"}},
		{name: "batch_multiplier above 1", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},"batch_multiplier":1.5}`,
			wantErr: []string{"batch_multiplier: must be at least 1e-06 and at most 1, got 1.5"}},
		{name: "batch_multiplier string", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},"batch_multiplier":"0.5"}`,
			wantErr: []string{"batch_multiplier"}},
		{name: "bad image_input_per_mtok", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1,"image_input_per_mtok":-1}}}`,
			wantErr: []string{`models["m"].image_input_per_mtok: must not be negative`}},
		{name: "bad images", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},
			"images":{"d3":{"1024x1024/hd":-0.08,"/hd":1,"1024x1024/":1,"a/b/c":1,"1x1":null,"2x2":2e6},"empty":{},"nil":null,"":{"1x1":1}}}`,
			wantErr: []string{`images["d3"]["1024x1024/hd"]: must not be negative`, `images["d3"]["/hd"]: want "SIZE" or "SIZE/QUALITY"`,
				`images["d3"]["1024x1024/"]: want`, `images["d3"]["a/b/c"]: want`, `images["d3"]["1x1"]: required`,
				`images["d3"]["2x2"]: must not exceed 1e+06`, `images["empty"]: at least one price required`,
				`images["nil"]: at least one price required`, `images[""]: empty model name`}},
		{name: "bad per-character and per-minute prices", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},
			"characters_per_m":{"tts-1":-15," ":1},"audio_per_minute":{"whisper-1":null}}`,
			wantErr: []string{`characters_per_m["tts-1"]: must not be negative`, `characters_per_m[" "]: empty model name`,
				`audio_per_minute["whisper-1"]: required`}},
		{name: "image price not a number", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},"images":{"d":{"1x1":"0.02"}}}`,
			wantErr: []string{"images"}},
		{name: "unknown section", file: `{"version":"v","models":{"m":{"input_per_mtok":1,"output_per_mtok":1}},"videos_per_second":{}}`,
			wantErr: []string{`"videos_per_second"`}},
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
	d := DefaultPrices()
	if len(p.Models) != len(d.Models) || len(p.Images) != len(d.Images) || len(p.CharactersPerM) != len(d.CharactersPerM) ||
		len(p.AudioPerMinute) != len(d.AudioPerMinute) || p.BatchMultiplier != d.BatchMultiplier {
		t.Errorf("LoadPrices(prices.json) = %+v, DefaultPrices %+v", p, d)
	}
}
