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

// Lookup returns the routes serving a request's Host (any case, with or
// without a port): those of the exact name if any, else those of the
// one-label wildcard that matches, else the catch-all's.
func (r *Registry) Lookup(host string) []Route {
	host = tunnel.HostOnly(host)
	if v, ok := r.routes.exact.Load(host); ok {
		return v.([]Route)
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		if v, ok := r.routes.wildcard.Load(parent); ok {
			return v.([]Route)
		}
	}
	if p := r.routes.any.Load(); p != nil {
		return *p
	}
	return nil
}

// PortSessions returns the sessions serving a TCP port, by session ID.
func (r *Registry) PortSessions(port int) []*Session {
	v, _ := r.routes.ports.Load(port)
	l, _ := v.([]*Session)
	return l
}

// Ports returns every TCP port some session announces.
func (r *Registry) Ports() []int {
	var out []int
	r.routes.ports.Range(func(k, _ any) bool {
		out = append(out, k.(int))
		return true
	})
	return out
}
