package envoy

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/llm-proxy/llm-proxy/config"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed envoy.yaml
var bootstrap []byte

//go:embed filter-snippet.yaml
var filterSnippet []byte

// The values envoy.yaml ships with.
const (
	DefaultListenerPort   = 10000
	DefaultAdminPort      = 9901
	DefaultExtProcAddr    = "127.0.0.1:9002"
	DefaultManageAddr     = "127.0.0.1:8081"
	DefaultUpstream       = "api.openai.com:443"
	DefaultUpstreamCAFile = "/etc/ssl/certs/ca-certificates.crt"
	DefaultUpstreamSNI    = "api.openai.com"
)

// Bootstrap returns envoy.yaml, the reference bootstrap, unchanged.
func Bootstrap() []byte { return append([]byte(nil), bootstrap...) }

// FilterSnippet returns filter-snippet.yaml: the ext_proc http filter, the
// sidecar cluster and the per-route opt-out, for pasting into an existing
// Envoy configuration.
func FilterSnippet() []byte { return append([]byte(nil), filterSnippet...) }

// RenderOptions says what Render changes in envoy.yaml. A zero field keeps
// the reference value. Everything else (TLS to the upstream, SNI, filters,
// timeouts, buffer limits, local replies) stays as in the reference file.
type RenderOptions struct {
	// ListenerAddr is the client-facing listener's ip:port, e.g.
	// 0.0.0.0:10000 in a container, whose clients come from outside it.
	// "" keeps 127.0.0.1:10000 (or ListenerPort on 127.0.0.1). Envoy binds
	// it, so the host must be an IP address. Port 0 lets Envoy choose a free
	// port (tests read it back from the admin endpoint's /listeners).
	ListenerAddr string
	// ListenerPort is the port of the client-facing listener on 127.0.0.1.
	// 0 keeps 10000. Give ListenerAddr or ListenerPort, not both.
	ListenerPort int
	// AdminAddr is the ip:port of Envoy's admin endpoint. "" keeps
	// 127.0.0.1:9901 (or AdminPort on 127.0.0.1). Whoever reaches it can
	// stop Envoy: keep it on loopback or a port no Service exposes. Port 0
	// lets Envoy choose (--admin-address-path tells which).
	AdminAddr string
	// AdminPort is the port of Envoy's admin endpoint on 127.0.0.1.
	// 0 keeps 9901. Give AdminAddr or AdminPort, not both.
	AdminPort int
	// ExtProcAddr is the llm-proxy ext_proc gRPC address: host:port, or
	// unix:/absolute/path for a Unix socket shared with the sidecar
	// (LLM_PROXY_GRPC_ADDR set the same), which costs both sides less per
	// message than TCP on loopback. "" keeps 127.0.0.1:9002.
	ExtProcAddr string
	// ManageAddr is the llm-proxy management API address, host:port.
	// "" keeps 127.0.0.1:8081.
	ManageAddr string
	// Upstream is the OpenAI API address, host:port; Envoy still speaks TLS
	// to it. "" keeps api.openai.com:443.
	Upstream string
	// UpstreamCAFile is the PEM bundle of CAs trusted for the upstream.
	// "" keeps the system bundle /etc/ssl/certs/ca-certificates.crt.
	UpstreamCAFile string
	// SidecarKeepalive is the interval of Envoy's HTTP/2 pings on its
	// connections to the sidecar (connection_keepalive); 0 keeps 30s. The
	// sidecar's gRPC server must accept pings that often
	// (LLM_PROXY_GRPC_KEEPALIVE_MIN_TIME), or it closes the connections.
	SidecarKeepalive time.Duration
	// UpstreamSNI replaces the upstream's TLS name wherever it is used: the
	// SNI sent, the certificate name (DNS SAN) Envoy requires, and the Host
	// header sent upstream. "" keeps api.openai.com.
	UpstreamSNI string
}

// anchor is one literal spelling in envoy.yaml that Render may replace. It
// must occur exactly `count` times in the file (1 if zero).
type anchor struct {
	name  string
	text  string
	count int
}

func (a anchor) want() int {
	if a.count == 0 {
		return 1
	}
	return a.count
}

var (
	anchorListener = anchor{"listener address", "socket_address: { address: 127.0.0.1, port_value: 10000 }", 1}
	anchorAdmin    = anchor{"admin address", "socket_address: { address: 127.0.0.1, port_value: 9901 }", 1}
	anchorExtProc  = anchor{"ext_proc cluster endpoint", "socket_address: { address: 127.0.0.1, port_value: 9002 }", 1}
	// A Unix socket (pipe) endpoint needs a STATIC cluster.
	anchorExtProcType = anchor{"ext_proc cluster type", "name: llm_proxy_extproc\n    type: STRICT_DNS", 1}
	anchorManage      = anchor{"manage cluster endpoint", "socket_address: { address: 127.0.0.1, port_value: 8081 }", 1}
	anchorUpstream    = anchor{"openai cluster endpoint", "socket_address: { address: api.openai.com, port_value: 443 }", 1}
	anchorCAFile      = anchor{"upstream CA bundle", "filename: /etc/ssl/certs/ca-certificates.crt", 1}
	anchorSNI         = anchor{"upstream SNI", "sni: api.openai.com", 1}
	anchorSAN         = anchor{"upstream certificate name", "exact: api.openai.com", 1}
	// Two /v1/ routes (JSON and other requests) rewrite the Host.
	anchorHost      = anchor{"upstream Host rewrite", "host_rewrite_literal: api.openai.com", 2}
	anchorKeepalive = anchor{"sidecar keepalive interval", "connection_keepalive:\n              interval: 30s", 1}

	allAnchors = []anchor{
		anchorListener, anchorAdmin, anchorExtProc, anchorExtProcType, anchorManage, anchorUpstream,
		anchorCAFile, anchorSNI, anchorSAN, anchorHost, anchorKeepalive,
	}
)

// Render returns envoy.yaml with the values in o replaced. It fails if o is
// invalid, or if one of the values it knows how to replace is not found in
// envoy.yaml exactly as often as expected (once; the Host rewrite twice), so
// the file and the renderer cannot drift apart silently: this is checked on
// every call, whatever o asks.
func Render(o RenderOptions) ([]byte, error) {
	return render(string(bootstrap), o)
}

func render(src string, o RenderOptions) ([]byte, error) {
	var errs []error
	for _, a := range allAnchors {
		if n := strings.Count(src, a.text); n != a.want() {
			errs = append(errs, fmt.Errorf("envoy.yaml: %s %q found %d times, want %d", a.name, a.text, n, a.want()))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	type edit struct {
		at   int
		old  string
		text string
	}
	var edits []edit
	add := func(a anchor, text string) {
		for from := 0; ; {
			i := strings.Index(src[from:], a.text)
			if i < 0 {
				return
			}
			edits = append(edits, edit{from + i, a.text, text})
			from += i + len(a.text)
		}
	}
	socket := func(host string, port int) string {
		return fmt.Sprintf("socket_address: { address: %s, port_value: %d }", quote(host), port)
	}

	for _, b := range []struct {
		field     string
		addr      string
		portField string
		port      int
		a         anchor
	}{
		{"ListenerAddr", o.ListenerAddr, "ListenerPort", o.ListenerPort, anchorListener},
		{"AdminAddr", o.AdminAddr, "AdminPort", o.AdminPort, anchorAdmin},
	} {
		switch {
		case b.addr != "" && b.port != 0:
			return nil, fmt.Errorf("envoy: give %s or %s, not both", b.field, b.portField)
		case b.addr != "":
			host, port, err := splitHostPort(b.field, b.addr, true)
			if err != nil {
				return nil, err
			}
			if net.ParseIP(host) == nil {
				return nil, fmt.Errorf("envoy: %s %q: Envoy binds it, so its host must be an IP address (0.0.0.0 for every interface)", b.field, b.addr)
			}
			add(b.a, socket(host, port))
		case b.port != 0:
			if err := checkPort(b.portField, b.port); err != nil {
				return nil, err
			}
			add(b.a, socket("127.0.0.1", b.port))
		}
	}
	extProc := o.ExtProcAddr
	if network, path := config.ListenNetwork(extProc); network == "unix" {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("envoy: ExtProcAddr %q: a Unix socket must be unix:/absolute/path", o.ExtProcAddr)
		}
		if err := checkText("ExtProcAddr", path); err != nil {
			return nil, err
		}
		add(anchorExtProc, "pipe: { path: "+quote(path)+" }")
		add(anchorExtProcType, "name: llm_proxy_extproc\n    type: STATIC")
		extProc = ""
	}
	for _, hp := range []struct {
		field string
		value string
		a     anchor
	}{
		{"ExtProcAddr", extProc, anchorExtProc},
		{"ManageAddr", o.ManageAddr, anchorManage},
		{"Upstream", o.Upstream, anchorUpstream},
	} {
		if hp.value == "" {
			continue
		}
		host, port, err := splitHostPort(hp.field, hp.value, false)
		if err != nil {
			return nil, err
		}
		add(hp.a, socket(host, port))
	}
	if o.UpstreamCAFile != "" {
		if err := checkText("UpstreamCAFile", o.UpstreamCAFile); err != nil {
			return nil, err
		}
		add(anchorCAFile, "filename: "+quote(o.UpstreamCAFile))
	}
	if o.UpstreamSNI != "" {
		if err := checkText("UpstreamSNI", o.UpstreamSNI); err != nil {
			return nil, err
		}
		if strings.ContainsAny(o.UpstreamSNI, " /:") {
			return nil, fmt.Errorf("envoy: UpstreamSNI %q is not a host name", o.UpstreamSNI)
		}
		add(anchorSNI, "sni: "+quote(o.UpstreamSNI))
		add(anchorSAN, "exact: "+quote(o.UpstreamSNI))
		add(anchorHost, "host_rewrite_literal: "+quote(o.UpstreamSNI))
	}

	if o.SidecarKeepalive != 0 {
		if o.SidecarKeepalive < time.Millisecond {
			return nil, fmt.Errorf("envoy: SidecarKeepalive %s is below 1ms", o.SidecarKeepalive)
		}
		add(anchorKeepalive, fmt.Sprintf("connection_keepalive:\n              interval: %gs", o.SidecarKeepalive.Seconds()))
	}

	sort.Slice(edits, func(i, j int) bool { return edits[i].at < edits[j].at })
	var b strings.Builder
	b.Grow(len(src) + 256)
	last := 0
	for _, e := range edits {
		b.WriteString(src[last:e.at])
		b.WriteString(e.text)
		last = e.at + len(e.old)
	}
	b.WriteString(src[last:])
	return []byte(b.String()), nil
}

// splitHostPort reads host:port. Port 0 is accepted only for an address Envoy
// binds (it then picks a free port); an address it dials needs a real one.
func splitHostPort(field, v string, bound bool) (string, int, error) {
	host, portStr, err := net.SplitHostPort(v)
	if err != nil {
		return "", 0, fmt.Errorf("envoy: %s %q: want host:port: %v", field, v, err)
	}
	if host == "" {
		return "", 0, fmt.Errorf("envoy: %s %q: empty host", field, v)
	}
	if err := checkText(field, host); err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("envoy: %s %q: bad port: %v", field, v, err)
	}
	if port == 0 && bound {
		return host, 0, nil
	}
	if err := checkPort(field, port); err != nil {
		return "", 0, err
	}
	return host, port, nil
}

func checkPort(field string, p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("envoy: %s %d out of range 1-65535", field, p)
	}
	return nil
}

func checkText(field, v string) error {
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("envoy: %s %q contains a control character", field, v)
		}
	}
	return nil
}

// quote returns v as a YAML double-quoted scalar (JSON string syntax is
// valid YAML), so no host name, address or path can be misread as a number,
// a boolean or YAML syntax.
func quote(v string) string {
	b, _ := json.Marshal(v)
	return string(b)
}
