package registry

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Route is one session's announcement of one HTTP host.
type Route struct {
	Session *Session
	// Index is the host's position in Session.Hello.HTTP.
	Index int
}

// Host is the announced host pattern.
func (rt Route) Host() string { return rt.Session.Hello.HTTP[rt.Index].Host }

// Dial is the reverse_proxy dial address of this route.
func (rt Route) Dial() string { return rt.Session.dials[rt.Index] }

// Up reports whether the route's client has not reported its upstream
// unreachable lately (see Session.MarkDown).
func (rt Route) Up() bool { return rt.Session.up(rt.Index) }

// routes is who serves what. Each list is immutable once stored and
// ordered by session ID, so round-robin over it is stable; adding or
// removing a session replaces only the lists of what it announces.
// Writers are serialised by the registry's mu.
type routes struct {
	exact    sync.Map // host -> []Route
	wildcard sync.Map // "*.example.com" is keyed "example.com"; -> []Route
	any      atomic.Pointer[[]Route]
	ports    sync.Map // Port -> []*Session
	// tlsExact and tlsWildcard are the announced TLS names, as exact and
	// wildcard hosts are: name (or the parent of "*.parent") -> []*Session.
	tlsExact, tlsWildcard sync.Map
	// clients counts the sessions, for a tunnel's max_clients.
	clients atomic.Int64
}

// hostKey is where a host pattern's routes are kept.
func (rs *routes) hostList(pattern string) (load func() []Route, store func([]Route)) {
	m, key := &rs.exact, pattern
	switch {
	case pattern == "*":
		return func() []Route {
				if p := rs.any.Load(); p != nil {
					return *p
				}
				return nil
			}, func(l []Route) {
				rs.any.Store(&l)
			}
	case strings.HasPrefix(pattern, "*."):
		m, key = &rs.wildcard, pattern[2:]
	}
	return func() []Route {
			v, _ := m.Load(key)
			l, _ := v.([]Route)
			return l
		}, func(l []Route) {
			if len(l) == 0 {
				m.Delete(key)
			} else {
				m.Store(key, l)
			}
		}
}

func (rs *routes) add(s *Session) {
	for i, up := range s.Hello.HTTP {
		load, store := rs.hostList(up.Host)
		old := load()
		if len(old) == 0 {
			metrics.HostServed(up.Host)
		}
		// Session IDs only grow, so appending keeps the order.
		store(append(slices.Clip(old), Route{Session: s, Index: i}))
	}
	for _, up := range s.Hello.TCP {
		if addSession(&rs.ports, Port{Num: up.Port}, s) {
			metrics.PortServed(up.Port)
		}
	}
	for _, up := range s.Hello.UDP {
		if addSession(&rs.ports, Port{UDP: true, Num: up.Port}, s) {
			metrics.UDPPortServed(up.Port)
		}
	}
	for _, up := range s.Hello.TLS {
		m, key := rs.tlsList(up.Name)
		if addSession(m, key, s) {
			metrics.TLSNameServed(up.Name)
		}
	}
}

// tlsList is where the sessions of a TLS name are kept, and under which key.
func (rs *routes) tlsList(name string) (*sync.Map, string) {
	if parent, ok := strings.CutPrefix(name, "*."); ok {
		return &rs.tlsWildcard, parent
	}
	return &rs.tlsExact, name
}

// addSession appends s to the sessions of port in m, and reports whether
// it is the port's first.
func addSession[K comparable](m *sync.Map, port K, s *Session) (first bool) {
	v, _ := m.Load(port)
	old, _ := v.([]*Session)
	// Session IDs only grow, so appending keeps the order.
	m.Store(port, append(slices.Clip(old), s))
	return len(old) == 0
}

// removeSession takes s from the sessions of port in m, and reports
// whether none is left.
func removeSession[K comparable](m *sync.Map, port K, s *Session) (last bool) {
	v, _ := m.Load(port)
	old, _ := v.([]*Session)
	l := slices.DeleteFunc(slices.Clone(old), func(o *Session) bool { return o == s })
	if len(l) == 0 {
		m.Delete(port)
		return true
	}
	m.Store(port, l)
	return false
}

func (rs *routes) remove(s *Session) {
	for _, up := range s.Hello.HTTP {
		load, store := rs.hostList(up.Host)
		l := slices.DeleteFunc(slices.Clone(load()), func(rt Route) bool { return rt.Session == s })
		store(l)
		if len(l) == 0 {
			metrics.HostUnserved(up.Host)
		}
	}
	for _, up := range s.Hello.TCP {
		if removeSession(&rs.ports, Port{Num: up.Port}, s) {
			metrics.PortUnserved(up.Port)
		}
	}
	for _, up := range s.Hello.UDP {
		if removeSession(&rs.ports, Port{UDP: true, Num: up.Port}, s) {
			metrics.UDPPortUnserved(up.Port)
		}
	}
	for _, up := range s.Hello.TLS {
		m, key := rs.tlsList(up.Name)
		if removeSession(m, key, s) {
			metrics.TLSNameUnserved(up.Name)
		}
	}
}

// tenant returns the routes of a tunnel, or nil if none of its clients
// was ever connected.
func (r *Registry) tenant(name string) *routes {
	if name == Unnamed {
		return &r.routes
	}
	v, ok := r.tenants.Load(name)
	if !ok {
		return nil
	}
	return v.(*routes)
}

// tenantForWrite returns the routes of a tunnel, creating them. The
// registry's mu must be held.
func (r *Registry) tenantForWrite(name string) *routes {
	if rs := r.tenant(name); rs != nil {
		return rs
	}
	rs := new(routes)
	r.tenants.Store(name, rs)
	return rs
}

// Lookup returns the routes serving a request's Host (any case, with or
// without a port), among the clients of the tunnel that owns the host
// only: those of the exact name if any, else those of the one-label
// wildcard that matches, else the catch-all's.
func (r *Registry) Lookup(host string) []Route {
	_, routes := r.LookupIn(r.Tenancy(), host)
	return routes
}

// LookupIn is Lookup in the tenancy ten, read once by a caller that uses
// it for more (the owner's visitors policy), and also returns the tunnel
// that owns the host: Unnamed, the default tunnel's, when no named one
// does.
func (r *Registry) LookupIn(ten *Tenancy, host string) (owner string, routes []Route) {
	host = tunnel.HostOnly(host)
	owner = ten.Owner(host)
	if rs := r.tenant(owner); rs != nil {
		routes = rs.lookup(host)
	}
	return owner, routes
}

// LookupExact returns the routes of clients that announce host itself
// (an exact name, or "*.x" when host is that pattern), of the tunnel that
// owns it.
func (r *Registry) LookupExact(pattern string) []Route {
	rs := r.tenant(r.Tenancy().OwnerOfPattern(pattern))
	if rs == nil {
		return nil
	}
	load, _ := rs.hostList(pattern)
	return load()
}

func (rs *routes) lookup(host string) []Route {
	if v, ok := rs.exact.Load(host); ok {
		return v.([]Route)
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		if v, ok := rs.wildcard.Load(parent); ok {
			return v.([]Route)
		}
	}
	if p := rs.any.Load(); p != nil {
		return *p
	}
	return nil
}

// PortSessions returns the sessions serving a TCP or UDP port, by
// session ID, among the clients of the tunnel that owns the port.
func (r *Registry) PortSessions(p Port) []*Session {
	rs := r.tenant(r.Tenancy().PortOwner(p))
	if rs == nil {
		return nil
	}
	v, _ := rs.ports.Load(p)
	l, _ := v.([]*Session)
	return l
}

// LookupTLS returns the announced TLS name that a visitor's server name
// (any case) matches, and the sessions serving it, among the clients of
// the tunnel that owns the name: those of the exact name if any, else
// those of the one-label wildcard that matches. No session, no name.
func (r *Registry) LookupTLS(serverName string) (name string, sessions []*Session) {
	host := tunnel.HostOnly(serverName)
	rs := r.tenant(r.Tenancy().Owner(host))
	if rs == nil || host == "" {
		return "", nil
	}
	if v, ok := rs.tlsExact.Load(host); ok {
		return host, v.([]*Session)
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		if v, ok := rs.tlsWildcard.Load(parent); ok {
			return "*." + parent, v.([]*Session)
		}
	}
	return "", nil
}

// Ports returns every port, TCP or UDP, some session announces: TCP
// ports first, each kind in order.
func (r *Registry) Ports() []Port {
	var out []Port
	r.eachTenant(func(rs *routes) {
		rs.ports.Range(func(k, _ any) bool {
			out = append(out, k.(Port))
			return true
		})
	})
	slices.SortFunc(out, Port.Compare)
	return slices.Compact(out)
}

func (r *Registry) eachTenant(f func(*routes)) {
	f(&r.routes)
	r.tenants.Range(func(_, v any) bool {
		f(v.(*routes))
		return true
	})
}
