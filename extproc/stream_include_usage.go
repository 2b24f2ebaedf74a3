package extproc

import (
	"bytes"
	"encoding/json"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Streamed chat and text completions report usage only when the client asks
// (stream_options.include_usage). Without it the usage of a stream would be a
// tokenizer estimate, so llm-proxy asks on the client's behalf and removes the
// usage-only chunk it caused from what the client receives: a client that
// reads choices[0] of every chunk would break on it. A client that asked gets
// the chunk as usual.

// streamOptionsPaths are the endpoints that accept stream_options.
var streamOptionsPaths = map[string]bool{"/v1/chat/completions": true, "/v1/completions": true}

// includeUsageState is what this feature keeps of one stream: whether it
// asked for usage on the client's behalf, and the filter that takes the
// usage-only chunk out of the response.
type includeUsageState struct {
	injected bool
	filter   usageChunkFilter
}

// injectIncludeUsage returns the request body with include_usage set, and
// remembers it did, or nil when the request needs no change. The body is
// edited in place (topMembers, editBody): every other byte reaches OpenAI as
// the client wrote it, key order, spacing and number spelling included. Each
// stream_options member is edited, should the body repeat it, so that a
// parser keeping the first and one keeping the last agree.
func (st *stream) injectIncludeUsage(body []byte) []byte {
	if !st.req.Stream || st.req.IncludeUsage || !streamOptionsPaths[st.path] {
		return nil
	}
	members, err := topMembers(body)
	if err != nil {
		return nil // readRequest accepted it; nothing sensible to change
	}
	var edits []bodyEdit
	for _, m := range members {
		if m.key != "stream_options" {
			continue
		}
		opts, ok := withIncludeUsage(body[m.start:m.end])
		if !ok {
			return nil
		}
		edits = append(edits, bodyEdit{start: m.start, end: m.end, value: opts})
	}
	if len(edits) == 0 {
		edits = []bodyEdit{{start: -1, key: "stream_options", value: []byte(`{"include_usage":true}`)}}
	}
	st.includeUsage.injected = true
	return editBody(body, edits)
}

// withIncludeUsage is a stream_options value with include_usage true: null
// becomes {"include_usage":true}; an object keeps its other members and
// gets include_usage set (every occurrence) or added. ok is false for any
// other value, which OpenAI refuses anyway.
func withIncludeUsage(raw []byte) (out []byte, ok bool) {
	if bytes.Equal(raw, []byte("null")) {
		return []byte(`{"include_usage":true}`), true
	}
	members, err := topMembers(raw)
	if err != nil {
		return nil, false
	}
	var edits []bodyEdit
	for _, m := range members {
		if m.key == "include_usage" {
			edits = append(edits, bodyEdit{start: m.start, end: m.end, value: []byte("true")})
		}
	}
	if len(edits) == 0 {
		edits = []bodyEdit{{start: -1, key: "include_usage", value: []byte("true")}}
	}
	return editBody(raw, edits), true
}

// removeInjectedUsage takes the usage-only chunk out of a streamed response
// whose usage was asked for on the client's behalf. It returns what of chunk
// the client receives and the mutation that says so (nil: chunk unchanged,
// which is every chunk but the usage one: nothing is sent back to Envoy that
// it already has). An encoded stream cannot be filtered and passes unchanged.
func (st *stream) removeInjectedUsage(chunk []byte, end bool) ([]byte, *extprocv3.CommonResponse) {
	if !st.includeUsage.injected || !st.usage.read || !st.usage.sse || st.usage.encoding != "" {
		return chunk, nil
	}
	seen, changed := st.includeUsage.filter.filter(chunk, end)
	if !changed {
		return chunk, nil
	}
	return seen, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_Body{Body: seen},
	}}
}

// replaceBody is the request-body answer that swaps in body. Envoy takes a
// header mutation along with a BUFFERED body, and the length must match.
func replaceBody(body []byte) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				setHeader("content-length", strconv.Itoa(len(body))),
			}},
			BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}},
		},
	}}}
}

// usageChunkFilter removes usage-only events from an SSE stream. It passes
// complete events on and holds back only an event still being received, so
// the client sees each event as soon as it is whole.
type usageChunkFilter struct {
	pending []byte // the start of an event not yet whole
	out     []byte // what filter last returned when that was not chunk itself
}

// filter returns what of the bytes received so far the client may have, and
// whether that differs from chunk. In the common case — no partial event
// held from before, chunk ends at an event's end and holds no usage-only
// event — it copies nothing and reports no change. What it returns is valid
// until its next call (the answer to Envoy is sent before that).
func (f *usageChunkFilter) filter(chunk []byte, end bool) (out []byte, changed bool) {
	held := len(f.pending) > 0
	clean := 0 // how much of chunk is known to be whole events to pass
	if !held {
		for clean < len(chunk) {
			l := eventLen(chunk[clean:])
			if l < 0 || isUsageOnly(chunk[clean:clean+l]) {
				break
			}
			clean += l
		}
		if clean == len(chunk) {
			return chunk, false
		}
	}
	out = f.out[:0]
	if held {
		e := seamEnd(f.pending, chunk)
		if e < 0 {
			e = eventLen(chunk)
		}
		if e < 0 { // the held event is still not whole
			f.pending = append(f.pending, chunk...)
			if end {
				out, f.pending = append(out, f.pending...), nil
			}
			f.out = out[:0]
			return out, true
		}
		f.pending = append(f.pending, chunk[:e]...)
		if !isUsageOnly(f.pending) {
			out = append(out, f.pending...)
		}
		f.pending, chunk = f.pending[:0], chunk[e:]
	}
	// The events of chunk, in place (from where the scan above stopped):
	// only a usage-only one is cut out.
	start, i := 0, clean
	for i < len(chunk) {
		l := eventLen(chunk[i:])
		if l < 0 {
			break
		}
		if isUsageOnly(chunk[i : i+l]) {
			out = append(out, chunk[start:i]...)
			start = i + l
		}
		i += l
	}
	keep := i
	if end {
		keep = len(chunk) // an event cut short by the end goes as it is
	} else {
		f.pending = append(f.pending, chunk[i:]...)
	}
	if len(out) == 0 && !held {
		out = chunk[start:keep] // no copy
	} else {
		out = append(out, chunk[start:keep]...)
		f.out = out[:0]
	}
	if len(f.pending) == 0 {
		f.pending = nil // let a long stream's buffer go
	}
	if end {
		f.out = nil
	}
	return out, true
}

// seamEnd is where in chunk an event held in pending ends when its blank
// line begins in pending ("…\n" + "\n…", "…\n" + "\r\n…", "…\n\r" + "\n…"),
// or -1 when it does not end at the seam.
func seamEnd(pending, chunk []byte) int {
	k := len(pending)
	switch {
	case k >= 1 && pending[k-1] == '\n' && len(chunk) >= 1 && chunk[0] == '\n':
		return 1
	case k >= 1 && pending[k-1] == '\n' && len(chunk) >= 2 && chunk[0] == '\r' && chunk[1] == '\n':
		return 2
	case k >= 2 && pending[k-2] == '\n' && pending[k-1] == '\r' && len(chunk) >= 1 && chunk[0] == '\n':
		return 1
	}
	return -1
}

// eventLen is the length of the first complete SSE event in b (through its
// blank line), or -1.
func eventLen(b []byte) int {
	// An event is one long data line, mostly: IndexByte jumps to each line
	// end many bytes at a time instead of looking at every byte.
	for i := 0; ; i++ {
		n := bytes.IndexByte(b[i:], '\n')
		if n < 0 {
			return -1
		}
		i += n
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
}

// isUsageOnly reports whether an SSE event is a chunk with no choices and a
// usage object: the chunk include_usage adds. Every other chunk of such a
// stream says "usage":null, so only an event whose usage is an object is
// decoded.
func isUsageOnly(ev []byte) bool {
	if !hasObjectKey(ev, usageKey) {
		return false
	}
	var data []byte
	for line := range bytes.Lines(ev) {
		if rest, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(rest, []byte(" "))...)
		}
	}
	var chunk struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   json.RawMessage   `json:"usage"`
	}
	if json.Unmarshal(data, &chunk) != nil {
		return false
	}
	return chunk.Choices != nil && len(chunk.Choices) == 0 && len(chunk.Usage) > 0 && !bytes.Equal(chunk.Usage, []byte("null"))
}

// usageKey is the needle hasObjectKey looks for: the name and its closing
// quote.
var usageKey = []byte(`usage"`)

// hasObjectKey reports whether needle (a key's name and closing quote)
// appears in b, after an opening quote, as a key whose value is an object. A
// quote inside a JSON string is escaped, so the quoted name is found only
// where it is a key. The needle leaves out the opening quote: quotes are
// everywhere in JSON, so a search led by one would stop at nearly every byte.
func hasObjectKey(b, needle []byte) bool {
	for {
		i := bytes.Index(b, needle)
		if i < 0 {
			return false
		}
		quoted := i > 0 && b[i-1] == '"'
		b = bytes.TrimLeft(b[i+len(needle):], " \t\r\n")
		if quoted && len(b) > 0 && b[0] == ':' {
			if v := bytes.TrimLeft(b[1:], " \t\r\n"); len(v) > 0 && v[0] == '{' {
				return true
			}
		}
	}
}
