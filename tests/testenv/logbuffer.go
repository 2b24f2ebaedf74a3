package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// LogBuffer collects the log lines a server writes from many goroutines, so
// a test can read them (for example to prove no secret was logged).
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// CheckJSONLog reports the first line of a server's log that is not one JSON
// object with unique keys (at every depth). The only other lines allowed are
// the banner serve prints once when it generates a management token: blank,
// "Generated management token …" and the indented token.
func CheckJSONLog(log string) error {
	for i, line := range strings.Split(log, "\n") {
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "Generated management token"), strings.HasPrefix(line, "    "):
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := uniqueKeys(dec); err != nil {
			return fmt.Errorf("log line %d: %w: %s", i+1, err, line)
		}
		if dec.More() {
			return fmt.Errorf("log line %d: more than one JSON value: %s", i+1, line)
		}
	}
	return nil
}

// uniqueKeys reads one JSON value from dec, failing on a repeated object key.
func uniqueKeys(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("duplicate key %q", key)
			}
			seen[key] = true
			if err := uniqueKeys(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for dec.More() {
			if err := uniqueKeys(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}
