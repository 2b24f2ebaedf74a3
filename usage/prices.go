package usage

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"
)

// Price is what a model costs, in USD per million tokens.
type Price struct {
	InputPerMTok float64 `json:"input_per_mtok"`
	// CachedInputPerMTok is the rate of prompt tokens served from the prompt
	// cache. In a price file it defaults to the input rate.
	CachedInputPerMTok float64 `json:"cached_input_per_mtok"`
	OutputPerMTok      float64 `json:"output_per_mtok"`
}

// Prices is a versioned price table. Its methods do not modify it and are
// safe for concurrent use as long as nobody else does.
type Prices struct {
	// Version names the table, e.g. "2026-11-01"; usage events and the usage
	// roll-up record it next to each cost.
	Version string `json:"version"`
	// Models maps a model name, or a model family prefix (see
	// [Prices.Lookup]), to its price.
	Models map[string]Price `json:"models"`
}

//go:embed prices.json
var defaultPricesJSON []byte

// maxPricePerMTok bounds a price so that cost arithmetic cannot overflow.
const maxPricePerMTok = 1e6

// DefaultPrices returns the embedded price table (prices.json): OpenAI's
// public standard-tier list prices as of its version. Each call returns a new
// table the caller may modify.
func DefaultPrices() *Prices {
	p, err := parsePrices(defaultPricesJSON)
	if err != nil {
		panic("usage: embedded prices.json: " + err.Error()) // a build defect; a test guards it
	}
	return p
}

// LoadPrices reads a price table file, which replaces the default table as a
// whole. The file has the shape of prices.json:
//
//	{"version": "2026-11-01", "models": {"gpt-4o": {"input_per_mtok": 2.5,
//	  "cached_input_per_mtok": 1.25, "output_per_mtok": 10}}}
//
// Decoding is strict: unknown fields and trailing data are errors, version and
// at least one model are required, every model needs input_per_mtok and
// output_per_mtok (cached_input_per_mtok defaults to the input rate), and a
// price must be between 0 and 1,000,000. Errors name the field; all problems
// are reported at once.
func LoadPrices(path string) (*Prices, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load prices: %w", err)
	}
	p, err := parsePrices(b)
	if err != nil {
		return nil, fmt.Errorf("load prices %s: %w", path, err)
	}
	return p, nil
}

// priceFile is the file form of [Prices], with presence visible.
type priceFile struct {
	Version *string               `json:"version"`
	Models  map[string]priceEntry `json:"models"`
}

type priceEntry struct {
	Input       *float64 `json:"input_per_mtok"`
	CachedInput *float64 `json:"cached_input_per_mtok"`
	Output      *float64 `json:"output_per_mtok"`
}

func parsePrices(b []byte) (*Prices, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f priceFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the price table")
	}
	var errs []error
	if f.Version == nil || strings.TrimSpace(*f.Version) == "" {
		errs = append(errs, errors.New("version: required"))
	}
	if len(f.Models) == 0 {
		errs = append(errs, errors.New("models: at least one model required"))
	}
	p := &Prices{Models: make(map[string]Price, len(f.Models))}
	if f.Version != nil {
		p.Version = *f.Version
	}
	for _, name := range slices.Sorted(maps.Keys(f.Models)) {
		e := f.Models[name]
		if strings.TrimSpace(name) == "" {
			errs = append(errs, fmt.Errorf("models[%q]: empty model name", name))
			continue
		}
		check := func(field string, v *float64, required bool) float64 {
			switch {
			case v == nil && required:
				errs = append(errs, fmt.Errorf("models[%q].%s: required", name, field))
			case v == nil:
			case *v < 0:
				errs = append(errs, fmt.Errorf("models[%q].%s: must not be negative, got %g", name, field, *v))
			case *v > maxPricePerMTok:
				errs = append(errs, fmt.Errorf("models[%q].%s: must not exceed %g, got %g", name, field, float64(maxPricePerMTok), *v))
			default:
				return *v
			}
			return 0
		}
		pr := Price{
			InputPerMTok:  check("input_per_mtok", e.Input, true),
			OutputPerMTok: check("output_per_mtok", e.Output, true),
		}
		pr.CachedInputPerMTok = pr.InputPerMTok
		if e.CachedInput != nil {
			pr.CachedInputPerMTok = check("cached_input_per_mtok", e.CachedInput, false)
		}
		p.Models[name] = pr
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// Lookup returns the price of model: the entry of that exact name, else the
// entry of the longest name that model extends with '-' and more. So
// "gpt-4o-2024-08-06" is priced as "gpt-4o" and "gpt-4o-mini-2024-07-18" as
// "gpt-4o-mini", while "gpt-4o" never prices "gpt-4o1" or "gpt-4.1". A nil
// table knows no model.
func (p *Prices) Lookup(model string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	if pr, ok := p.Models[model]; ok {
		return pr, true
	}
	for i := len(model) - 1; i > 0; i-- {
		if model[i] == '-' {
			if pr, ok := p.Models[model[:i]]; ok {
				return pr, true
			}
		}
	}
	return Price{}, false
}

// Cost returns what u cost on model, in micro-USD (1e-6 USD), rounded up:
// the prompt tokens not served from cache at the input rate, the cached ones
// at the cached rate (and only there), the completion tokens at the output
// rate. Cached tokens beyond the prompt count as prompt; negative counts as
// zero. The arithmetic is exact in integers (rates kept to 1e-6 USD per
// million tokens) and saturates at math.MaxInt64. known is false, and the
// cost 0, for a model [Prices.Lookup] does not know.
func (p *Prices) Cost(model string, u Usage) (microUSD int64, known bool) {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0, false
	}
	prompt := max(u.PromptTokens, 0)
	cached := min(max(u.CachedTokens, 0), prompt)
	completion := max(u.CompletionTokens, 0)
	return cost(prompt-cached, pr.InputPerMTok, cached, pr.CachedInputPerMTok, completion, pr.OutputPerMTok), true
}

// Estimate returns an upper bound, in micro-USD rounded up, of what a request
// can cost on model before it runs, for a budget reservation: promptTokens at
// the full input rate (the cache discount is not assumed) plus
// maxOutputTokens at the output rate. For n choices pass n times the maximum
// output. It returns 0 for a model [Prices.Lookup] does not know; call Lookup
// to tell that apart from a free request.
func (p *Prices) Estimate(model string, promptTokens, maxOutputTokens int64) int64 {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0
	}
	return cost(max(promptTokens, 0), pr.InputPerMTok, 0, 0, max(maxOutputTokens, 0), pr.OutputPerMTok)
}

// cost sums tokens × rate over three terms exactly, in 128 bits. A rate in USD
// per million tokens is, scaled by 1e6, a count of 1e-12 USD per token, so the
// sum is in 1e-12 USD and divides by 1e6 into micro-USD.
func cost(t1 int64, r1 float64, t2 int64, r2 float64, t3 int64, r3 float64) int64 {
	var hi, lo uint64
	for _, term := range [3]struct {
		tokens int64
		rate   float64
	}{{t1, r1}, {t2, r2}, {t3, r3}} {
		h, l := bits.Mul64(uint64(term.tokens), picoRate(term.rate))
		var carry uint64
		lo, carry = bits.Add64(lo, l, 0)
		hi, _ = bits.Add64(hi, h, carry)
	}
	const scale = 1e6
	if hi >= scale {
		return math.MaxInt64
	}
	q, rem := bits.Div64(hi, lo, scale)
	if rem > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// picoRate converts USD per million tokens to 1e-12 USD per token, clamped to
// [0, maxPricePerMTok].
func picoRate(perMTok float64) uint64 {
	if !(perMTok > 0) { // also NaN
		return 0
	}
	return uint64(math.Round(min(perMTok, maxPricePerMTok) * 1e6))
}
