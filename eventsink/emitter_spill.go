package eventsink

import (
	"context"
	"errors"
	"fmt"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// Why a spill fails, besides the file's own errors.
var (
	errNoSpill   = errors.New("no spill directory configured")
	errSpillFull = errors.New("spill file full")
)

// spill appends batch to s's spill file, for the events s did not take, and
// returns how many are lost: none, the events that cannot be encoded, or all
// of them when there is no spill file or it cannot take them.
func (e *Emitter) spill(s *sinkState, batch []*llmproxyv1.UsageEvent) (lost int) {
	if len(batch) == 0 {
		return 0
	}
	err := e.spillWrite(s, batch)
	if err != nil && s.spill != nil && !errors.Is(err, errSpillFull) {
		if ok, bad := e.encodable(s, batch); bad > 0 {
			lost, batch = bad, ok
			err = e.spillWrite(s, batch)
		}
	}
	if err != nil {
		if err.Error() != s.spillErr {
			s.spillErr = err.Error()
			e.log.Error().Err(err).Str(logSink, s.name).Str(logSpillFile, s.spillPath).
				Msg("usage events lost: the sink did not take them and they could not be spilled")
		}
		return lost + len(batch)
	}
	if s.spilled == 0 || s.spillErr != "" {
		e.log.Warn().Str(logSink, s.name).Str(logSpillFile, s.spillPath).
			Msg("usage events spilled: the sink did not take them in time")
	}
	s.spillErr = ""
	s.spilled += len(batch)
	e.metrics.sinkSpilled.WithLabelValues(s.name).Add(float64(len(batch)))
	return lost
}

func (e *Emitter) spillWrite(s *sinkState, batch []*llmproxyv1.UsageEvent) error {
	if s.spillPath == "" {
		return errNoSpill
	}
	if s.spill == nil { // opened at the first spill, and again after a failed open
		f, err := NewFileSink(s.spillPath, 0, 0)
		if err != nil {
			return fmt.Errorf("spill: %w", err)
		}
		s.spill = f
	}
	if e.spillMaxBytes > 0 && s.spill.fileSize() >= e.spillMaxBytes {
		return fmt.Errorf("%w: %d bytes", errSpillFull, e.spillMaxBytes)
	}
	if err := s.spill.Write(context.Background(), batch); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	return nil
}

// closeSpill closes s's spill file, if it was opened.
func (s *sinkState) closeSpill() error {
	if s.spill == nil {
		return nil
	}
	err := s.spill.Close()
	s.spill = nil
	return err
}
