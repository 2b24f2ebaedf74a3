package fakeopenai_test

import (
	"bytes"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/llm-proxy/llm-proxy/tests/fakeopenai"
)

func TestEmbeddings(t *testing.T) {
	r := start(t)
	c := sdk(r)
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{"float", "base64"} {
		t.Run(string(format), func(t *testing.T) {
			r.ResetLedger()
			res, err := c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{
				Model:          "text-embedding-3-small",
				Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello world", "three more words"}},
				EncodingFormat: format,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Object != "list" || res.Model != "text-embedding-3-small" || len(res.Data) != 2 || res.Usage.PromptTokens != 5 || res.Usage.TotalTokens != 5 {
				t.Fatalf("response %s", res.RawJSON())
			}
			for i, in := range []string{"hello world", "three more words"} {
				want := fakeopenai.EmbeddingVector(in, fakeopenai.DefaultEmbeddingDimensions)
				got := res.Data[i].Embedding
				if res.Data[i].Index != int64(i) || res.Data[i].Object != "embedding" || len(got) != len(want) {
					t.Fatalf("data %d: %+v", i, res.Data[i])
				}
				var norm float64
				for j := range got {
					if float32(got[j]) != want[j] {
						t.Errorf("data %d [%d] = %v, want %v", i, j, got[j], want[j])
					}
					norm += got[j] * got[j]
				}
				if math.Abs(norm-1) > 1e-4 {
					t.Errorf("norm² %v", norm)
				}
			}
			if format == "base64" && !strings.HasPrefix(res.Data[0].JSON.Embedding.Raw(), `"`) {
				t.Errorf("base64 embedding not a string: %s", res.Data[0].JSON.Embedding.Raw())
			}
			want := fakeopenai.Charge{Key: testKey, Family: fakeopenai.FamilyEmbeddings, Model: "text-embedding-3-small", PromptTokens: 5}
			if led := r.Ledger(); len(led) != 1 || led[0] != want {
				t.Errorf("ledger %+v", led)
			}
		})
	}

	// Token arrays count their length; dimensions sets the length.
	res, err := c.Embeddings.New(ctx(t), openai.EmbeddingNewParams{
		Model:      "text-embedding-3-large",
		Input:      openai.EmbeddingNewParamsInputUnion{OfArrayOfTokenArrays: [][]int64{{1, 2, 3}, {4}}},
		Dimensions: openai.Int(16),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Usage.PromptTokens != 4 || len(res.Data[0].Embedding) != 16 || float32(res.Data[0].Embedding[0]) != fakeopenai.EmbeddingVector("1 2 3", 16)[0] {
		t.Errorf("token arrays: %s", res.RawJSON())
	}
	for _, body := range []string{`{"input":"x"}`, `{"model":"m"}`, `{"model":"m","input":[]}`, `{"model":"m","input":"x","encoding_format":"hex"}`, `{"model":"m","input":"x","dimensions":0}`} {
		if status, _, b := do(t, r, "POST", "/v1/embeddings", body); status != 400 {
			t.Errorf("%s: %d %s", body, status, b)
		}
	}
}

func TestImages(t *testing.T) {
	r := start(t)
	c := sdk(r)
	// dall-e-3: a url, no usage; billed per image by size and quality.
	res, err := c.Images.Generate(ctx(t), openai.ImageGenerateParams{Model: "dall-e-3", Prompt: "a red fox", Quality: "hd", Size: "1792x1024"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 1 || !strings.HasPrefix(res.Data[0].URL, "https://") || res.Data[0].RevisedPrompt != "a red fox" || res.JSON.Usage.Valid() {
		t.Errorf("dall-e-3: %s", res.RawJSON())
	}
	// gpt-image-1: base64 images and token usage.
	res, err = c.Images.Generate(ctx(t), openai.ImageGenerateParams{Model: "gpt-image-1", Prompt: "a red fox", N: openai.Int(2), Quality: "high", Size: "1024x1536"})
	if err != nil {
		t.Fatal(err)
	}
	u := res.Usage
	if len(res.Data) != 2 || res.Data[1].B64JSON != fakeopenai.TinyPNG || res.Quality != "high" || res.Size != "1024x1536" ||
		u.InputTokens != 3 || u.InputTokensDetails.TextTokens != 3 || u.InputTokensDetails.ImageTokens != 0 ||
		u.OutputTokens != 2*6240 || u.TotalTokens != 3+2*6240 {
		t.Errorf("gpt-image-1: %s", res.RawJSON())
	}
	// dall-e-2 defaults.
	if status, _, b := do(t, r, "POST", "/v1/images/generations", `{"prompt":"x","response_format":"b64_json"}`); status != 200 || !strings.Contains(string(b), fakeopenai.TinyPNG) {
		t.Errorf("dall-e-2: %d %s", status, b)
	}
	want := []fakeopenai.Charge{
		{Key: testKey, Family: "images", Model: "dall-e-3", Images: 1, ImageSize: "1792x1024", ImageQuality: "hd"},
		{Key: testKey, Family: "images", Model: "gpt-image-1", Images: 2, ImageSize: "1024x1536", ImageQuality: "high", PromptTokens: 3, CompletionTokens: 2 * 6240},
		{Key: testKey, Family: "images", Model: "dall-e-2", Images: 1, ImageSize: "1024x1024", ImageQuality: "standard"},
	}
	if led := r.Ledger(); len(led) != 3 || led[0] != want[0] || led[1] != want[1] || led[2] != want[2] {
		t.Errorf("ledger %+v\nwant   %+v", led, want)
	}
	if got := fakeopenai.ImageOutputTokens("1024x1024", "low"); got != 272 {
		t.Errorf("ImageOutputTokens = %d", got)
	}
	for _, body := range []string{`{"model":"dall-e-3"}`, `{"model":"dall-e-3","prompt":"x","n":2}`, `{"model":"dall-e-2","prompt":"x","size":"1536x1024"}`, `{"model":"gpt-image-1","prompt":"x","quality":"hd"}`} {
		if status, _, b := do(t, r, "POST", "/v1/images/generations", body); status != 400 {
			t.Errorf("%s: %d %s", body, status, b)
		}
	}
}

func TestSpeech(t *testing.T) {
	r := start(t)
	c := sdk(r)
	input := "héllo wörld ✓" // 13 code points, more bytes
	res, err := c.Audio.Speech.New(ctx(t), openai.AudioSpeechNewParams{Model: "tts-1", Input: input, Voice: openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String("alloy")}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Header.Get("Content-Type") != "audio/mpeg" || res.Header.Get("Content-Encoding") != "" || !bytes.HasPrefix(b, []byte("FAKEAUDIO-mp3")) {
		t.Errorf("speech: %v %q", res.Header, b[:min(16, len(b))])
	}
	want := fakeopenai.Charge{Key: testKey, Family: fakeopenai.FamilySpeech, Model: "tts-1", Characters: 13}
	if led := r.Ledger(); len(led) != 1 || led[0] != want {
		t.Errorf("ledger %+v", led)
	}
	status, h, _ := do(t, r, "POST", "/v1/audio/speech", `{"model":"gpt-4o-mini-tts","input":"x","voice":"nova","response_format":"wav"}`)
	if status != 200 || h.Get("Content-Type") != "audio/wav" {
		t.Errorf("wav: %d %v", status, h)
	}
	for _, body := range []string{`{"model":"tts-1","voice":"alloy"}`, `{"model":"tts-1","input":"x"}`, `{"model":"tts-1","input":"x","voice":"alloy","response_format":"ogg"}`,
		`{"model":"tts-1","voice":"alloy","input":"` + strings.Repeat("x", 4097) + `"}`} {
		if status, _, b := do(t, r, "POST", "/v1/audio/speech", body); status != 400 {
			t.Errorf("%.60s: %d %s", body, status, b)
		}
	}
}

// multipartAudio is a multipart body with a file of size bytes and fields.
func multipartAudio(t testing.TB, size int, fields ...string) (string, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, err := mw.CreateFormFile("file", "speech.mp3")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(make([]byte, size))
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	_ = mw.Close()
	return b.String(), mw.FormDataContentType()
}

func TestTranscriptions(t *testing.T) {
	r := start(t)
	c := sdk(r)
	size := 2*fakeopenai.AudioBytesPerSecond + 1 // 3 seconds
	if s := fakeopenai.AudioSeconds(size); s != 3 {
		t.Fatalf("AudioSeconds = %v", s)
	}

	// whisper-1: duration usage.
	res, err := c.Audio.Transcriptions.New(ctx(t), openai.AudioTranscriptionNewParams{
		File: openai.File(bytes.NewReader(make([]byte, size)), "a.mp3", "audio/mpeg"), Model: "whisper-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Text != fakeopenai.WordsReply(3) || res.Usage.Type != "duration" || res.Usage.Seconds != 3 {
		t.Errorf("whisper-1: %s", res.RawJSON())
	}
	// gpt-4o-transcribe: token usage.
	res, err = c.Audio.Transcriptions.New(ctx(t), openai.AudioTranscriptionNewParams{
		File: openai.File(bytes.NewReader(make([]byte, size)), "a.mp3", "audio/mpeg"), Model: "gpt-4o-transcribe", Prompt: openai.String("names: Ann Bo"),
	})
	if err != nil {
		t.Fatal(err)
	}
	u := res.Usage
	if u.Type != "tokens" || u.InputTokenDetails.AudioTokens != 3*fakeopenai.AudioTokensPerSecond || u.InputTokenDetails.TextTokens != 3 ||
		u.InputTokens != 33 || u.OutputTokens != 3 || u.TotalTokens != 36 {
		t.Errorf("gpt-4o-transcribe: %s", res.RawJSON())
	}
	// Translation (whisper only), verbose_json; text format.
	//lint:ignore SA1019 translations are deprecated in the SDK but still served, so the fake serves them
	tr, err := c.Audio.Translations.New(ctx(t), openai.AudioTranslationNewParams{
		File: openai.File(bytes.NewReader(make([]byte, 10)), "a.mp3", "audio/mpeg"), Model: "whisper-1", ResponseFormat: "verbose_json",
	})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Text != fakeopenai.WordsReply(1) || !strings.Contains(tr.RawJSON(), `"usage":{"type":"duration","seconds":1}`) || !strings.Contains(tr.RawJSON(), `"task":"translate"`) {
		t.Errorf("translation: %s", tr.RawJSON())
	}
	body, ct := multipartAudio(t, size, "model", "whisper-1", "response_format", "text")
	status, h, b := do(t, r, "POST", "/v1/audio/transcriptions", body, "Content-Type", ct, "x-fake-words", "4")
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") || string(b) != fakeopenai.WordsReply(4)+"\n" {
		t.Errorf("text format: %d %v %q", status, h, b)
	}

	want := []fakeopenai.Charge{
		{Key: testKey, Family: "transcriptions", Model: "whisper-1", Seconds: 3},
		{Key: testKey, Family: "transcriptions", Model: "gpt-4o-transcribe", PromptTokens: 33, AudioTokens: 30, CompletionTokens: 3},
		{Key: testKey, Family: "translations", Model: "whisper-1", Seconds: 1},
		{Key: testKey, Family: "transcriptions", Model: "whisper-1", Seconds: 3},
	}
	led := r.Ledger()
	if len(led) != len(want) {
		t.Fatalf("ledger %+v", led)
	}
	for i := range want {
		if led[i] != want[i] {
			t.Errorf("charge %d = %+v, want %+v", i, led[i], want[i])
		}
	}

	for _, tc := range []struct {
		path, why string
		fields    []string
	}{
		{"/v1/audio/transcriptions", "no model", nil},
		{"/v1/audio/translations", "not whisper", []string{"model", "gpt-4o-transcribe"}},
		{"/v1/audio/transcriptions", "srt", []string{"model", "whisper-1", "response_format", "srt"}},
	} {
		body, ct := multipartAudio(t, 10, tc.fields...)
		if status, _, b := do(t, r, "POST", tc.path, body, "Content-Type", ct); status != 400 {
			t.Errorf("%s: %d %s", tc.why, status, b)
		}
	}
	if status, _, _ := do(t, r, "POST", "/v1/audio/transcriptions", `{"model":"whisper-1"}`); status != 400 {
		t.Errorf("JSON transcription: %d", status)
	}
}

func TestModerationsAreFree(t *testing.T) {
	r := start(t)
	c := sdk(r)
	res, err := c.Moderations.New(ctx(t), openai.ModerationNewParams{Input: openai.ModerationNewParamsInputUnion{OfStringArray: []string{"a", "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 2 || res.Results[0].Flagged || res.Results[0].Categories.Violence || res.Model != "omni-moderation-latest" {
		t.Errorf("moderation: %s", res.RawJSON())
	}
	if n := len(r.Ledger()); n != 0 {
		t.Errorf("moderation billed: %+v", r.Ledger())
	}
	if status, _, _ := do(t, r, http.MethodGet, "/v1/moderations", ""); status != 405 {
		t.Errorf("GET: %d", status)
	}
}
