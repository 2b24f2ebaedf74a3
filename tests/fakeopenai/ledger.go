package fakeopenai

import (
	"context"
	"net/http"
)

// Charge families: the Family of a [Charge], one per billed endpoint.
const (
	FamilyChat           = "chat"
	FamilyResponses      = "responses"
	FamilyEmbeddings     = "embeddings"
	FamilyImages         = "images"
	FamilySpeech         = "speech"
	FamilyTranscriptions = "transcriptions"
	FamilyTranslations   = "translations"
)

// Charge is one billable outcome: what OpenAI would bill for one answer.
// Counts a family does not use are zero.
type Charge struct {
	Key        string // the bearer token the upstream saw (the project's OpenAI key)
	Family     string // FamilyChat, FamilyResponses, ...
	Model      string
	Batch      bool // billed at the Batch API's price (a line of a batch)
	Background bool // a background response
	Stream     bool

	// Tokens. Chat: prompt and completion tokens. Responses, gpt-image
	// images and token-billed transcriptions: input and output tokens.
	// Embeddings: PromptTokens only. CompletionTokens includes
	// ReasoningTokens, as OpenAI counts them.
	PromptTokens, CachedTokens, CompletionTokens, ReasoningTokens int64
	AudioTokens                                                   int64 // of PromptTokens, the audio input tokens (gpt-4o*-transcribe)

	Images       int64  // images generated
	ImageSize    string // e.g. "1024x1024"
	ImageQuality string // "standard", "hd", "low", "medium", "high"

	Seconds    float64 // audio transcribed or translated, for duration-billed models (whisper-1)
	Characters int64   // speech input, in Unicode code points
}

// Ledger returns a copy of the charges so far, oldest first. Charges are
// added at the moment OpenAI would bill:
//
//   - a non-streamed answer when it is written (after any delay and hold),
//     even if x-fake-break then cuts it;
//   - a stream when it ends, however it ends: on a client disconnect or
//     x-fake-break, the prompt (with its cached and reasoning tokens) in full
//     and the completion words actually written;
//   - a background response when a GET moves it to completed;
//   - each line of a batch when the batch completes (Batch set).
//
// Errors, injected statuses, cancelled and deleted work are never charged.
// Nothing is charged while recording is off (see [Server.SetRecording]).
func (s *Server) Ledger() []Charge {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return append([]Charge(nil), s.ledger...)
}

// WaitLedger blocks until the ledger holds at least n charges or ctx ends,
// and returns a copy of it at that moment.
func (s *Server) WaitLedger(ctx context.Context, n int) ([]Charge, error) {
	for {
		s.lmu.Lock()
		if len(s.ledger) >= n {
			out := append([]Charge(nil), s.ledger...)
			s.lmu.Unlock()
			return out, nil
		}
		if s.ledgerNotify == nil {
			s.ledgerNotify = make(chan struct{})
		}
		ch := s.ledgerNotify
		s.lmu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return s.Ledger(), ctx.Err()
		}
	}
}

// ResetLedger forgets every charge. [Server.Reset] leaves the ledger alone.
func (s *Server) ResetLedger() {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.ledger = nil
}

// bill adds ch to the ledger with the request's key and c's batch flag.
func (s *Server) bill(r *http.Request, c *controls, ch Charge) {
	if !s.recording.Load() {
		return
	}
	ch.Key = bearer(r)
	ch.Batch = c.batch
	s.addCharge(ch)
}

// addCharge appends ch to the ledger as it is.
func (s *Server) addCharge(ch Charge) {
	if !s.recording.Load() {
		return
	}
	s.lmu.Lock()
	s.ledger = append(s.ledger, ch)
	if s.ledgerNotify != nil {
		close(s.ledgerNotify)
		s.ledgerNotify = nil
	}
	s.lmu.Unlock()
}
