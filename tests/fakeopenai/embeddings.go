package fakeopenai

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
)

// DefaultEmbeddingDimensions is the length of an embedding when the request
// does not ask for "dimensions".
const DefaultEmbeddingDimensions = 8

// maxEmbeddingDimensions bounds "dimensions" (text-embedding-3-large's).
const maxEmbeddingDimensions = 3072

// embeddingInput is an embeddings "input": a string, an array of strings, an
// array of tokens or an array of token arrays. Each entry keeps its hash key
// and its token count.
type embeddingInput struct{ items []embeddingItem }

type embeddingItem struct {
	key    string // what the vector is derived from
	tokens int    // CountWords of a string, the length of a token array
}

func (in *embeddingInput) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] == 'n' {
		return errors.New("input must not be null")
	}
	if data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		in.items = []embeddingItem{textItem(s)}
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return errors.New("input must be a string, an array of strings, or an array of token arrays")
	}
	if len(raw) == 0 {
		return errors.New("input must not be empty")
	}
	first := bytes.TrimSpace(raw[0])
	switch {
	case len(first) > 0 && first[0] == '"':
		var ss []string
		if err := json.Unmarshal(data, &ss); err != nil {
			return err
		}
		for _, s := range ss {
			in.items = append(in.items, textItem(s))
		}
	case len(first) > 0 && first[0] == '[':
		var tss [][]int64
		if err := json.Unmarshal(data, &tss); err != nil {
			return err
		}
		for _, ts := range tss {
			in.items = append(in.items, tokenItem(ts))
		}
	default:
		var ts []int64
		if err := json.Unmarshal(data, &ts); err != nil {
			return err
		}
		in.items = []embeddingItem{tokenItem(ts)}
	}
	return nil
}

func textItem(s string) embeddingItem { return embeddingItem{key: s, tokens: CountWords(s)} }

func tokenItem(ts []int64) embeddingItem {
	return embeddingItem{key: tokensKey(ts), tokens: len(ts)}
}

// tokensKey is the text an array of tokens is embedded as: the tokens in
// decimal, separated by single spaces.
func tokensKey(ts []int64) string {
	var b []byte
	for i, t := range ts {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendInt(b, t, 10)
	}
	return string(b)
}

// EmbeddingVector is the embedding the fake returns for input (for a token
// array: its tokens in decimal joined by single spaces) with dims
// dimensions: deterministic pseudo-random values seeded by the input's
// FNV-1a hash, scaled to unit length as OpenAI's embeddings are.
func EmbeddingVector(input string, dims int) []float32 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(input))
	x := h.Sum64() | 1
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		// xorshift64*
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		f := float64((x*0x2545F4914F6CDD1D)>>11)/float64(1<<53)*2 - 1
		v[i] = float32(f)
		norm += float64(v[i]) * float64(v[i])
	}
	if norm > 0 {
		inv := 1 / math.Sqrt(norm)
		for i := range v {
			v[i] = float32(float64(v[i]) * inv)
		}
	}
	return v
}

// embeddingBase64 is OpenAI's encoding_format "base64": the little-endian
// float32 bytes of the vector in standard base64.
func embeddingBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

type embeddingData struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32 or a base64 string
}

type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type embeddingResponse struct {
	Object string          `json:"object"`
	Data   []embeddingData `json:"data"`
	Model  string          `json:"model"`
	Usage  embeddingUsage  `json:"usage"`
}

// embeddings answers POST /v1/embeddings: one EmbeddingVector per input,
// usage.prompt_tokens = Σ CountWords(input) (token arrays: their length).
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, body []byte, c *controls) {
	var req struct {
		Model          string          `json:"model"`
		Input          *embeddingInput `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
		Dimensions     *int            `json:"dimensions"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeBadRequest(w, c, "We could not parse the JSON body of your request: "+err.Error())
		return
	}
	switch {
	case req.Model == "":
		writeBadRequest(w, c, "you must provide a model parameter")
		return
	case req.Input == nil:
		writeBadRequest(w, c, "Missing required parameter: 'input'.")
		return
	case req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64":
		writeBadRequest(w, c, "'"+req.EncodingFormat+"' is not one of ['float', 'base64'] - 'encoding_format'")
		return
	case req.Dimensions != nil && (*req.Dimensions < 1 || *req.Dimensions > maxEmbeddingDimensions):
		writeBadRequest(w, c, "Invalid value for 'dimensions': "+strconv.Itoa(*req.Dimensions)+".")
		return
	}
	dims := DefaultEmbeddingDimensions
	if req.Dimensions != nil {
		dims = *req.Dimensions
	}
	resp := embeddingResponse{Object: "list", Model: req.Model, Data: make([]embeddingData, len(req.Input.items))}
	for i, it := range req.Input.items {
		v := EmbeddingVector(it.key, dims)
		d := embeddingData{Object: "embedding", Index: i, Embedding: v}
		if req.EncodingFormat == "base64" {
			d.Embedding = embeddingBase64(v)
		}
		resp.Data[i] = d
		resp.Usage.PromptTokens += it.tokens
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	ch := Charge{Family: FamilyEmbeddings, Model: req.Model, PromptTokens: int64(resp.Usage.PromptTokens)}
	w.Header()["X-Request-Id"] = []string{s.newID("req_")}
	s.writeBody(w, r, c, "application/json", marshalLine(resp), true, &ch)
}
