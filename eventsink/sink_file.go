package eventsink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// FileSink is the JSONL [Sink]: one [MarshalEvent] line per event, appended
// to a file that it rotates by size. When the next line would take the file
// past maxBytes, the file is renamed path.1 (path.1 becomes path.2, and so
// on up to path.keep; the oldest is removed) and a new one is started. A
// line is never split across files, so a single line longer than maxBytes
// makes a file of its own. FileSink is safe for concurrent use, but one file
// must have one writer: two processes, or an external rotator that renames
// the file, break the rotation.
type FileSink struct {
	path     string
	maxBytes int64
	keep     int

	mu     sync.Mutex
	f      *os.File // guarded by mu; nil after a failed rotation or Close
	size   int64    // guarded by mu: bytes in f
	buf    []byte   // guarded by mu
	closed bool     // guarded by mu
}

var _ Sink = (*FileSink)(nil)

// NewFileSink opens (creating it and its directory if needed) the file at
// path for appending. maxBytes <= 0 never rotates; keep is how many rotated
// files are kept (0: a full file is deleted).
func NewFileSink(path string, maxBytes int64, keep int) (*FileSink, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("event file: %w", err)
	}
	s := &FileSink{path: path, maxBytes: maxBytes, keep: max(keep, 0)}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// Name returns "file", the sink label of its metrics.
func (s *FileSink) Name() string { return "file" }

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("event file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("event file: %w", err)
	}
	s.f, s.size = f, fi.Size()
	return nil
}

// Write appends events, rotating between lines as needed. It ignores ctx:
// file writes cannot be interrupted.
func (s *FileSink) Write(_ context.Context, events []*llmproxyv1.UsageEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("event file: %w", os.ErrClosed)
	}
	if s.f == nil { // a rotation could not open the new file: try again
		if err := s.open(); err != nil {
			return err
		}
	}
	buf := s.buf[:0]
	defer func() { s.buf = buf[:0] }()
	for _, ev := range events {
		start := len(buf)
		var err error
		if buf, err = appendEvent(buf, ev); err != nil {
			return err
		}
		buf = append(buf, '\n')
		if s.maxBytes > 0 && s.size+int64(len(buf)) > s.maxBytes && s.size+int64(start) > 0 {
			if err := s.write(buf[:start]); err != nil {
				return err
			}
			if err := s.rotate(); err != nil {
				return err
			}
			buf = buf[:copy(buf, buf[start:])]
		}
	}
	return s.write(buf)
}

func (s *FileSink) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := s.f.Write(b)
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("event file: %w", err)
	}
	return nil
}

// rotate shifts path.i to path.i+1, path to path.1, and opens a new path.
// If a rename fails, writing goes on in whatever file is at path.
func (s *FileSink) rotate() error {
	errs := []error{s.f.Close()}
	s.f = nil
	if s.keep == 0 {
		errs = append(errs, os.Remove(s.path))
	} else {
		for i := s.keep - 1; i >= 1; i-- {
			err := os.Rename(s.backup(i), s.backup(i+1))
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, os.Rename(s.path, s.backup(1)))
	}
	if err := s.open(); err != nil {
		return err // s.f stays nil: the next Write opens it again
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rotate event file: %w", err)
	}
	return nil
}

func (s *FileSink) backup(i int) string { return s.path + "." + strconv.Itoa(i) }

// fileSize returns the size of the file being written, as far as the sink
// knows (it started from the size the file had when opened).
func (s *FileSink) fileSize() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Close syncs and closes the file; later writes fail.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.f.Sync(), s.f.Close())
	s.f = nil
	if err != nil {
		return fmt.Errorf("event file: %w", err)
	}
	return nil
}
