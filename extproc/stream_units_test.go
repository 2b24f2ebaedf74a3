package extproc

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
	"github.com/llm-proxy/llm-proxy/store"
)

// TestUnitPricedRoutes: routes billed per image, per character or per second
// are reserved and settled at their unit prices (dall-e-3 hd 1024x1024: 0.08
// USD an image; dall-e-2 1024x1024: 0.02; tts-1: 15 USD per million
// characters; whisper-1: 0.006 USD a minute; gpt-image-1: 5 and 40 µUSD per
// prompt and completion token; gpt-4o-transcribe: 6 and 10).
func TestUnitPricedRoutes(t *testing.T) {
	const twoImages = `{"created":1,"data":[{"url":"https://a"},{"url":"https://b"}]}`
	for _, tc := range []struct {
		name, path string
		body       string // "": an upload, whose body the sidecar never sees
		answer     string // a JSON answer; "": audio
		buffer     int64  // the buffer budget, when not the harness's
		reserved   []reserveCall
		mode       string // the override of the response headers' answer
		// What it is settled at.
		model  string
		usage  *llmproxyv1.Usage
		source string
		cost   int64
	}{
		{
			name: "images per image, as many as the answer holds", path: "/v1/images/generations",
			body:   `{"model":"dall-e-3","prompt":"a cat","n":2,"size":"1024x1024","quality":"hd"}`,
			answer: twoImages, reserved: []reserveCall{{0, 160_000}}, mode: modeBufferedBody,
			model: "dall-e-3", usage: &llmproxyv1.Usage{}, source: "provider", cost: 160_000,
		},
		{
			name: "images: fewer made than asked for", path: "/v1/images/generations",
			body:   `{"model":"dall-e-3","prompt":"a cat","n":2,"size":"1024x1024","quality":"hd"}`,
			answer: `{"created":1,"data":[{"url":"https://a"}]}`, reserved: []reserveCall{{0, 160_000}}, mode: modeBufferedBody,
			model: "dall-e-3", usage: &llmproxyv1.Usage{}, source: "provider", cost: 80_000,
		},
		{
			name: "images: an answer too large to read is charged the n asked for", path: "/v1/images/generations",
			body:   `{"model":"dall-e-3","prompt":"a cat","n":2,"size":"1024x1024","quality":"hd"}`,
			answer: `{"created":1,"data":[{"b64_json":"` + strings.Repeat("A", 8000) + `"}]}`, buffer: 4096,
			reserved: []reserveCall{{0, 160_000}}, mode: modeBufferedBody,
			model: "dall-e-3", usage: &llmproxyv1.Usage{}, source: "estimated", cost: 160_000,
		},
		{
			name: "image model priced in tokens: reserved at its worst case, settled by its usage", path: "/v1/images/generations",
			body:   `{"model":"gpt-image-1","prompt":"a cat","n":2}`,
			answer: `{"created":1,"data":[{"b64_json":"x"},{"b64_json":"y"}],"usage":{"input_tokens":50,"output_tokens":1000,"total_tokens":1050}}`,
			// 2 prompt tokens at the image input rate (10, the higher), 2 × 6240
			// output tokens at 40.
			reserved: []reserveCall{{0, 499_220}}, mode: modeBufferedBody,
			model: "gpt-image-1", usage: &llmproxyv1.Usage{PromptTokens: 50, CompletionTokens: 1000, TotalTokens: 1050}, source: "provider", cost: 40_250,
		},
		{
			name: "image model priced in tokens, answer too large to read: its worst case", path: "/v1/images/generations",
			body:   `{"model":"gpt-image-1","prompt":"a cat","n":2}`,
			answer: `{"created":1,"data":[{"b64_json":"` + strings.Repeat("A", 8000) + `"}]}`, buffer: 4096,
			reserved: []reserveCall{{0, 499_220}}, mode: modeBufferedBody,
			model: "gpt-image-1", usage: &llmproxyv1.Usage{PromptTokens: 2, CompletionTokens: 12_480, TotalTokens: 12_482}, source: "estimated", cost: 499_210,
		},
		{
			name: "image edit upload reporting tokens: the GPT image model", path: "/v1/images/edits",
			answer: `{"created":1,"data":[{"b64_json":"x"}],"usage":{"input_tokens":50,"output_tokens":1000,"total_tokens":1050}}`, mode: modeBufferedBody,
			model: "gpt-image-1", usage: &llmproxyv1.Usage{PromptTokens: 50, CompletionTokens: 1000, TotalTokens: 1050}, source: "provider", cost: 40_250,
		},
		{
			name: "image variation upload: dall-e-2 per image", path: "/v1/images/variations",
			answer: `{"created":1,"data":[{"url":"a"},{"url":"b"},{"url":"c"}]}`, mode: modeBufferedBody,
			model: "dall-e-2", usage: &llmproxyv1.Usage{}, source: "provider", cost: 60_000,
		},
		{
			name: "speech per character of input", path: "/v1/audio/speech",
			body:     `{"model":"tts-1","input":"Hello world","voice":"alloy"}`,
			reserved: []reserveCall{{0, 165}},
			model:    "tts-1", usage: &llmproxyv1.Usage{}, source: "provider", cost: 165,
		},
		{
			name: "transcription per second of audio", path: "/v1/audio/transcriptions",
			answer: `{"text":"hi","usage":{"type":"duration","seconds":9}}`, mode: modeBufferedBody,
			model: "whisper-1", usage: &llmproxyv1.Usage{}, source: "provider", cost: 900,
		},
		{
			name: "transcription reporting tokens: the token-priced model", path: "/v1/audio/transcriptions",
			answer: `{"text":"hi","usage":{"type":"tokens","input_tokens":100,"output_tokens":20,"total_tokens":120}}`, mode: modeBufferedBody,
			model: "gpt-4o-transcribe", usage: &llmproxyv1.Usage{PromptTokens: 100, CompletionTokens: 20, TotalTokens: 120}, source: "provider", cost: 800,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(_ *harness, o *Options) {
				if tc.buffer > 0 {
					o.MaxBufferedBytes = tc.buffer
				}
			})
			c := h.open()
			if tc.body == "" {
				checkAnswer(t, 0, c.send(reqHeaders("POST", tc.path, tokMain, "content-type", "multipart/form-data; boundary=x")),
					answer{headers: swapped, mode: modeHeadersOnly})
			} else {
				checkAnswer(t, 0, c.send(reqHeaders("POST", tc.path, tokMain)), answer{headers: swapped, mode: modeJSONRequest})
				checkAnswer(t, 1, c.send(reqBody(tc.body)), answer{})
			}
			ct := "audio/mpeg"
			if tc.answer != "" {
				ct = "application/json"
			}
			reserved := int64(noReservation)
			if tc.reserved != nil {
				reserved = tc.reserved[0].tokens
			}
			checkAnswer(t, 2, c.send(respHeaders(200, "content-type", ct, "content-length", strconv.Itoa(len(tc.answer)))),
				answer{headers: rateHeaders(reserved), mode: tc.mode})
			if tc.mode != "" {
				checkAnswer(t, 3, c.send(respBody(tc.answer, true)), answer{})
			}
			ev := c.end()
			if got := h.limiter.calls(); !slices.Equal(got, tc.reserved) {
				t.Errorf("reserved %v, want %v", got, tc.reserved)
			}
			want := []store.UsageRecord{{ProjectID: "proj_1", Model: tc.model, PriceVersion: priceVersion, Requests: 1,
				PromptTokens: tc.usage.PromptTokens, CompletionTokens: tc.usage.CompletionTokens, CostMicroUSD: tc.cost}}
			if got := h.usage.records(); !slices.Equal(got, want) {
				t.Errorf("usage records %+v, want %+v", got, want)
			}
			checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: tc.path, Model: tc.model, Status: 200,
				Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: tc.usage, UsageSource: tc.source,
				CostMicroUsd: tc.cost, CostUsd: float64(tc.cost) / 1e6, PriceVersion: priceVersion})
		})
	}
}

// TestUploadNotAnswered: an upload whose answer is an error costs nothing,
// and names no model it cannot know.
func TestUploadNotAnswered(t *testing.T) {
	h := newHarness(t)
	ev := h.do(
		exchange{reqHeaders("POST", "/v1/audio/transcriptions", tokMain, "content-type", "multipart/form-data; boundary=x"), answer{headers: swapped, mode: modeHeadersOnly}},
		exchange{respHeaders(400, "content-type", "application/json"), answer{headers: rateHeaders(noReservation)}},
	)
	checkEvent(t, ev, &llmproxyv1.UsageEvent{TokenId: "tok_main", Method: "POST", Path: "/v1/audio/transcriptions", Status: 400,
		Outcome: outcomeForwarded, CacheStatus: cacheBypass, Usage: &llmproxyv1.Usage{}, UsageSource: "provider"})
}
