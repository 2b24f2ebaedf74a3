package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// File appends events to a JSONL file, one line per event:
//
//	{"id":"<event id>","event":{…the event JSON, compacted…}}
//
// A batch is written with one write and made durable with fsync before
// Deliver returns, so an accepted entry is on disk. A write that fails part
// way is cut back off the file, so a retry never leaves half a line. A line
// may still repeat after a crash between fsync and XACK; readers drop repeats
// by id. An event that is not valid JSON is refused permanently.
type File struct {
	path string

	mu sync.Mutex // guards f
	f  *os.File
}

// OpenFile opens (creating it, and its directory, if needed) the file at
// path for appending. The file is created with mode 0600: events name
// projects and tokens.
func OpenFile(path string) (*File, error) {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create directory of %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &File{path: path, f: f}, nil
}

// Name returns "file".
func (f *File) Name() string { return "file" }

// Deliver appends the entries and syncs the file.
func (f *File) Deliver(ctx context.Context, entries []Entry) error {
	var buf bytes.Buffer
	failed := map[string]error{}
	for _, e := range entries {
		id, err := json.Marshal(e.ID)
		if err != nil {
			failed[e.ID] = Permanent(err)
			continue
		}
		n := buf.Len()
		buf.WriteString(`{"id":`)
		buf.Write(id)
		buf.WriteString(`,"event":`)
		if err := json.Compact(&buf, e.JSON); err != nil {
			buf.Truncate(n)
			failed[e.ID] = Permanent(fmt.Errorf("event %s is not JSON: %w", e.ID, err))
			continue
		}
		buf.WriteString("}\n")
	}
	if buf.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := f.append(buf.Bytes()); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return &BatchError{Failed: failed}
	}
	return nil
}

func (f *File) append(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return fmt.Errorf("%s is closed", f.path)
	}
	st, err := f.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.path, err)
	}
	if _, err := f.f.Write(b); err != nil {
		// Cut the partial write back off so a retry starts on a line boundary.
		_ = f.f.Truncate(st.Size())
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	return nil
}

// Close closes the file. Deliver fails afterwards.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}
