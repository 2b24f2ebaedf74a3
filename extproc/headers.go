package extproc

import (
	"crypto/rand"
	"net"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// proxyHeaderPrefix marks headers meant for llm-proxy only; they never reach
// the upstream.
const proxyHeaderPrefix = "x-llm-proxy-"

// clientOnlyHeaders are removed before the request goes upstream: with the
// project's key, a client-chosen OpenAI organization or project could bill or
// reach another project of the same account.
var clientOnlyHeaders = [...]string{"openai-organization", "openai-project"}

// headers is Envoy's header list as it came, with lower-case names: looked
// up by a scan, which for the dozen or two headers of a request costs less
// than building a map per message. When a name repeats, the first value
// wins, which is what every header we read wants. It is a
// [cachefilter.Header].
type headers []*corev3.HeaderValue

func headersOf(hm *corev3.HeaderMap) headers { return hm.GetHeaders() }

// Lookup returns the value of the first header called name.
func (h headers) Lookup(name string) (string, bool) {
	for _, hv := range h {
		if hv.GetKey() == name {
			return headerValue(hv), true
		}
	}
	return "", false
}

// get is Lookup's value ("" when absent).
func (h headers) get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// all yields each name and value in order.
func (h headers) all(yield func(name, value string) bool) {
	for _, hv := range h {
		if !yield(hv.GetKey(), headerValue(hv)) {
			return
		}
	}
}

// identify reads what every later step and log line needs.
func (st *stream) identify(h headers) {
	st.reqHeaders = h
	st.method = h.get(":method")
	st.path, _, _ = strings.Cut(h.get(":path"), "?")
	st.requestID = h.get("x-request-id")
	if st.requestID == "" || len(st.requestID) > 128 {
		st.requestID = "req_" + strings.ToLower(rand.Text())
	}
}

// upstreamHeaders is the mutation that makes a client request an upstream one.
func (st *stream) upstreamHeaders(h headers) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{
			setHeader("authorization", "Bearer "+st.principal.OpenAIKey),
		},
	}
	if h.get("x-request-id") != st.requestID {
		m.SetHeaders = append(m.SetHeaders, setHeader("x-request-id", st.requestID))
	}
	if st.trace.spanID != "" {
		m.SetHeaders = append(m.SetHeaders, st.traceHeader())
	}
	for _, hv := range h {
		name := hv.GetKey()
		if (strings.HasPrefix(name, proxyHeaderPrefix) || slices.Contains(clientOnlyHeaders[:], name)) && !slices.Contains(m.RemoveHeaders, name) {
			m.RemoveHeaders = append(m.RemoveHeaders, name)
		}
	}
	return m
}

func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, RawValue: []byte(value)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func statusOf(h headers) int {
	n, _ := strconv.Atoi(h.get(":status"))
	return n
}

// clientAddress is the peer address Envoy reports in the request attributes
// (request_attributes: ["source.address"]), never a client-supplied header.
func clientAddress(req *extprocv3.ProcessingRequest) string {
	attrs := req.GetAttributes()["envoy.filters.http.ext_proc"]
	addr := attrs.GetFields()["source.address"].GetStringValue()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host // the port says nothing about who the client is
	}
	return addr
}

// requestIDHeaders make the client see llm-proxy's request id — the one in
// its usage event and logs — and keep the upstream's own (which OpenAI
// support asks for) under x-upstream-request-id.
func (st *stream) requestIDHeaders(resp headers) []*corev3.HeaderValueOption {
	up := resp.get("x-request-id")
	if up == st.requestID {
		return nil
	}
	hs := []*corev3.HeaderValueOption{setHeader("x-request-id", st.requestID)}
	if up != "" {
		hs = append(hs, setHeader("x-upstream-request-id", up))
	}
	return hs
}
