package extproc

import (
	"crypto/rand"
	"net"
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

// headerMap flattens Envoy's header list. Envoy sends lower-case names; when a
// name repeats, the first value wins, which is what every header we read wants.
func headerMap(hm *corev3.HeaderMap) map[string]string {
	hs := hm.GetHeaders()
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		if _, seen := m[h.GetKey()]; !seen {
			m[h.GetKey()] = headerValue(h)
		}
	}
	return m
}

// identify reads what every later step and log line needs.
func (st *stream) identify(h map[string]string) {
	st.reqHeaders = h
	st.method = h[":method"]
	st.path, _, _ = strings.Cut(h[":path"], "?")
	st.requestID = h["x-request-id"]
	if st.requestID == "" || len(st.requestID) > 128 {
		st.requestID = "req_" + strings.ToLower(rand.Text())
	}
}

// upstreamHeaders is the mutation that makes a client request an upstream one.
func (st *stream) upstreamHeaders(h map[string]string) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{
			setHeader("authorization", "Bearer "+st.principal.OpenAIKey),
		},
	}
	if h["x-request-id"] != st.requestID {
		m.SetHeaders = append(m.SetHeaders, setHeader("x-request-id", st.requestID))
	}
	for name := range h {
		if strings.HasPrefix(name, proxyHeaderPrefix) {
			m.RemoveHeaders = append(m.RemoveHeaders, name)
		}
	}
	for _, name := range clientOnlyHeaders {
		if _, ok := h[name]; ok {
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

func statusOf(h map[string]string) int {
	n, _ := strconv.Atoi(h[":status"])
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
func (st *stream) requestIDHeaders(resp map[string]string) []*corev3.HeaderValueOption {
	up := resp["x-request-id"]
	if up == st.requestID {
		return nil
	}
	hs := []*corev3.HeaderValueOption{setHeader("x-request-id", st.requestID)}
	if up != "" {
		hs = append(hs, setHeader("x-upstream-request-id", up))
	}
	return hs
}
