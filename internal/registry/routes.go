package registry

import (
	"strings"

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

// routes is an immutable snapshot of who serves what. Every list is ordered
// by session ID, so round-robin over it is stable.
type routes struct {
	byID     map[uint64]*Session
	exact    map[string][]Route
	wildcard map[string][]Route // "*.example.com" is keyed "example.com"
	any      []Route
	ports    map[int][]*Session
}

func buildRoutes(sessions []*Session) *routes {
	rs := &routes{
		byID:     make(map[uint64]*Session, len(sessions)),
		exact:    make(map[string][]Route),
		wildcard: make(map[string][]Route),
		ports:    make(map[int][]*Session),
	}
	for _, s := range sessions {
		rs.byID[s.ID] = s
		for i, up := range s.Hello.HTTP {
			rt := Route{Session: s, Index: i}
			switch {
			case up.Host == "*":
				rs.any = append(rs.any, rt)
			case strings.HasPrefix(up.Host, "*."):
				rs.wildcard[up.Host[2:]] = append(rs.wildcard[up.Host[2:]], rt)
			default:
				rs.exact[up.Host] = append(rs.exact[up.Host], rt)
			}
		}
		for _, up := range s.Hello.TCP {
			rs.ports[up.Port] = append(rs.ports[up.Port], s)
		}
	}
	return rs
}

// Lookup returns the routes serving a request's Host (any case, with or
// without a port): those of the exact name if any, else those of the
// one-label wildcard that matches, else the catch-all's.
func (r *Registry) Lookup(host string) []Route {
	rs := r.routes.Load()
	host = tunnel.HostOnly(host)
	if m := rs.exact[host]; len(m) > 0 {
		return m
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		if m := rs.wildcard[parent]; len(m) > 0 {
			return m
		}
	}
	return rs.any
}

// PortSessions returns the sessions serving a TCP port, by session ID.
func (r *Registry) PortSessions(port int) []*Session {
	return r.routes.Load().ports[port]
}

// Ports returns every TCP port some session announces.
func (r *Registry) Ports() []int {
	rs := r.routes.Load()
	out := make([]int, 0, len(rs.ports))
	for p := range rs.ports {
		out = append(out, p)
	}
	return out
}
