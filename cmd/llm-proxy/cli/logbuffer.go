package cli

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// logBuffer gathers log lines and writes them out together: at most
// logFlushInterval after a line was logged, as soon as logBufferSize bytes
// wait, and at once for a line at level error or above. Unbuffered, each
// request's info line was a write system call of its own on the request
// path; buffered, a busy sidecar makes about ten a second. A crash loses at
// most the last interval's lines below error; Close writes out the rest.
type logBuffer struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	closed bool // lines are written at once
	stop   chan struct{}
	done   chan struct{}
}

const (
	logFlushInterval = 100 * time.Millisecond
	logBufferSize    = 64 << 10
)

// bufferLog returns w buffered when it is a file (a pipe to a container
// runtime or a terminal, where each write is a system call), else w itself
// with a no-op close: a test's writer stays synchronous, so a line is there
// to read as soon as it is logged.
func bufferLog(w io.Writer) (io.Writer, func()) {
	if _, ok := w.(*os.File); !ok {
		return w, func() {}
	}
	b := &logBuffer{w: w, buf: make([]byte, 0, logBufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b, b.Close
}

func (b *logBuffer) Write(p []byte) (int, error) {
	return b.WriteLevel(zerolog.NoLevel, p)
}

// WriteLevel is zerolog's hook: it sees each line's level.
func (b *logBuffer) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > logBufferSize {
		b.flushLocked()
	}
	b.buf = append(b.buf, p...)
	if b.closed || level >= zerolog.ErrorLevel && level != zerolog.NoLevel {
		b.flushLocked()
	}
	return len(p), nil
}

func (b *logBuffer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.w.Write(b.buf) // nowhere to report a failure to write the log
	b.buf = b.buf[:0]
}

func (b *logBuffer) run() {
	defer close(b.done)
	t := time.NewTicker(logFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.mu.Lock()
			b.flushLocked()
			b.mu.Unlock()
		case <-b.stop:
			return
		}
	}
}

// Close stops the flushing goroutine and writes out what is left; lines
// logged after it are written at once.
func (b *logBuffer) Close() {
	close(b.stop)
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
}
