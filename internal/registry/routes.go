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
	ports    sync.Map // port -> []*Session
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
		v, _ := rs.ports.Load(up.Port)
		old, _ := v.([]*Session)
		if len(old) == 0 {
			metrics.PortServed(up.Port)
		}
		rs.ports.Store(up.Port, append(slices.Clip(old), s))
	}
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
		v, _ := rs.ports.Load(up.Port)
		old, _ := v.([]*Session)
		l := slices.DeleteFunc(slices.Clone(old), func(o *Session) bool { return o == s })
		if len(l) == 0 {
			rs.ports.Delete(up.Port)
			metrics.PortUnserved(up.Port)
		} else {
			rs.ports.Store(up.Port, l)
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
	host = tunnel.HostOnly(host)
	rs := r.tenant(r.Tenancy().Owner(host))
	if rs == nil {
		return nil
	}
	return rs.lookup(host)
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

// PortSessions returns the sessions serving a TCP port, by session ID,
// among the clients of the tunnel that owns the port.
func (r *Registry) PortSessions(port int) []*Session {
	rs := r.tenant(r.Tenancy().PortOwner(port))
	if rs == nil {
		return nil
	}
	v, _ := rs.ports.Load(port)
	l, _ := v.([]*Session)
	return l
}

// Ports returns every TCP port some session announces.
func (r *Registry) Ports() []int {
	var out []int
	r.eachTenant(func(rs *routes) {
		rs.ports.Range(func(k, _ any) bool {
			out = append(out, k.(int))
			return true
		})
	})
	slices.Sort(out)
	return slices.Compact(out)
}

func (r *Registry) eachTenant(f func(*routes)) {
	f(&r.routes)
	r.tenants.Range(func(_, v any) bool {
		f(v.(*routes))
		return true
	})
}
