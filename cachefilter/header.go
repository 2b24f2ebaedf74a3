package cachefilter

// Header is the headers of a request or response with lower-case names, as
// Envoy sends them: whatever looks one up by name. The ext_proc server passes
// Envoy's header list as it came, without building a map per message; [Map]
// adapts a map.
type Header interface {
	Lookup(name string) (value string, ok bool)
}

// Map is a [Header] held in a map.
type Map map[string]string

// Lookup returns the value of the header name.
func (m Map) Lookup(name string) (string, bool) {
	v, ok := m[name]
	return v, ok
}
