package eventsink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// errAbandoned marks a write the emitter gave up on: the queue filled while
// it was in flight, the drain deadline passed, or (a retry) Run's ctx ended.
var errAbandoned = errors.New("write abandoned")

// sinkState is a sink and what the emitter knows of its health. Only one
// goroutine at a time touches it: the one delivering to this sink (deliver
// joins them before the next batch), then Run's, at the end.
type sinkState struct {
	name string
	Sink

	down     bool          // the last write failed
	spilling bool          // down, and the queue reached its high-water mark: spill until it is down to its low-water mark
	failures int           // consecutive failed writes
	backoff  time.Duration // the wait before the next retry, before jitter
	retryAt  time.Time     // when a down sink is tried again
	spilled  int           // events spilled since the sink went down

	spillPath string    // "" without a spill directory
	spill     *FileSink // opened on first use
	spillErr  string    // the last spill failure, logged once; "" after a success
}

// send writes batch to s and returns how many of its events s lost. A sink
// that fails keeps the batch and is retried, after the backoff, for as long
// as the queue is below its high-water mark (full has not ended) and Run's
// ctx has not ended (stopping); then the batch goes to s's spill file
// instead. After the queue reached the mark, so do the next batches, without
// waiting, until the queue is down to its low-water mark: the retry that
// follows has room to take its time. After stopping, a sink that failed is
// not tried again. Events that cannot be encoded are taken out of the batch
// and lost.
func (e *Emitter) send(ctx, full, stopping context.Context, s *sinkState, batch []*llmproxyv1.UsageEvent) (lost int) {
	checked := false // for events that cannot be encoded
	for {
		if s.spilling && len(e.queue) <= e.lowWater {
			s.spilling = false
		}
		if s.down && (s.spilling || stopping.Err() != nil) {
			return lost + e.spill(s, batch)
		}
		if !s.down || !time.Now().Before(s.retryAt) {
			err := e.write(ctx, full, stopping, s, batch)
			if err == nil {
				return lost
			}
			if errors.Is(err, errAbandoned) {
				e.failed(s, err)
				s.spilling = true
				return lost + e.spill(s, batch)
			}
			if !checked {
				checked = true
				if ok, bad := e.encodable(s, batch); bad > 0 {
					lost, batch = lost+bad, ok
					if len(batch) == 0 {
						return lost
					}
					continue // no sink takes those: try the rest at once
				}
			}
			e.failed(s, err)
		}
		if !waitRetry(full, stopping, s.retryAt) {
			s.spilling = full.Err() != nil
			return lost + e.spill(s, batch)
		}
	}
}

// write makes one attempt to write batch to s, within WriteTimeout. An
// attempt started while the queue is below its high-water mark is abandoned
// when the queue reaches it (or the drain deadline passes): a sink that
// hangs must not hold the queue until it is full. One started above the
// mark (a healthy sink held back by another that failed) runs to its
// timeout. A retry is also abandoned when Run's ctx ends (stopping).
func (e *Emitter) write(ctx, full, stopping context.Context, s *sinkState, batch []*llmproxyv1.UsageEvent) error {
	parent := ctx
	if len(e.queue) < e.highWater {
		parent = full
	}
	wctx, cancel := context.WithTimeout(parent, e.writeTimeout)
	defer cancel()
	retry := s.down
	if retry {
		defer context.AfterFunc(stopping, cancel)()
	}
	err := s.Write(wctx, batch)
	if err == nil {
		e.metrics.sinkWritten.WithLabelValues(s.name).Add(float64(len(batch)))
		e.recovered(s)
		return nil
	}
	if parent.Err() != nil || retry && stopping.Err() != nil {
		return fmt.Errorf("%w: %w", errAbandoned, err)
	}
	return err
}

// failed records a failed write and sets when s is tried again: after
// RetryBackoff the first time, twice as long after each further failure,
// capped at RetryMaxBackoff, each wait jittered down by up to a half.
func (e *Emitter) failed(s *sinkState, err error) {
	e.metrics.sinkErrors.WithLabelValues(s.name).Inc()
	s.failures++
	if !s.down {
		s.down, s.backoff = true, e.retryBackoff
		e.log.Warn().Err(err).Str(logSink, s.name).Str(logSpillFile, s.spillPath).
			Msg("usage event sink failed: retrying while the event queue has room, then spilling")
	} else {
		s.backoff = min(2*s.backoff, e.retryMaxBackoff)
	}
	s.retryAt = time.Now().Add(s.backoff/2 + rand.N(s.backoff/2+1))
}

// recovered marks s as up after a successful write.
func (e *Emitter) recovered(s *sinkState) {
	if !s.down {
		return
	}
	e.log.Info().Str(logSink, s.name).Int(logFailures, s.failures).Int(logSpilled, s.spilled).
		Str(logSpillFile, s.spillPath).Msg("usage event sink recovered")
	s.down, s.spilling, s.failures, s.backoff, s.spilled = false, false, 0, 0, 0
}

// waitRetry waits until at and reports true, or reports false as soon as
// the queue reaches its high-water mark (full ends) or Run's ctx has ended:
// then there is no waiting any more, the batch is spilled.
func waitRetry(full, stopping context.Context, at time.Time) bool {
	select {
	case <-full.Done():
		return false
	case <-stopping.Done():
		return false
	default:
	}
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-full.Done():
		return false
	case <-stopping.Done():
		return false
	}
}

// watchQueue returns a context that ends once the queue has reached its
// high-water mark (or ctx ends), and the function that stops watching. It
// is meant for one deliver: meanwhile only Emit touches the queue, so its
// length only grows, and Emit wakes the watcher (filling) each time it
// finds the queue at the mark.
func (e *Emitter) watchQueue(ctx context.Context) (context.Context, context.CancelFunc) {
	full, cancel := context.WithCancel(ctx)
	go func() {
		for len(e.queue) < e.highWater {
			select {
			case <-e.filling:
			case <-full.Done():
				return
			}
		}
		cancel()
	}()
	return full, cancel
}

// encodable returns the events of batch that [MarshalEvent] can encode (batch
// itself when all can) and how many it cannot, logging those for s. It runs
// only after a failed write, so the common path encodes each event once.
func (e *Emitter) encodable(s *sinkState, batch []*llmproxyv1.UsageEvent) ([]*llmproxyv1.UsageEvent, int) {
	var ok []*llmproxyv1.UsageEvent
	bad := 0
	for i, ev := range batch {
		_, err := MarshalEvent(ev)
		if err == nil {
			if ok != nil {
				ok = append(ok, ev)
			}
			continue
		}
		if ok == nil {
			ok = append(make([]*llmproxyv1.UsageEvent, 0, len(batch)), batch[:i]...)
		}
		bad++
		e.log.Error().Err(err).Str(logSink, s.name).Str(logEventID, ev.GetId()).
			Msg("usage event dropped: it cannot be encoded")
	}
	if bad == 0 {
		return batch, 0
	}
	return ok, bad
}
