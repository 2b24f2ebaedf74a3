package fakeopenai

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TinyPNG is the base64 of the 1×1 PNG every generated image is.
const TinyPNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAAEElEQVR42mISWFwPCAAA//8CAQE1cH6WpAAAAABJRU5ErkJggg=="

// AudioBytesPerSecond is how many bytes of an uploaded audio file the fake
// takes for one second of audio (128 kbit/s, a common MP3 rate); see
// [AudioSeconds].
const AudioBytesPerSecond = 16000

// AudioTokensPerSecond is how many audio input tokens the fake bills a
// gpt-4o*-transcribe model per second of audio.
const AudioTokensPerSecond = 10

// maxSpeechInput bounds /v1/audio/speech input, in characters, as OpenAI
// does.
const maxSpeechInput = 4096

// speechBytesPerChar is how many bytes of fake audio one input character
// makes.
const speechBytesPerChar = 16

// AudioSeconds is the duration the fake gives an uploaded audio file of n
// bytes: n / AudioBytesPerSecond rounded up to whole seconds, at least 1.
func AudioSeconds(n int) float64 {
	return float64(max(1, (n+AudioBytesPerSecond-1)/AudioBytesPerSecond))
}

// ImageOutputTokens is the output token count of one gpt-image image of a
// size ("1024x1024", "1024x1536", "1536x1024") and quality ("low",
// "medium", "high"), as OpenAI documents it; 0 for any other pair.
func ImageOutputTokens(size, quality string) int {
	var row [3]int // low, medium, high
	switch size {
	case "1024x1024":
		row = [3]int{272, 1056, 4160}
	case "1024x1536":
		row = [3]int{408, 1584, 6240}
	case "1536x1024":
		row = [3]int{400, 1568, 6208}
	default:
		return 0
	}
	switch quality {
	case "low":
		return row[0]
	case "medium":
		return row[1]
	case "high":
		return row[2]
	}
	return 0
}

type imageData struct {
	B64JSON       string `json:"b64_json,omitempty"`
	URL           string `json:"url,omitempty"`
	RevisedPrompt string `json:"revised_prompt,omitempty"`
}

type imageUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		ImageTokens int `json:"image_tokens"`
		TextTokens  int `json:"text_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type imagesResponse struct {
	Created      int64       `json:"created"`
	Background   string      `json:"background,omitempty"`
	Data         []imageData `json:"data"`
	OutputFormat string      `json:"output_format,omitempty"`
	Quality      string      `json:"quality,omitempty"`
	Size         string      `json:"size,omitempty"`
	Usage        *imageUsage `json:"usage,omitempty"`
}

// imageGenerations answers POST /v1/images/generations. dall-e-2 and
// dall-e-3 (billed per image by size and quality) report no usage;
// gpt-image* models report OpenAI's token usage: input text tokens =
// CountWords(prompt), output tokens = n × ImageOutputTokens(size, quality).
func (s *Server) imageGenerations(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req struct {
		Model          string `json:"model"`
		Prompt         string `json:"prompt"`
		N              *int   `json:"n"`
		Size           string `json:"size"`
		Quality        string `json:"quality"`
		ResponseFormat string `json:"response_format"`
		OutputFormat   string `json:"output_format"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeBadRequest(w, c, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	model := cmp.Or(req.Model, "dall-e-2")
	gptImage := strings.HasPrefix(model, "gpt-image")
	if req.Prompt == "" {
		writeBadRequest(w, c, "Missing required parameter: 'prompt'.")
		return
	}
	n := 1
	if req.N != nil {
		n = *req.N
	}
	if n < 1 || n > 10 || (model == "dall-e-3" && n != 1) {
		writeBadRequest(w, c, "Invalid 'n': "+strconv.Itoa(n)+" is not supported for "+model+".")
		return
	}
	var sizes, qualities []string
	size, quality := req.Size, req.Quality
	switch {
	case gptImage:
		sizes, qualities = []string{"1024x1024", "1024x1536", "1536x1024"}, []string{"low", "medium", "high"}
		if size == "" || size == "auto" {
			size = "1024x1024"
		}
		if quality == "" || quality == "auto" {
			quality = "medium"
		}
	case model == "dall-e-3":
		sizes, qualities = []string{"1024x1024", "1792x1024", "1024x1792"}, []string{"standard", "hd"}
	default:
		sizes, qualities = []string{"256x256", "512x512", "1024x1024"}, []string{"standard"}
	}
	size, quality = cmp.Or(size, "1024x1024"), cmp.Or(quality, "standard")
	if quality == "auto" {
		quality = "standard"
	}
	if !slices.Contains(sizes, size) {
		writeBadRequest(w, c, "Invalid 'size': "+strconv.Quote(req.Size)+" is not supported for "+model+".")
		return
	}
	if !slices.Contains(qualities, quality) {
		writeBadRequest(w, c, "Invalid 'quality': "+strconv.Quote(req.Quality)+" is not supported for "+model+".")
		return
	}
	if f := req.ResponseFormat; !gptImage && f != "" && f != "url" && f != "b64_json" {
		writeBadRequest(w, c, "'"+f+"' is not one of ['url', 'b64_json'] - 'response_format'")
		return
	}

	resp := imagesResponse{Created: time.Now().Unix(), Data: make([]imageData, n)}
	for i := range resp.Data {
		switch {
		case gptImage || req.ResponseFormat == "b64_json":
			resp.Data[i].B64JSON = TinyPNG
		default:
			resp.Data[i].URL = "https://fakeopenai.invalid/images/" + s.newID("img-") + ".png"
		}
		if model == "dall-e-3" {
			resp.Data[i].RevisedPrompt = req.Prompt
		}
	}
	ch := Charge{Family: FamilyImages, Model: model, Images: int64(n), ImageSize: size, ImageQuality: quality}
	if gptImage {
		u := &imageUsage{OutputTokens: n * ImageOutputTokens(size, quality)}
		u.InputTokensDetails.TextTokens = CountWords(req.Prompt)
		u.InputTokens = u.InputTokensDetails.TextTokens
		u.TotalTokens = u.InputTokens + u.OutputTokens
		resp.Background, resp.OutputFormat = "opaque", cmp.Or(req.OutputFormat, "png")
		resp.Quality, resp.Size, resp.Usage = quality, size, u
		ch.PromptTokens, ch.CompletionTokens = int64(u.InputTokens), int64(u.OutputTokens)
	}
	s.writeBody(w, r, c, "application/json", marshalLine(resp), true, &ch)
}

// speechContentType maps a speech response_format to its Content-Type.
func speechContentType(format string) string {
	switch format {
	case "mp3":
		return "audio/mpeg"
	case "opus":
		return "audio/opus"
	case "aac":
		return "audio/aac"
	case "flac":
		return "audio/flac"
	case "wav":
		return "audio/wav"
	case "pcm":
		return "audio/pcm"
	}
	return ""
}

// speech answers POST /v1/audio/speech with binary audio: a format marker
// followed by speechBytesPerChar zero bytes per input character, never
// compressed. It bills the input's Unicode code points.
func (s *Server) speech(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req struct {
		Model          string          `json:"model"`
		Input          string          `json:"input"`
		Voice          json.RawMessage `json:"voice"`
		ResponseFormat string          `json:"response_format"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeBadRequest(w, c, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	chars := utf8.RuneCountInString(req.Input)
	format := cmp.Or(req.ResponseFormat, "mp3")
	ct := speechContentType(format)
	switch {
	case req.Model == "":
		writeBadRequest(w, c, "Missing required parameter: 'model'.")
		return
	case req.Input == "":
		writeBadRequest(w, c, "Missing required parameter: 'input'.")
		return
	case chars > maxSpeechInput:
		writeBadRequest(w, c, "'input' is longer than the maximum of 4096 characters.")
		return
	case len(req.Voice) == 0 || string(req.Voice) == "null" || string(req.Voice) == `""`:
		writeBadRequest(w, c, "Missing required parameter: 'voice'.")
		return
	case ct == "":
		writeBadRequest(w, c, "'"+format+"' is not one of ['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'] - 'response_format'")
		return
	}
	audio := make([]byte, 0, 16+chars*speechBytesPerChar)
	audio = append(audio, "FAKEAUDIO-"...)
	audio = append(audio, format...)
	audio = append(audio, make([]byte, chars*speechBytesPerChar)...)
	ch := Charge{Family: FamilySpeech, Model: req.Model, Characters: int64(chars)}
	s.writeBody(w, r, c, ct, audio, false, &ch)
}

type durationUsage struct {
	Type    string  `json:"type"`
	Seconds float64 `json:"seconds"`
}

type tokenUsage struct {
	Type              string `json:"type"`
	InputTokens       int    `json:"input_tokens"`
	InputTokenDetails struct {
		TextTokens  int `json:"text_tokens"`
		AudioTokens int `json:"audio_tokens"`
	} `json:"input_token_details"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type audioTextResponse struct {
	Task     string `json:"task,omitempty"`
	Language string `json:"language,omitempty"`
	Duration any    `json:"duration,omitempty"`
	Text     string `json:"text"`
	Segments any    `json:"segments,omitempty"`
	Usage    any    `json:"usage"`
}

// audioText answers /v1/audio/transcriptions and /v1/audio/translations
// (multipart: file, model, prompt?, response_format?). The audio lasts
// AudioSeconds(file size); the text is one lorem word per second (or
// x-fake-words words). whisper* models report and bill duration usage;
// other (gpt-4o*-transcribe) models report and bill tokens: audio tokens =
// seconds × AudioTokensPerSecond, text tokens = CountWords(prompt), output
// tokens = CountWords(text). Translations take whisper models only, as
// OpenAI's do.
func (s *Server) audioText(w http.ResponseWriter, r *http.Request, body []byte, c *controls, family string) {
	form, err := parseForm(r, body)
	if err != nil {
		writeBadRequest(w, c, err.Error())
		return
	}
	model := form.fields["model"]
	format := cmp.Or(form.fields["response_format"], "json")
	whisper := strings.HasPrefix(model, "whisper")
	switch {
	case form.content == nil:
		writeBadRequest(w, c, "Missing required parameter: 'file'.")
		return
	case model == "":
		writeBadRequest(w, c, "Missing required parameter: 'model'.")
		return
	case family == FamilyTranslations && !whisper:
		writeBadRequest(w, c, "Invalid model "+strconv.Quote(model)+": translations support whisper-1 only.")
		return
	case format != "json" && format != "text" && !(format == "verbose_json" && whisper):
		writeBadRequest(w, c, "response_format "+strconv.Quote(format)+" is not supported by the fake for "+model+".")
		return
	}
	seconds := AudioSeconds(len(form.content))
	text := WordsReply(int(seconds))
	if c.words >= 0 {
		text = WordsReply(c.words)
	}
	ch := Charge{Family: family, Model: model}
	resp := audioTextResponse{Text: text}
	if whisper {
		ch.Seconds = seconds
		resp.Usage = durationUsage{Type: "duration", Seconds: seconds}
	} else {
		u := tokenUsage{Type: "tokens", OutputTokens: CountWords(text)}
		u.InputTokenDetails.AudioTokens = int(seconds) * AudioTokensPerSecond
		u.InputTokenDetails.TextTokens = CountWords(form.fields["prompt"])
		u.InputTokens = u.InputTokenDetails.AudioTokens + u.InputTokenDetails.TextTokens
		u.TotalTokens = u.InputTokens + u.OutputTokens
		resp.Usage = u
		ch.PromptTokens, ch.AudioTokens, ch.CompletionTokens = int64(u.InputTokens), int64(u.InputTokenDetails.AudioTokens), int64(u.OutputTokens)
	}
	switch format {
	case "text":
		s.writeBody(w, r, c, "text/plain; charset=utf-8", []byte(text+"\n"), false, &ch)
		return
	case "verbose_json":
		resp.Task = "transcribe"
		if family == FamilyTranslations {
			resp.Task = "translate"
		}
		resp.Language, resp.Duration, resp.Segments = "english", seconds, []struct{}{}
	}
	s.writeBody(w, r, c, "application/json", marshalLine(resp), true, &ch)
}

// moderationCategories are the categories omni-moderation reports.
var moderationCategories = []string{
	"harassment", "harassment/threatening", "hate", "hate/threatening",
	"illicit", "illicit/violent", "self-harm", "self-harm/instructions",
	"self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic",
}

type moderationResult struct {
	Flagged                   bool                `json:"flagged"`
	Categories                map[string]bool     `json:"categories"`
	CategoryScores            map[string]float64  `json:"category_scores"`
	CategoryAppliedInputTypes map[string][]string `json:"category_applied_input_types"`
}

// moderations answers POST /v1/moderations: nothing is ever flagged, and
// moderation is free, so nothing is billed.
func (s *Server) moderations(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req struct {
		Input json.RawMessage `json:"input"`
		Model string          `json:"model"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeBadRequest(w, c, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	n := 0
	in := bytes.TrimSpace(req.Input)
	switch {
	case len(in) > 0 && in[0] == '"':
		n = 1
	case len(in) > 0 && in[0] == '[':
		var items []json.RawMessage
		if err := json.Unmarshal(in, &items); err == nil {
			n = len(items)
		}
	}
	if n == 0 {
		writeBadRequest(w, c, "Missing required parameter: 'input'.")
		return
	}
	res := moderationResult{
		Categories:                make(map[string]bool),
		CategoryScores:            make(map[string]float64),
		CategoryAppliedInputTypes: make(map[string][]string),
	}
	for _, cat := range moderationCategories {
		res.Categories[cat] = false
		res.CategoryScores[cat] = 0.0001
		res.CategoryAppliedInputTypes[cat] = []string{"text"}
	}
	results := make([]moderationResult, n)
	for i := range results {
		results[i] = res
	}
	resp := struct {
		ID      string             `json:"id"`
		Model   string             `json:"model"`
		Results []moderationResult `json:"results"`
	}{s.newID("modr-"), cmp.Or(req.Model, "omni-moderation-latest"), results}
	s.writeRaw(w, r, c, marshalLine(resp))
}
