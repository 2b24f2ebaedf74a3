package extproc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llm-proxy/llm-proxy/config"
	"github.com/llm-proxy/llm-proxy/policy"
	"github.com/llm-proxy/llm-proxy/usage"
)

// A request must pass the rules of its project and of its token
// (policy.Combined, authz.Principal.Rules) before anything is reserved,
// looked up in the cache or sent upstream:
//
//   - request headers: a Content-Length over the body cap is refused before
//     Envoy buffers the body (413), and so is an upload (a body the sidecar
//     does not read) sent without one while a cap applies (411: its size
//     could not be held to the cap). GET /v1/models/{model} must name an
//     allowed model (403).
//   - request body (JSON routes): its length (413); the model it names
//     (403; a route that runs a model must name one, since OpenAI's default
//     — an image model, a stored prompt's — is one the rules cannot see);
//     then, only when the rules restrict the body, its top-level members:
//     "tools" or "functions" (400), each restricted parameter (400) and the
//     output ceiling. A max_tokens, max_completion_tokens or
//     max_output_tokens over the ceiling is refused (400) or, in clamp mode,
//     lowered to it; a body naming none gets the route's own field set to
//     the ceiling, so the ceiling holds either way. The edit is made in
//     place: key order, spacing and every other value stay as the client
//     wrote them. The reservation and the cache key see the edited request.
//   - GET /v1/models: the answer is read whole (BUFFERED) and its "data"
//     keeps only the allowed models. The cache is not used for such a
//     request: its entry is the project's, shared by tokens with other
//     lists (or none), and stays the upstream's.
//   - a batch: every line of its input file must name an allowed model
//     (403 naming the line), read with the reservation or, when nothing is
//     reserved, for this check alone.
//
// Model refusals are security denials (audited, auth.model_not_allowed);
// the others are malformed requests. A request with no rules pays two
// comparisons per phase: the body is parsed again only when the rules
// restrict it (policy.Combined.RestrictsBody).
//
// Known gap: multipart uploads (image edits and variations, audio
// transcriptions and translations) name their model in a form field of a
// body the sidecar never reads (Envoy does not buffer it), so the model
// allowlist does not apply to them; their body cap is held by
// Content-Length. Batch input lines are checked for their model only: the
// other rules (ceiling, parameters, tools) are not applied to them.

// rulesState is what the rules keep of one stream.
type rulesState struct {
	filterList   bool   // GET /v1/models under a model allowlist: the answer keeps only allowed models
	rewrote      bool   // the request body was edited to hold the output ceiling
	linesChecked bool   // a batch's input lines were checked against the allowlist (estimateBatch)
	held         []byte // the model list until its end (BUFFERED: one message)
}

// ruleError is a request its project's or token's rules refuse; toAPIError
// says it to the client (ruleAPIError).
type ruleError struct {
	rule    int
	param   string            // the body member or path parameter at fault
	model   string            // ruleModel: the model named ("" for none)
	line    int               // ruleModel: a batch input line, from 1; 0 for the request itself
	value   int64             // ruleBodySize: the body's bytes; ruleCeiling: the field's value
	limit   int64             // ruleBodySize, ruleLength: the cap; ruleCeiling: the ceiling
	raw     string            // ruleParam: the value refused (compact JSON, truncated)
	allowed []json.RawMessage // ruleParam: the values both rules allow
}

// The rules a request can break.
const (
	ruleModel    = iota + 1 // a model not on the allowlist, or none where one must be named
	ruleBodySize            // a body over the cap
	ruleLength              // an unread body of unknown size while a cap applies
	ruleCeiling             // an output-token field over the ceiling (refuse mode)
	ruleParam               // a restricted parameter with a value not allowed
	ruleTools               // tools offered while the rules refuse them
)

func (e *ruleError) Error() string {
	switch e.rule {
	case ruleModel:
		if e.line > 0 {
			return fmt.Sprintf("rules: batch input line %d names model %q, not allowed", e.line, e.model)
		}
		return fmt.Sprintf("rules: model %q not allowed", e.model)
	case ruleBodySize:
		return fmt.Sprintf("rules: body of %d bytes over the cap of %d", e.value, e.limit)
	case ruleLength:
		return "rules: upload without Content-Length under a body cap"
	case ruleCeiling:
		return fmt.Sprintf("rules: %s %d over the ceiling of %d", e.param, e.value, e.limit)
	case ruleParam:
		return fmt.Sprintf("rules: %s %s not allowed", e.param, e.raw)
	}
	return "rules: " + e.param + " not allowed"
}

// checkRules applies the rules the request headers can answer: the body
// cap by Content-Length, and the model of GET /v1/models/{model}. It marks
// GET /v1/models for filtering.
func (st *stream) checkRules(h headers) error {
	rules := &st.principal.Rules
	if limit := rules.MaxBodyBytes(); limit > 0 {
		n, err := strconv.ParseInt(h.get("content-length"), 10, 64)
		switch {
		case err == nil && n > limit:
			return &ruleError{rule: ruleBodySize, value: n, limit: limit}
		case err != nil && st.route.Body == "opaque":
			return &ruleError{rule: ruleLength, limit: limit}
		}
	}
	if !rules.RestrictsModels() || st.method != http.MethodGet {
		return nil
	}
	switch st.route.Path {
	case "/v1/models":
		st.rules.filterList = true
	case "/v1/models/{model}":
		model := strings.TrimPrefix(st.path, "/v1/models/")
		if m, err := url.PathUnescape(model); err == nil {
			model = m // a fine-tuned model's colons may come as %3A
		}
		if !allowsModel(rules, model) {
			return &ruleError{rule: ruleModel, param: "model", model: model}
		}
	}
	return nil
}

// allowsModel reports whether the rules allow model. A name as long as
// usage.Request keeps (256 bytes) may have been cut, so it is refused: no
// model is named so long.
func allowsModel(rules *policy.Combined, model string) bool {
	return len(model) < 256 && rules.AllowsModel(model)
}

// modelRoutes are the routes whose body chooses the model that runs (a
// batch line's url is one of them too): under an allowlist, their bodies
// must name one.
var modelRoutes = map[string]bool{
	"/v1/chat/completions": true, "/v1/completions": true, "/v1/embeddings": true, "/v1/moderations": true,
	"/v1/responses": true, "/v1/responses/compact": true, "/v1/responses/input_tokens": true,
	"/v1/images/generations": true, "/v1/audio/speech": true,
}

// ceilingFields is, per route, the output-token field written in when a
// body names none: the one every model of the route accepts (reasoning
// models refuse max_tokens in chat completions).
var ceilingFields = map[string]string{
	"/v1/chat/completions": "max_completion_tokens",
	"/v1/responses":        "max_output_tokens",
	"/v1/completions":      "max_tokens",
}

// applyRules checks a JSON body against the rules (readRequest has parsed
// it) and returns the body to send upstream: body itself, or a copy with
// the output ceiling written in, when st.rules.rewrote is set and st.req
// says the ceiling.
func (st *stream) applyRules(body []byte) ([]byte, error) {
	rules := &st.principal.Rules
	if limit := rules.MaxBodyBytes(); limit > 0 && int64(len(body)) > limit {
		return nil, &ruleError{rule: ruleBodySize, value: int64(len(body)), limit: limit}
	}
	if rules.RestrictsModels() {
		if model := st.req.Model; (model != "" || modelRoutes[st.path]) && !allowsModel(rules, model) {
			return nil, &ruleError{rule: ruleModel, param: "model", model: model}
		}
	}
	if !rules.RestrictsBody() {
		return body, nil
	}
	members, err := topMembers(body)
	if err != nil {
		return nil, &badRequestError{err: err} // readRequest accepted it: not expected
	}
	ceiling, clamp := rules.MaxOutputTokens()
	limit := []byte(strconv.FormatInt(ceiling, 10))
	var edits, nulls []bodyEdit // nulls: the route's field where it says null
	last := map[string]bool{}   // output fields whose last occurrence (the one OpenAI reads) has a value
	routeField := ceilingFields[st.path]
	routeFieldSeen := false
	for _, m := range members {
		raw := body[m.start:m.end]
		null := bytes.Equal(raw, []byte("null"))
		switch {
		case (m.key == "tools" || m.key == "functions") && rules.NoTools() && !null && !emptyArray(raw):
			return nil, &ruleError{rule: ruleTools, param: m.key}
		case !null && !rules.AllowsValue(m.key, raw):
			return nil, &ruleError{rule: ruleParam, param: m.key, raw: truncate(compact(raw), 100), allowed: allowedValues(rules, m.key)}
		case ceiling <= 0 || !isOutputField(m.key):
			continue
		}
		last[m.key] = !null
		if m.key == routeField {
			routeFieldSeen = true
		}
		if null {
			if m.key == routeField {
				nulls = append(nulls, bodyEdit{start: m.start, end: m.end, value: limit})
			}
			continue
		}
		// readRequest read it as an integer, so it parses; one too large
		// for int64 would not have.
		n, _ := strconv.ParseInt(string(raw), 10, 64)
		if n <= ceiling {
			continue
		}
		if !clamp {
			return nil, &ruleError{rule: ruleCeiling, param: m.key, value: n, limit: ceiling}
		}
		edits = append(edits, bodyEdit{start: m.start, end: m.end, value: limit})
	}
	named := last["max_tokens"] || last["max_completion_tokens"] || last["max_output_tokens"]
	switch {
	case ceiling <= 0:
	case named:
		st.req.MaxOutputTokens = min(st.req.MaxOutputTokens, ceiling)
	case routeField != "":
		// Every null occurrence of the route's field takes the ceiling (a
		// parser that reads the first one sees it too); with none, the
		// field is added.
		edits = append(edits, nulls...)
		slices.SortFunc(edits, func(a, b bodyEdit) int { return a.start - b.start })
		if !routeFieldSeen {
			edits = append(edits, bodyEdit{start: -1, key: routeField, value: limit})
		}
		st.req.MaxOutputTokens = ceiling
	}
	if len(edits) == 0 {
		return body, nil
	}
	st.rules.rewrote = true
	return editBody(body, edits), nil
}

func isOutputField(key string) bool {
	return key == "max_tokens" || key == "max_completion_tokens" || key == "max_output_tokens"
}

// emptyArray reports whether raw is a JSON array with no elements.
func emptyArray(raw []byte) bool {
	return len(raw) >= 2 && raw[0] == '[' && len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
}

func compact(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

// allowedValues are the values of param both rules allow: the project's
// list (or, when it names none, the token's) as far as the other allows
// them.
func allowedValues(rules *policy.Combined, param string) []json.RawMessage {
	values, ok := rules.Project.Params[param]
	if !ok {
		values = rules.Token.Params[param]
	}
	var allowed []json.RawMessage
	for _, v := range values {
		if rules.AllowsValue(param, v) {
			allowed = append(allowed, v)
		}
	}
	return allowed
}

// member is one top-level member of a JSON object: its key, unescaped, and
// where its value lies.
type member struct {
	key        string
	start, end int
}

// topMembers lists the top-level members of a JSON object in order,
// repeated keys included.
func topMembers(body []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var members []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var raw json.RawMessage // the value's bytes as written, without the space before it
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		end := int(dec.InputOffset())
		members = append(members, member{key: key, start: end - len(raw), end: end})
	}
	return members, nil
}

// bodyEdit replaces a member's value (start, end) or, with start -1, adds
// the member key at the end of the object.
type bodyEdit struct {
	start, end int
	key        string
	value      []byte
}

// editBody returns a copy of the JSON object body with edits made, in
// order of their position (additions last); every other byte stays.
func editBody(body []byte, edits []bodyEdit) []byte {
	out := make([]byte, 0, len(body)+64)
	opening, closing := bytes.IndexByte(body, '{'), bytes.LastIndexByte(body, '}')
	hasMembers := len(bytes.TrimSpace(body[opening+1:closing])) > 0
	prev := 0
	for _, e := range edits {
		if e.start < 0 {
			out = append(out, body[prev:closing]...)
			if hasMembers {
				out = append(out, ',')
			}
			out = append(out, '"')
			out = append(out, e.key...)
			out = append(out, '"', ':')
			out = append(out, e.value...)
			prev, hasMembers = closing, true
			continue
		}
		out = append(out, body[prev:e.start]...)
		out = append(out, e.value...)
		prev = e.end
	}
	return append(out, body[prev:]...)
}

// checkBatchLine refuses a batch input line that names a model the rules
// do not allow (estimateBatch calls it for each line under an allowlist).
func (st *stream) checkBatchLine(line int, url string, req usage.Request) error {
	if (req.Model != "" || modelRoutes[url]) && !allowsModel(&st.principal.Rules, req.Model) {
		return &ruleError{rule: ruleModel, param: "input_file_id", model: req.Model, line: line}
	}
	return nil
}

// checkBatchModels reads a batch's input file to check each line's model
// when the reservation did not read it (nothing to reserve).
func (st *stream) checkBatchModels() error {
	if st.charge() != config.ChargeBatch || !st.principal.Rules.RestrictsModels() || st.rules.linesChecked {
		return nil
	}
	_, err := st.estimateBatch()
	return err
}

// filtersList reports whether the answer is a model list to filter: a 200
// to GET /v1/models under a model allowlist.
func (st *stream) filtersList() bool { return st.rules.filterList && st.status == http.StatusOK }

// filterModelList rewrites the model list so that its "data" holds only
// the models the rules allow, keeping every other member and each kept
// model's object as they were; other answers pass as chunk and mutation
// say. An answer that cannot be read is replaced by an empty list: nothing
// is shown that was not checked.
func (st *stream) filterModelList(chunk []byte, end bool, mutation *extprocv3.CommonResponse) ([]byte, *extprocv3.CommonResponse) {
	if !st.filtersList() {
		return chunk, mutation
	}
	st.rules.held = append(st.rules.held, chunk...)
	if !end {
		return nil, &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{}}}
	}
	list, removed := st.rules.held, []string(nil)
	st.rules.held = nil
	if st.usage.encoding != "" {
		removed = []string{"content-encoding"} // what is sent is decoded
		var err error
		if list, err = decode(st.usage.encoding, list, maxJSONResponse); err != nil {
			list = nil
		}
	}
	list = allowedList(list, &st.principal.Rules)
	return list, &extprocv3.CommonResponse{
		HeaderMutation: &extprocv3.HeaderMutation{
			SetHeaders:    []*corev3.HeaderValueOption{setHeader("content-length", strconv.Itoa(len(list)))},
			RemoveHeaders: removed,
		},
		BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: list}},
	}
}

// emptyList is the model list shown when the upstream's cannot be read.
const emptyList = `{"object":"list","data":[]}`

// allowedList is the model list body with only the allowed models in its
// "data".
func allowedList(body []byte, rules *policy.Combined) []byte {
	members, err := topMembers(body)
	if err != nil {
		return []byte(emptyList)
	}
	for _, m := range members {
		if m.key != "data" {
			continue
		}
		var models []json.RawMessage
		if json.Unmarshal(body[m.start:m.end], &models) != nil {
			return []byte(emptyList)
		}
		kept := []byte{'['}
		for _, raw := range models {
			var model struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &model) != nil || !allowsModel(rules, model.ID) {
				continue
			}
			if len(kept) > 1 {
				kept = append(kept, ',')
			}
			kept = append(kept, raw...)
		}
		return editBody(body, []bodyEdit{{start: m.start, end: m.end, value: append(kept, ']')}})
	}
	return []byte(emptyList)
}
