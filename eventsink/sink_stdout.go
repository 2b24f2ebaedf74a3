package eventsink

import (
	"context"
	"fmt"
	"io"
	"sync"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// StdoutSink is a [Sink] writing [MarshalEvent] lines to a writer, usually
// os.Stdout for a log collector to pick up. Each batch is one Write call.
// It is safe for concurrent use.
type StdoutSink struct {
	mu  sync.Mutex
	w   io.Writer // guarded by mu
	buf []byte    // guarded by mu
}

var _ Sink = (*StdoutSink)(nil)

// NewStdoutSink returns a StdoutSink writing to w.
func NewStdoutSink(w io.Writer) *StdoutSink { return &StdoutSink{w: w} }

// Name returns "stdout", the sink label of its metrics.
func (s *StdoutSink) Name() string { return "stdout" }

// Write writes one line per event. It ignores ctx.
func (s *StdoutSink) Write(_ context.Context, events []*llmproxyv1.UsageEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := s.buf[:0]
	defer func() { s.buf = buf[:0] }()
	for _, ev := range events {
		var err error
		if buf, err = appendEvent(buf, ev); err != nil {
			return err
		}
		buf = append(buf, '\n')
	}
	if _, err := s.w.Write(buf); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	return nil
}

// Close does nothing: the writer belongs to the caller.
func (s *StdoutSink) Close() error { return nil }
