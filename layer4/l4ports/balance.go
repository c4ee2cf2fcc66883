package l4ports

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
)

// balancer orders the clients serving one port for each new connection.
type balancer struct {
	leastConn bool
	// next is the round-robin cursor; least_conn breaks ties with it.
	next atomic.Uint64
}

type candidate struct {
	s            *registry.Session
	streams      int64
	accepted, up bool
}

// order returns the sessions to try for a connection to port, first
// choice first: sessions that have finished their handshake before the
// one (if any) still in it, those whose upstream was reachable lately
// before those that reported it unreachable, then round robin from the
// cursor, or by fewest open streams for least_conn. The counts are read
// once, so the sort sees consistent values.
func (b *balancer) order(port int, sessions []*registry.Session) []*registry.Session {
	n := len(sessions)
	if n == 0 {
		return nil
	}
	start := int((b.next.Add(1) - 1) % uint64(n))
	cands := make([]candidate, n)
	for i := range n {
		s := sessions[(start+i)%n]
		cands[i] = candidate{s: s, streams: s.Streams(), accepted: s.Accepted(), up: s.PortUp(port)}
	}
	slices.SortStableFunc(cands, func(x, y candidate) int {
		if x.accepted != y.accepted {
			if x.accepted {
				return -1
			}
			return 1
		}
		if x.up != y.up {
			if x.up {
				return -1
			}
			return 1
		}
		if b.leastConn {
			return cmp.Compare(x.streams, y.streams)
		}
		return 0
	})
	out := make([]*registry.Session, n)
	for i, c := range cands {
		out[i] = c.s
	}
	return out
}
