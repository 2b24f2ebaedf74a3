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
	// ImageInputPerMTok is the rate of the prompt tokens that are image tokens
	// ([Usage.ImageTokens]: the input images of a GPT image model's edit). In a
	// price file it defaults to the input rate.
	ImageInputPerMTok float64 `json:"image_input_per_mtok"`
}

// Prices is a versioned price table. Its methods do not modify it and are
// safe for concurrent use as long as nobody else does.
//
// Every model is looked up the same way in each of its maps (see
// [Prices.Lookup]): the exact name, else the longest family prefix.
type Prices struct {
	// Version names the table, e.g. "2026-11-01"; usage events and the usage
	// roll-up record it next to each cost.
	Version string `json:"version"`
	// Models maps a model name, or a model family prefix (see
	// [Prices.Lookup]), to its price.
	Models map[string]Price `json:"models"`
	// BatchMultiplier scales the token prices of work done through the Batch
	// API ([Prices.BatchCost]): OpenAI bills it at half the standard prices.
	// It is kept to 1e-6 (at least 1e-6) and clamped to at most 1; 0 (a table
	// built in code) means [DefaultBatchMultiplier].
	BatchMultiplier float64 `json:"batch_multiplier"`
	// Images maps an image model priced per image (dall-e-2, dall-e-3) to its
	// prices in USD per image, keyed "SIZE/QUALITY" ("1024x1792/hd") or, for a
	// model with one quality, "SIZE" ("512x512"). See [Prices.ImageCost].
	Images map[string]map[string]float64 `json:"images"`
	// CharactersPerM maps a speech model priced per input character (tts-1,
	// tts-1-hd) to USD per million characters. See [Prices.SpeechCost]. A
	// token-priced speech model whose audio response carries no usage
	// (gpt-4o-mini-tts) is listed here too, at a per-character equivalent of
	// its token prices.
	CharactersPerM map[string]float64 `json:"characters_per_m"`
	// AudioPerMinute maps a transcription or translation model priced by
	// audio duration (whisper-1) to USD per minute of audio. See
	// [Prices.AudioCost].
	AudioPerMinute map[string]float64 `json:"audio_per_minute"`
	// Calls maps a route billed per successful call, written "METHOD
	// /path" as the route allowlist writes it ("POST
	// /v1/vector_stores/{vector_store_id}/search"), to USD per call. See
	// [Prices.CallCost].
	Calls map[string]float64 `json:"calls"`
}

// DefaultBatchMultiplier is the Batch API's discount on token prices (50%),
// used when a price table sets no batch_multiplier.
const DefaultBatchMultiplier = 0.5

// minBatchMultiplier is the smallest batch multiplier a price file may set:
// multipliers are kept to 1e-6.
const minBatchMultiplier = 1e-6

// Defaults OpenAI applies to an image request that names no size or quality
// (or "auto"); [Prices.ImageCost] applies them too.
const (
	DefaultImageSize    = "1024x1024"
	DefaultImageQuality = "standard"
)

//go:embed prices.json
var defaultPricesJSON []byte

// maxPrice bounds every price of a table (per million tokens or characters,
// per image, per minute) so that cost arithmetic cannot overflow.
const maxPrice = 1e6

// DefaultPrices returns the embedded price table (prices.json): OpenAI's
// public standard-tier list prices as of its version, with the Batch API's
// 50% discount. Each call returns a new table the caller may modify.
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
//	{"version": "2026-11-01",
//	 "models": {"gpt-4o": {"input_per_mtok": 2.5, "cached_input_per_mtok": 1.25,
//	   "output_per_mtok": 10},
//	  "gpt-image-1": {"input_per_mtok": 5, "image_input_per_mtok": 10,
//	   "output_per_mtok": 40}},
//	 "batch_multiplier": 0.5,
//	 "images": {"dall-e-3": {"1024x1024/standard": 0.04, "1024x1024/hd": 0.08},
//	  "dall-e-2": {"1024x1024": 0.02}},
//	 "characters_per_m": {"tts-1": 15},
//	 "audio_per_minute": {"whisper-1": 0.006},
//	 "calls": {"POST /v1/vector_stores/{vector_store_id}/search": 0.0025}}
//
// Decoding is strict: unknown fields and trailing data are errors, version and
// at least one model are required, every model needs input_per_mtok and
// output_per_mtok (cached_input_per_mtok and image_input_per_mtok default to
// the input rate), and a price must be between 0 and 1,000,000. The sections
// after models are optional: batch_multiplier defaults to
// [DefaultBatchMultiplier] and must be between 0.000001 and 1; a model left out
// of images, characters_per_m or audio_per_minute is unknown to
// [Prices.ImageCost], [Prices.SpeechCost] or [Prices.AudioCost], and a route
// left out of calls to [Prices.CallCost]. An images model needs at least one
// price, keyed "SIZE" or "SIZE/QUALITY"; a calls key is "METHOD /path". Errors name
// the field; all problems are reported at once.
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
	Version         *string                        `json:"version"`
	Models          map[string]priceEntry          `json:"models"`
	BatchMultiplier *float64                       `json:"batch_multiplier"`
	Images          map[string]map[string]*float64 `json:"images"`
	CharactersPerM  map[string]*float64            `json:"characters_per_m"`
	AudioPerMinute  map[string]*float64            `json:"audio_per_minute"`
	Calls           map[string]*float64            `json:"calls"`
}

type priceEntry struct {
	Input       *float64 `json:"input_per_mtok"`
	CachedInput *float64 `json:"cached_input_per_mtok"`
	Output      *float64 `json:"output_per_mtok"`
	ImageInput  *float64 `json:"image_input_per_mtok"`
}

// priceChecker collects the problems of a price file.
type priceChecker struct{ errs []error }

func (c *priceChecker) add(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// price checks one price; field names it in errors. A missing optional price
// reads as 0.
func (c *priceChecker) price(field string, v *float64, required bool) float64 {
	switch {
	case v == nil && required:
		c.add("%s: required", field)
	case v == nil:
	case *v < 0:
		c.add("%s: must not be negative, got %g", field, *v)
	case *v > maxPrice:
		c.add("%s: must not exceed %g, got %g", field, float64(maxPrice), *v)
	default:
		return *v
	}
	return 0
}

// name checks a model name, the key of one of the table's maps.
func (c *priceChecker) name(section, name string) bool {
	if strings.TrimSpace(name) == "" {
		c.add("%s[%q]: empty model name", section, name)
		return false
	}
	return true
}

// rates checks a section mapping model names to one price each.
func (c *priceChecker) rates(section string, in map[string]*float64) map[string]float64 {
	if in == nil {
		return nil
	}
	out := make(map[string]float64, len(in))
	for _, name := range slices.Sorted(maps.Keys(in)) {
		if c.name(section, name) {
			out[name] = c.price(fmt.Sprintf("%s[%q]", section, name), in[name], true)
		}
	}
	return out
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
	var c priceChecker
	if f.Version == nil || strings.TrimSpace(*f.Version) == "" {
		c.add("version: required")
	}
	if len(f.Models) == 0 {
		c.add("models: at least one model required")
	}
	p := &Prices{Models: make(map[string]Price, len(f.Models)), BatchMultiplier: DefaultBatchMultiplier}
	if f.Version != nil {
		p.Version = *f.Version
	}
	for _, name := range slices.Sorted(maps.Keys(f.Models)) {
		if !c.name("models", name) {
			continue
		}
		e := f.Models[name]
		field := func(s string) string { return fmt.Sprintf("models[%q].%s", name, s) }
		pr := Price{
			InputPerMTok:  c.price(field("input_per_mtok"), e.Input, true),
			OutputPerMTok: c.price(field("output_per_mtok"), e.Output, true),
		}
		pr.CachedInputPerMTok, pr.ImageInputPerMTok = pr.InputPerMTok, pr.InputPerMTok
		if e.CachedInput != nil {
			pr.CachedInputPerMTok = c.price(field("cached_input_per_mtok"), e.CachedInput, false)
		}
		if e.ImageInput != nil {
			pr.ImageInputPerMTok = c.price(field("image_input_per_mtok"), e.ImageInput, false)
		}
		p.Models[name] = pr
	}
	if m := f.BatchMultiplier; m != nil {
		if *m >= minBatchMultiplier && *m <= 1 {
			p.BatchMultiplier = *m
		} else {
			c.add("batch_multiplier: must be at least %g and at most 1, got %g", minBatchMultiplier, *m)
		}
	}
	if f.Images != nil {
		p.Images = make(map[string]map[string]float64, len(f.Images))
	}
	for _, name := range slices.Sorted(maps.Keys(f.Images)) {
		if !c.name("images", name) {
			continue
		}
		sizes := f.Images[name]
		if len(sizes) == 0 {
			c.add("images[%q]: at least one price required", name)
			continue
		}
		out := make(map[string]float64, len(sizes))
		for _, key := range slices.Sorted(maps.Keys(sizes)) {
			field := fmt.Sprintf("images[%q][%q]", name, key)
			size, quality, tiered := strings.Cut(key, "/")
			if strings.TrimSpace(size) == "" || tiered && (strings.TrimSpace(quality) == "" || strings.Contains(quality, "/")) {
				c.add("%s: want \"SIZE\" or \"SIZE/QUALITY\"", field)
				continue
			}
			out[key] = c.price(field, sizes[key], true)
		}
		p.Images[name] = out
	}
	p.CharactersPerM = c.rates("characters_per_m", f.CharactersPerM)
	p.AudioPerMinute = c.rates("audio_per_minute", f.AudioPerMinute)
	if f.Calls != nil {
		p.Calls = make(map[string]float64, len(f.Calls))
	}
	for _, route := range slices.Sorted(maps.Keys(f.Calls)) {
		field := fmt.Sprintf("calls[%q]", route)
		method, path, ok := strings.Cut(route, " ")
		if !ok || method == "" || method != strings.ToUpper(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#") {
			c.add("%s: want \"METHOD /path\", as the route allowlist writes the route", field)
			continue
		}
		p.Calls[route] = c.price(field, f.Calls[route], true)
	}
	if err := errors.Join(c.errs...); err != nil {
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
	return lookup(p.Models, model)
}

// lookup finds model in m by its exact name, else its longest family prefix.
func lookup[V any](m map[string]V, model string) (V, bool) {
	if v, ok := m[model]; ok {
		return v, true
	}
	for i := len(model) - 1; i > 0; i-- {
		if model[i] == '-' {
			if v, ok := m[model[:i]]; ok {
				return v, true
			}
		}
	}
	var zero V
	return zero, false
}

// Cost returns what u cost on model, in micro-USD (1e-6 USD), rounded up:
// the prompt tokens not served from cache at the input rate, the cached ones
// at the cached rate (and only there), the image tokens among the rest at the
// image input rate, the completion tokens at the output rate. Cached tokens
// beyond the prompt count as prompt, image tokens beyond the uncached prompt
// as image tokens of it; negative counts as zero. The arithmetic is exact in
// integers (rates kept to 1e-6 USD per million tokens) and saturates at
// math.MaxInt64. known is false, and the cost 0, for a model [Prices.Lookup]
// does not know. Cost reads only token counts: see [Prices.AudioCost] for
// [Usage.Seconds].
func (p *Prices) Cost(model string, u Usage) (microUSD int64, known bool) {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0, false
	}
	return tokenCost(pr, u, 1e6), true
}

// BatchCost returns what u cost on model when it ran through the Batch API:
// the exact [Prices.Cost] times the table's BatchMultiplier, rounded up once,
// in micro-USD. known is false, and the cost 0, for a model [Prices.Lookup]
// does not know.
func (p *Prices) BatchCost(model string, u Usage) (microUSD int64, known bool) {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0, false
	}
	return tokenCost(pr, u, p.batchPPM()), true
}

// batchPPM is the batch multiplier in millionths.
func (p *Prices) batchPPM() uint64 {
	m := p.BatchMultiplier
	if !(m > 0) { // also NaN
		m = DefaultBatchMultiplier
	}
	return max(uint64(math.Round(min(m, 1)*1e6)), 1)
}

// tokenCost is [Prices.Cost] with every rate scaled by ppm millionths (at
// most 1e6, so a scaled rate stays within 1e18).
func tokenCost(pr Price, u Usage, ppm uint64) int64 {
	prompt := max(u.PromptTokens, 0)
	cached := min(max(u.CachedTokens, 0), prompt)
	image := min(max(u.ImageTokens, 0), prompt-cached)
	completion := max(u.CompletionTokens, 0)
	return costCeil(picoPerMicro*1e6,
		term{prompt - cached - image, picoRate(pr.InputPerMTok) * ppm},
		term{cached, picoRate(pr.CachedInputPerMTok) * ppm},
		term{image, picoRate(pr.ImageInputPerMTok) * ppm},
		term{completion, picoRate(pr.OutputPerMTok) * ppm})
}

// Estimate returns an upper bound, in micro-USD rounded up, of what a request
// can cost on model before it runs, for a budget reservation: promptTokens at
// the full input rate (or the image input rate if higher; the cache discount
// is not assumed) plus maxOutputTokens at the output rate. For n choices pass
// n times the maximum output. It returns 0 for a model [Prices.Lookup] does
// not know; call Lookup to tell that apart from a free request.
func (p *Prices) Estimate(model string, promptTokens, maxOutputTokens int64) int64 {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0
	}
	return costCeil(picoPerMicro,
		term{max(promptTokens, 0), picoRate(max(pr.InputPerMTok, pr.ImageInputPerMTok))},
		term{max(maxOutputTokens, 0), picoRate(pr.OutputPerMTok)})
}

// ImageCost returns what n images of size and quality cost on an image model
// priced per image (dall-e-2, dall-e-3), in micro-USD rounded up. An empty or
// "auto" size or quality is OpenAI's default, [DefaultImageSize] and
// [DefaultImageQuality]. The price is the model's "SIZE/QUALITY" entry, else
// its "SIZE" entry (a model with one quality, such as dall-e-2); negative n
// counts as zero. known is false, and the cost 0, when the table has no
// images entry for the model (see [Prices.Lookup] for the name rule) or none
// for that size and quality. GPT image models are priced in tokens:
// [Prices.Cost] of the response's usage.
func (p *Prices) ImageCost(model, size, quality string, n int64) (microUSD int64, known bool) {
	if p == nil {
		return 0, false
	}
	sizes, ok := lookup(p.Images, model)
	if !ok {
		return 0, false
	}
	if size == "" || size == "auto" {
		size = DefaultImageSize
	}
	if quality == "" || quality == "auto" {
		quality = DefaultImageQuality
	}
	var buf [64]byte
	key := append(append(append(buf[:0], size...), '/'), quality...)
	usd, ok := sizes[string(key)]
	if !ok {
		if usd, ok = sizes[size]; !ok {
			return 0, false
		}
	}
	return costCeil(picoPerMicro, term{max(n, 0), picoUSD(usd)}), true
}

// SpeechCost returns what chars input characters (Unicode code points, see
// [Request.InputChars]) cost on a speech model priced per character, in
// micro-USD rounded up; negative chars counts as zero. known is false, and
// the cost 0, for a model the table's characters_per_m does not know (see
// [Prices.Lookup] for the name rule).
func (p *Prices) SpeechCost(model string, chars int64) (microUSD int64, known bool) {
	if p == nil {
		return 0, false
	}
	perM, ok := lookup(p.CharactersPerM, model)
	if !ok {
		return 0, false
	}
	return costCeil(picoPerMicro, term{max(chars, 0), picoRate(perM)}), true
}

// AudioCost returns what seconds of audio cost on a model priced by audio
// duration (whisper-1, see [Usage.Seconds]), in micro-USD rounded up. OpenAI
// bills whole seconds and reports them so (a verbose_json transcription of
// 8.47 s reports usage seconds 9), so a fractional duration is rounded up to
// the next second; negative or NaN seconds count as zero. known is false, and the
// cost 0, for a model the table's audio_per_minute does not know (see
// [Prices.Lookup] for the name rule).
func (p *Prices) AudioCost(model string, seconds float64) (microUSD int64, known bool) {
	if p == nil {
		return 0, false
	}
	perMinute, ok := lookup(p.AudioPerMinute, model)
	if !ok {
		return 0, false
	}
	var s int64
	switch {
	case !(seconds > 0): // also NaN
	case seconds >= math.MaxInt64:
		s = math.MaxInt64
	default:
		s = int64(math.Ceil(seconds))
	}
	return costCeil(picoPerMicro*60, term{s, picoUSD(perMinute)}), true
}

// CallCost returns what one successful call of route costs on a route billed
// per call, in micro-USD rounded up. route is written "METHOD /path" with the
// allowlist's placeholders ("POST /v1/vector_stores/{vector_store_id}/search")
// and matched exactly. known is false, and the cost 0, for a route the
// table's calls section does not name.
func (p *Prices) CallCost(route string) (microUSD int64, known bool) {
	if p == nil {
		return 0, false
	}
	usd, ok := p.Calls[route]
	if !ok {
		return 0, false
	}
	return costCeil(picoPerMicro, term{1, picoUSD(usd)}), true
}

// picoPerMicro is 1e-6 USD in 1e-12 USD.
const picoPerMicro = 1e6

// term is units (tokens, characters, images, seconds) at a rate in 1e-12 USD
// per unit, possibly scaled further.
type term struct {
	units int64
	rate  uint64
}

// costCeil sums units × rate over the terms exactly, in 128 bits, and divides
// by div rounding up, saturating at math.MaxInt64. Negative units count as
// zero. With rates in 1e-12 USD per unit and div 1e6 the result is in
// micro-USD; a larger div absorbs a scaled rate (per minute, a multiplier).
func costCeil(div uint64, terms ...term) int64 {
	var hi, lo uint64
	for _, t := range terms {
		h, l := bits.Mul64(uint64(max(t.units, 0)), t.rate)
		var carry uint64
		lo, carry = bits.Add64(lo, l, 0)
		hi, _ = bits.Add64(hi, h, carry)
	}
	if hi >= div {
		return math.MaxInt64
	}
	q, rem := bits.Div64(hi, lo, div)
	if rem > 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}

// picoRate converts USD per million units to 1e-12 USD per unit (at most
// 1e12), clamped to [0, maxPrice].
func picoRate(perM float64) uint64 {
	if !(perM > 0) { // also NaN
		return 0
	}
	return uint64(math.Round(min(perM, maxPrice) * 1e6))
}

// picoUSD converts USD to 1e-12 USD (at most 1e18), clamped to [0, maxPrice].
func picoUSD(usd float64) uint64 {
	if !(usd > 0) { // also NaN
		return 0
	}
	return uint64(math.Round(min(usd, maxPrice) * 1e12))
}
