package tunnel

import "strings"

// HostPattern is a host pattern as clients announce it and as the
// server's allow_hosts and tunnels' hosts list it: an exact lower-case
// name ("app.example.com"), a wildcard ("*.example.com") or the
// catch-all "*" (see ValidateHostPattern). A pattern has two readings,
// and only these two:
//
//   - Match: whether a visitor's host is routed to it. A wildcard
//     matches one label under its parent, as TLS certificates do:
//     "*.example.com" matches "shop.example.com", not "a.shop.example.com"
//     nor "example.com". The registry's routes and TLS names are an
//     index of this reading.
//   - Covers: whether a scope (allow_hosts, a tunnel's hosts) lets a
//     client announce another pattern or name. A wildcard covers every
//     name under its parent at any depth, and every wildcard under it,
//     itself included: "*.example.com" covers "a.shop.example.com" and
//     "*.shop.example.com". Tunnels' ownership (the most specific
//     covering pattern owns a name) is an index of this reading.
//
// In both, "*" takes everything.
type HostPattern string

// Match reports whether a visitor's host (a lower-case name, no port) is
// routed to p.
func (p HostPattern) Match(host string) bool {
	switch {
	case p == "*" || string(p) == host:
		return true
	case strings.HasPrefix(string(p), "*."):
		_, parent, ok := strings.Cut(host, ".")
		return ok && parent == string(p[2:])
	}
	return false
}

// Covers reports whether a scope of p lets a client announce q (a name or
// a pattern).
func (p HostPattern) Covers(q string) bool {
	switch {
	case p == "*" || string(p) == q:
		return true
	case strings.HasPrefix(string(p), "*."):
		return q != "*" && strings.HasSuffix(q, string(p[1:]))
	}
	return false
}
