package extproc

import (
	"strings"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/usage"
)

// Routes not billed in tokens alone (config.Charges): images per image (or
// the image model's tokens), speech per input character, transcriptions and
// translations per second of audio (or the transcription model's tokens),
// and a route billed per call (vector store search) at its calls price.
// The price comes from the same table (usage.Prices).

// unitState is what unit pricing keeps of one stream: the number of images
// it is charged for.
type unitState struct {
	images int64 // images an Images API answer holds (or, unread, asked for)
}

// callCost is what one successful call of a route billed per call costs, in
// micro-USD: the price table's calls price for the route, which start-up
// checks every such route has.
func (st *stream) callCost() int64 {
	c, _ := st.srv.prices.CallCost(st.route.Method + " " + st.route.Path)
	return c
}

// maxImageOutputTokens bounds the output of one image of a GPT image model
// (OpenAI's largest size at high quality), for a reservation.
const maxImageOutputTokens = 6240

// Models assumed where the request body is an upload the sidecar never sees
// (multipart image edits and variations, transcriptions, translations): the
// answer's shape tells which family billed it, and the dearer model of that
// family is charged, so a request is never under-charged.
const (
	uploadImageTokenModel = "gpt-image-1"       // an edit that reports token usage
	uploadImageModel      = "dall-e-2"          // variations, and edits without usage
	uploadAudioTokenModel = "gpt-4o-transcribe" // a transcription that reports token usage
	uploadAudioModel      = "whisper-1"         // one billed by duration
)

// estimate is the reservation of a request priced by unit: its worst case
// in micro-USD, and the tokens it counts against tokens per minute.
func (st *stream) estimate() (tokens, cost int64) {
	p, req := st.srv.prices, st.req
	switch st.charge() {
	case config.ChargeImages:
		if c, ok := p.ImageCost(req.Model, req.Size, req.Quality, max(req.N, 1)); ok {
			return 0, c
		}
		return 0, p.Estimate(req.Model, st.prompt(), maxImageOutputTokens*max(req.N, 1))
	case config.ChargeSpeech:
		if c, ok := p.SpeechCost(req.Model, req.InputChars); ok {
			return 0, c
		}
		return 0, p.Estimate(req.Model, st.prompt(), 0)
	case config.ChargeCall:
		return 0, st.callCost()
	}
	return st.prompt() + st.maxOutput(), p.Estimate(req.Model, st.prompt(), st.maxOutput())
}

// measureUnits is the usage of an image or audio request, and where the
// figures come from (see measure).
func (st *stream) measureUnits() (usage.Usage, usage.Source) {
	if st.usage.read && !st.usage.truncated {
		return st.unitUsage(), usage.SourceProvider
	}
	if st.charge() == config.ChargeImages && st.usage.complete {
		// An answer too large to read (base64 images): OpenAI returns n
		// images on success; an image model priced in tokens is charged
		// its worst case.
		st.units.images = max(st.req.N, 1)
		if _, perImage := st.srv.prices.ImageCost(st.req.Model, st.req.Size, st.req.Quality, 1); !perImage {
			out := maxImageOutputTokens * st.units.images
			return usage.Usage{PromptTokens: st.prompt(), CompletionTokens: out, TotalTokens: st.prompt() + out}, usage.SourceEstimated
		}
		return usage.Usage{}, usage.SourceEstimated
	}
	return usage.Usage{}, sourceFree // an upload whose answer was not read: nothing to price
}

// unitUsage is what an image or audio answer says it used: the usage object
// (tokens, or seconds of audio) and the number of images. An upload's model,
// which the sidecar could not read, is taken from the answer's shape.
func (st *stream) unitUsage() usage.Usage {
	u, hasUsage := usage.ParseUsage(st.usage.body)
	if st.charge() == config.ChargeImages {
		st.units.images, _ = usage.ImageCount(st.usage.body)
	}
	if st.req.Model == "" {
		tokens := hasUsage && u.PromptTokens+u.CompletionTokens > 0
		switch {
		case st.charge() == config.ChargeImages && tokens && strings.HasSuffix(st.path, "/edits"):
			st.req.Model = uploadImageTokenModel
		case st.charge() == config.ChargeImages:
			st.req.Model = uploadImageModel
		case tokens:
			st.req.Model = uploadAudioTokenModel
		default:
			st.req.Model = uploadAudioModel
		}
	}
	return u
}

// price is what u cost on the request's route and model, in micro-USD.
func (st *stream) price(u usage.Usage) int64 {
	p, req := st.srv.prices, st.req
	var c int64
	switch tokens := u.PromptTokens+u.CompletionTokens > 0; {
	case st.charge() == config.ChargeImages && !tokens:
		c, _ = p.ImageCost(req.Model, req.Size, req.Quality, st.units.images)
	case st.charge() == config.ChargeSpeech:
		var ok bool
		if c, ok = p.SpeechCost(req.Model, req.InputChars); !ok {
			c, _ = p.Cost(req.Model, u)
		}
	case st.charge() == config.ChargeAudio && !tokens:
		c, _ = p.AudioCost(req.Model, u.Seconds)
	case st.charge() == config.ChargeCall:
		c = st.callCost()
	default:
		c, _ = p.Cost(req.Model, u)
	}
	return c
}
