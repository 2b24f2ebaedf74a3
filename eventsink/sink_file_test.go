package eventsink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	llmproxyv1 "github.com/llm-proxy/llm-proxy/proto/llmproxy/v1"
)

// readEvents decodes every line of the file at path ("" for a missing
// file) into request ids.
func readRequestIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end in a newline", path)
	}
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		ev, err := UnmarshalEvent(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ids = append(ids, ev.GetRequestId())
	}
	return ids
}

func newTestEvents(from, to int) []*llmproxyv1.UsageEvent {
	var evs []*llmproxyv1.UsageEvent
	for i := from; i < to; i++ {
		evs = append(evs, newTestEvent(i))
	}
	return evs
}

func wantRequestIDs(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("r%d", i))
	}
	return ids
}

func TestFileSinkAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "events.jsonl") // the directory is created
	s, err := NewFileSink(path, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, newTestEvents(0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, newTestEvents(3, 4)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	// A new sink on the same file appends.
	s, err = NewFileSink(path, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(ctx, newTestEvents(3, 5)); err != nil {
		t.Fatal(err)
	}
	if got, want := readRequestIDs(t, path), wantRequestIDs(0, 5); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("file holds %v, want %v", got, want)
	}
}

func TestFileSinkRotates(t *testing.T) {
	// Every line of these events has the same length.
	line, err := MarshalEvent(newTestEvent(10))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(line) + 1)
	ctx := context.Background()

	for _, tc := range []struct {
		name    string
		keep    int
		batches [][2]int // request ids written per Write
		files   map[string][]string
	}{
		{
			name:    "one batch spans files",
			keep:    2,
			batches: [][2]int{{10, 20}},
			files: map[string][]string{
				"": wantRequestIDs(19, 20), ".1": wantRequestIDs(16, 19), ".2": wantRequestIDs(13, 16), ".3": nil,
			},
		},
		{
			name:    "batch by batch",
			keep:    3,
			batches: [][2]int{{10, 12}, {12, 14}, {14, 15}, {15, 17}},
			files: map[string][]string{
				// 3 lines fit in a file: 10 11 12 | 13 14 15 | 16
				"": wantRequestIDs(16, 17), ".1": wantRequestIDs(13, 16), ".2": wantRequestIDs(10, 13), ".3": nil,
			},
		},
		{
			name:    "keep none",
			keep:    0,
			batches: [][2]int{{10, 17}},
			files:   map[string][]string{"": wantRequestIDs(16, 17), ".1": nil},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			s, err := NewFileSink(path, 3*size, tc.keep)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range tc.batches {
				if err := s.Write(ctx, newTestEvents(b[0], b[1])); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for suffix, want := range tc.files {
				if got := readRequestIDs(t, path+suffix); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("events%s holds %v, want %v", suffix, got, want)
				}
				if fi, err := os.Stat(path + suffix); err == nil && fi.Size() > 3*size {
					t.Errorf("events%s has %d bytes, over the %d limit", suffix, fi.Size(), 3*size)
				}
			}
		})
	}
}

// The size of a file the sink did not start counts towards rotation, and a
// line longer than the limit gets a file of its own.
func TestFileSinkRotationEdges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(path, []byte(strings.Repeat("x", 99)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewFileSink(path, 100, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Write(ctx, newTestEvents(0, 2)); err != nil { // each line is over 100 bytes
		t.Fatal(err)
	}
	for suffix, want := range map[string]string{"": "[r1]", ".1": "[r0]"} {
		if got := readRequestIDs(t, path+suffix); fmt.Sprint(got) != want {
			t.Errorf("events%s holds %v, want %v", suffix, got, want)
		}
	}
	if b, _ := os.ReadFile(path + ".2"); string(b) != strings.Repeat("x", 99)+"\n" {
		t.Errorf("the file found at start was not rotated intact: %q", b)
	}
}

func TestStdoutSink(t *testing.T) {
	var buf bytes.Buffer
	s := NewStdoutSink(&buf)
	if err := s.Write(context.Background(), newTestEvents(0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	for i, l := range lines {
		ev, err := UnmarshalEvent([]byte(l))
		if err != nil || ev.GetRequestId() != fmt.Sprintf("r%d", i) {
			t.Fatalf("line %d: %v %v", i, ev, err)
		}
	}
}
