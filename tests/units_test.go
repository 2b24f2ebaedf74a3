package tests

import (
	"bytes"
	"mime/multipart"
	"strings"
	"testing"
	"time"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
	"github.com/llm-proxy/llm-proxy/usage"
)

// Routes billed by unit — images per image (or an image model's tokens),
// speech per character, audio per second (or a transcription model's
// tokens) — are charged exactly what OpenAI bills, through Envoy.
func TestUnitPricedRoutesCharged(t *testing.T) {
	s := startStack(t, stackOptions{})
	prices := usage.DefaultPrices()
	audio := func(model string, n int) (string, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("model", model)
		fw, _ := mw.CreateFormFile("file", "speech.wav")
		fw.Write(bytes.Repeat([]byte{1}, n))
		mw.Close()
		return mw.FormDataContentType(), buf.Bytes()
	}
	gptImage := usage.Usage{PromptTokens: 3, CompletionTokens: 2 * int64(fakeopenai.ImageOutputTokens("1024x1536", "high"))}
	gptImageCost, _ := prices.Cost("gpt-image-1", gptImage)
	// 48,000 bytes are 3 seconds for the fake: whisper-1 at $0.006 a minute.
	whisper, _ := prices.AudioCost("whisper-1", fakeopenai.AudioSeconds(48000))
	speech, _ := prices.SpeechCost("tts-1", int64(len([]rune("héllo wörld, say it"))))
	for _, c := range []struct {
		name, path, model string
		body              func() (string, []byte)
		want              int64
		tokens            usage.Usage
	}{
		{"dall-e-3 hd tall", "/v1/images/generations", "dall-e-3", func() (string, []byte) {
			return "application/json", []byte(`{"model":"dall-e-3","prompt":"a red fox","n":1,"size":"1024x1792","quality":"hd","response_format":"url"}`)
		}, 120000, usage.Usage{}},
		{"gpt-image-1 in tokens", "/v1/images/generations", "gpt-image-1", func() (string, []byte) {
			return "application/json", []byte(`{"model":"gpt-image-1","prompt":"a red fox","n":2,"size":"1024x1536","quality":"high"}`)
		}, gptImageCost, gptImage},
		{"tts-1 per character", "/v1/audio/speech", "tts-1", func() (string, []byte) {
			return "application/json", []byte(`{"model":"tts-1","input":"héllo wörld, say it","voice":"alloy"}`)
		}, speech, usage.Usage{}},
		{"whisper-1 per second", "/v1/audio/transcriptions", "whisper-1", func() (string, []byte) { return audio("whisper-1", 48000) }, whisper, usage.Usage{}},
		{"whisper-1 translation per second", "/v1/audio/translations", "whisper-1", func() (string, []byte) { return audio("whisper-1", 48000) }, whisper, usage.Usage{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			since := time.Now()
			p := s.createProject("units", "sk-units-0123456789")
			tok := s.createToken(map[string]any{"project_id": p.ID})
			ct, body := c.body()
			status, b := s.call(t, tok.Token, "POST", c.path, ct, body, nil, nil)
			if status != 200 {
				t.Fatalf("%d %s", status, truncateForLog(b))
			}
			if c.want <= 0 {
				t.Fatalf("the price table does not price %s", c.model)
			}
			s.waitUsage(t, p.ID, since, usageRollup{Model: c.model, Requests: 1, PromptTokens: c.tokens.PromptTokens,
				CompletionTokens: c.tokens.CompletionTokens, TotalTokens: c.tokens.PromptTokens + c.tokens.CompletionTokens, CostMicroUSD: c.want})
		})
	}
}

func truncateForLog(b []byte) string {
	s := string(b)
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
