package cachefilter_test

import (
	"strings"
	"testing"

	"github.com/llm-proxy/llm-proxy/cachefilter"
)

const okStream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n" +
	"data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n" +
	"data: [DONE]\n\n"

// feed writes body to c in chunks of the given sizes (the rest at once) and
// ends it when end is true.
func feed(c *cachefilter.Capture, body string, sizes []int, end bool) bool {
	ok := true
	for _, n := range sizes {
		if n > len(body) {
			n = len(body)
		}
		ok = c.Write([]byte(body[:n])) && ok
		body = body[n:]
	}
	ok = c.Write([]byte(body)) && ok
	if end {
		c.End()
	}
	return ok
}

func TestCaptureStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		body  string
		sizes []int
		end   bool
		limit int
		want  bool
	}{
		{"complete", okStream, nil, true, 1 << 20, true},
		{"complete in bytes", okStream, ones(len(okStream)), true, 1 << 20, true},
		{"split in DONE", okStream, []int{len(okStream) - 5}, true, 1 << 20, true},
		{"CRLF", strings.ReplaceAll(okStream, "\n", "\r\n"), nil, true, 1 << 20, true},
		{"CRLF split between CR and LF", "data: [DONE]\r\n\r\n", []int{13, 2}, true, 1 << 20, true},
		{"CRLF split is one line ending", "data: [DONE]\r\ndata: more\r\n\r\n", []int{13}, true, 1 << 20, false},
		{"CR only", strings.ReplaceAll(okStream, "\n", "\r"), ones(len(okStream)), true, 1 << 20, true},
		{"no space after colon", "data:[DONE]\n\n", nil, true, 1 << 20, true},
		{"with event and id fields", "id: 1\nevent: done\ndata: [DONE]\n\n", nil, true, 1 << 20, true},
		{"comment lines", ": keep-alive\n\ndata: [DONE]\n: bye\n\n", nil, true, 1 << 20, true},
		{"no end of stream", okStream, nil, false, 1 << 20, false},
		{"aborted before DONE", okStream[:len(okStream)-len("data: [DONE]\n\n")], nil, true, 1 << 20, false},
		{"DONE not dispatched", strings.TrimSuffix(okStream, "\n"), nil, true, 1 << 20, false},
		{"DONE with more data lines", "data: [DONE]\ndata: more\n\n", nil, true, 1 << 20, false},
		{"DONE as text", "data: {\"content\":\"data: [DONE]\"}\n\n", nil, true, 1 << 20, false},
		{"DONE with trailing space", "data: [DONE] \n\n", nil, true, 1 << 20, false},
		{"two spaces", "data:  [DONE]\n\n", nil, true, 1 << 20, false},
		{"over the limit", okStream, nil, true, len(okStream) - 1, false},
		{"at the limit", okStream, nil, true, len(okStream), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cachefilter.NewStreamCapture(tc.limit)
			wrote := feed(c, tc.body, tc.sizes, tc.end)
			if got := c.Complete(); got != tc.want {
				t.Fatalf("Complete = %v, want %v", got, tc.want)
			}
			if wrote != (len(tc.body) <= tc.limit) {
				t.Fatalf("Write returned %v with %d bytes and limit %d", wrote, len(tc.body), tc.limit)
			}
			if tc.want && string(c.Bytes()) != tc.body {
				t.Fatal("captured bytes differ from the stream")
			}
			if !c.Stream() {
				t.Fatal("stream capture says it is not one")
			}
		})
	}
}

func TestCaptureJSON(t *testing.T) {
	t.Parallel()
	c := cachefilter.NewCapture(10)
	if !c.Write([]byte(`{"a":`)) || !c.Write([]byte(`1}`)) {
		t.Fatal("Write within the limit failed")
	}
	if c.Complete() {
		t.Fatal("complete before End")
	}
	c.End()
	if !c.Complete() || string(c.Bytes()) != `{"a":1}` || c.Stream() {
		t.Fatalf("Complete=%v Bytes=%q", c.Complete(), c.Bytes())
	}

	c = cachefilter.NewCapture(10)
	c.Write([]byte("12345678"))
	if c.Write([]byte("901")) {
		t.Fatal("Write over the limit succeeded")
	}
	if c.Write([]byte("x")) {
		t.Fatal("Write after going over succeeded")
	}
	c.End()
	if c.Complete() || c.Bytes() != nil {
		t.Fatal("over-limit capture is complete or kept bytes")
	}
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// refComplete decides completion on the whole body at once, by a different
// route: normalise line endings, split into events on blank lines, and look
// for an event whose only data line is [DONE]. The last event counts only
// if a blank line closed it.
func refComplete(body string) bool {
	body = strings.ReplaceAll(body, "\r\n", "\n")
	body = strings.ReplaceAll(body, "\r", "\n")
	events := strings.Split(body, "\n\n")
	// A lone leading "\n" on an event is an empty line that dispatched an
	// empty event; the event text is what follows.
	for i, ev := range events {
		if i == len(events)-1 {
			break // not closed by a blank line
		}
		var data []string
		for _, line := range strings.Split(strings.TrimLeft(ev, "\n"), "\n") {
			if strings.HasPrefix(line, ":") {
				continue
			}
			name, val, found := strings.Cut(line, ":")
			if found {
				val = strings.TrimPrefix(val, " ")
			}
			if name == "data" {
				data = append(data, val)
			}
		}
		if len(data) == 1 && data[0] == "[DONE]" {
			return true
		}
	}
	return false
}

// FuzzCaptureStream: completion does not depend on where the stream is cut
// into chunks, agrees with a whole-body reference, and never holds without
// End.
func FuzzCaptureStream(f *testing.F) {
	f.Add(okStream, []byte{3, 7, 1})
	f.Add(strings.ReplaceAll(okStream, "\n", "\r\n"), []byte{1, 1, 1, 1, 40})
	f.Add("data: [DONE]\r", []byte{12})
	f.Add("data: x\r\r\ndata: [DONE]\n\n", []byte{8, 1})
	f.Add(": c\ndata:[DONE]\r\n\r\n", []byte{0, 0, 2})
	f.Fuzz(func(t *testing.T, body string, cuts []byte) {
		sizes := make([]int, len(cuts))
		for i, b := range cuts {
			sizes[i] = int(b)
		}
		whole := cachefilter.NewStreamCapture(1 << 20)
		feed(whole, body, nil, true)
		chunked := cachefilter.NewStreamCapture(1 << 20)
		feed(chunked, body, sizes, true)
		if whole.Complete() != chunked.Complete() {
			t.Fatalf("chunking %v changed completion: whole %v, chunked %v", sizes, whole.Complete(), chunked.Complete())
		}
		if want := refComplete(body); whole.Complete() != want {
			t.Fatalf("Complete = %v, reference %v", whole.Complete(), want)
		}
		open := cachefilter.NewStreamCapture(1 << 20)
		feed(open, body, sizes, false)
		if open.Complete() {
			t.Fatal("complete without End")
		}
		if string(chunked.Bytes()) != body {
			t.Fatal("captured bytes differ")
		}
	})
}
