package registry

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// Balancer orders the clients serving one port or TLS name for each new
// connection: the one balancer of both layer-4 paths (the inlets_tcp
// app's listeners and caddy-l4's layer4.handlers.inlets). Its zero value
// is round robin.
type Balancer struct {
	// LeastConn picks the session with the fewest open streams first
	// (lb_policy least_conn).
	LeastConn bool
	// next is the round-robin cursor; least_conn breaks ties with it.
	next atomic.Uint64
}

type candidate struct {
	s            *Session
	streams      int64
	accepted, up bool
}

// Order returns the sessions to try for a connection to port (the zero
// Port for a TLS name), first choice first: sessions that have finished
// their handshake before the one (if any) still in it, for a TCP port
// those that have not reported its upstream unreachable lately before
// the others, then round robin from the cursor, or by fewest open
// streams for least_conn. The counts are read once, so the sort sees
// consistent values.
func (b *Balancer) Order(port Port, sessions []*Session) []*Session {
	n := len(sessions)
	if n == 0 {
		return nil
	}
	start := int((b.next.Add(1) - 1) % uint64(n))
	cands := make([]candidate, n)
	for i := range n {
		s := sessions[(start+i)%n]
		cands[i] = candidate{s: s, streams: s.Streams(), accepted: s.Accepted(), up: port.UDP || port.Num <= 0 || s.PortUp(port.Num)}
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
		if b.LeastConn {
			return cmp.Compare(x.streams, y.streams)
		}
		return 0
	})
	out := make([]*Session, n)
	for i, c := range cands {
		out[i] = c.s
	}
	return out
}
