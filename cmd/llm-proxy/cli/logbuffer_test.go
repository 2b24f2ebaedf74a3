package cli

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestLogBufferWritesTogether(t *testing.T) {
	var out bytes.Buffer
	b := &logBuffer{w: &out, stop: make(chan struct{}), done: make(chan struct{})}
	close(b.done) // no flushing goroutine: the test flushes
	log := zerolog.New(b)
	log.Info().Msg("one")
	log.Warn().Msg("two")
	if out.Len() != 0 {
		t.Fatalf("written before a flush: %q", out.String())
	}
	log.Error().Msg("three")
	if got := strings.Count(out.String(), "\n"); got != 3 {
		t.Fatalf("an error line did not write out what waited: %q", out.String())
	}
	log.Info().Msg(strings.Repeat("x", logBufferSize))
	log.Info().Msg("four")
	if !strings.Contains(out.String(), "xxx") || strings.Contains(out.String(), "four") {
		t.Fatalf("a full buffer was not written out before the next line: %d bytes", out.Len())
	}
	b.Close()
	if !strings.HasSuffix(out.String(), `"message":"four"}`+"\n") {
		t.Fatalf("Close did not write out the rest")
	}
	log.Info().Msg("five")
	if !strings.HasSuffix(out.String(), `"message":"five"}`+"\n") {
		t.Fatalf("a line after Close was held")
	}
}

// Only a file is buffered; the lines reach it without anyone flushing.
func TestBufferLogOnlyFiles(t *testing.T) {
	var mem bytes.Buffer
	if w, closeFn := bufferLog(&mem); w != &mem {
		t.Fatal("a test's writer was buffered")
	} else {
		closeFn()
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	bw, closeFn := bufferLog(w)
	defer closeFn()
	log := zerolog.New(bw)
	log.Info().Msg("hello")
	line, err := bufio.NewReader(r).ReadString('\n') // the flushing goroutine writes it
	if err != nil || !strings.Contains(line, `"message":"hello"`) {
		t.Fatalf("read %q, %v", line, err)
	}
}
