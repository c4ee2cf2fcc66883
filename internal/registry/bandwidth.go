package registry

import (
	"context"
	"net"
	"sync"

	"golang.org/x/time/rate"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// bandwidthSpec is a tunnel's caps, bytes a second each way; 0: none.
type bandwidthSpec struct{ down, up int64 }

// bandwidth is a tunnel's caps and the buckets its streams draw from.
// The buckets are the tunnel's for as long as it exists: a change of its
// caps changes them in place, so that streams already open follow it
// (rate.Inf when a cap is removed).
type bandwidth struct {
	mu       sync.Mutex // guards spec
	spec     bandwidthSpec
	down, up *rate.Limiter
}

// set makes spec the buckets' caps.
func (bw *bandwidth) set(spec bandwidthSpec) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if bw.spec == spec {
		return
	}
	bw.spec = spec
	for _, b := range []struct {
		l         *rate.Limiter
		perSecond int64
	}{{bw.down, spec.down}, {bw.up, spec.up}} {
		if b.perSecond == 0 {
			b.l.SetLimit(rate.Inf)
			continue
		}
		b.l.SetBurst(burstOf(b.perSecond))
		b.l.SetLimit(rate.Limit(b.perSecond))
	}
}

// bandwidths holds every tunnel's that has had a cap, by name.
type bandwidths struct {
	mu sync.Mutex
	m  map[string]*bandwidth
}

// of returns tunnel's buckets, set to spec.
func (b *bandwidths) of(tunnel string, spec bandwidthSpec) *bandwidth {
	b.mu.Lock()
	bw := b.m[tunnel]
	if bw == nil {
		bw = &bandwidth{down: rate.NewLimiter(rate.Inf, 1), up: rate.NewLimiter(rate.Inf, 1)}
		if b.m == nil {
			b.m = make(map[string]*bandwidth)
		}
		b.m[tunnel] = bw
	}
	b.mu.Unlock()
	bw.set(spec)
	return bw
}

// apply sets every tunnel's buckets to its caps under t (none for a
// tunnel t does not have, or whose caps it removed), as the registry
// does when t becomes the server's tunnels.
func (b *bandwidths) apply(t *Tenancy) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, bw := range b.m {
		var spec bandwidthSpec
		if sc := t.Scope(name); sc != nil && sc.Visitors != nil {
			spec = sc.Visitors.bandwidth
		}
		bw.set(spec)
	}
}

func (b *bandwidths) forget(tunnel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bw := b.m[tunnel]; bw != nil {
		bw.set(bandwidthSpec{}) // streams still open run free
		delete(b.m, tunnel)
	}
}

// burstOf is the burst of a cap: a tenth of a second's worth, between 64
// KiB and 4 MiB, what a stream takes at most at once.
func burstOf(perSecond int64) int { return int(min(max(perSecond/10, 64<<10), 4<<20)) }

// throttle returns c drawing from bw's buckets: what it reads (the
// client's upstream's bytes, on their way down to the visitor) waits for
// the down bucket after it is read, so that a stream over the cap stops
// reading and its window holds the rest back at the client; what it
// writes (the visitor's bytes, up) waits for the up bucket first.
func throttle(c *tunnel.DataConn, bw *bandwidth) net.Conn {
	if bw == nil {
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &throttledConn{DataConn: c, bw: bw, ctx: ctx, cancel: cancel}
}

// throttledConn is a data stream under its tunnel's bandwidth caps. It
// keeps the stream's other methods (Reset, CloseWrite, deadlines).
type throttledConn struct {
	*tunnel.DataConn
	bw     *bandwidth
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *throttledConn) Read(p []byte) (int, error) {
	n, err := c.DataConn.Read(p)
	if n > 0 {
		if werr := wait(c.ctx, c.bw.down, n); werr != nil && err == nil {
			err = net.ErrClosed
		}
	}
	return n, err
}

func (c *throttledConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := len(p)
		if c.bw.up.Limit() != rate.Inf {
			chunk = min(chunk, c.bw.up.Burst())
		}
		if err := wait(c.ctx, c.bw.up, chunk); err != nil {
			return written, net.ErrClosed
		}
		n, err := c.DataConn.Write(p[:chunk])
		written += n
		if err != nil {
			return written, err
		}
		p = p[chunk:]
	}
	return written, nil
}

// Close ends the stream, and any wait for the buckets.
func (c *throttledConn) Close() error {
	c.cancel()
	return c.DataConn.Close()
}

// Reset resets the stream, and ends any wait for the buckets.
func (c *throttledConn) Reset() {
	c.cancel()
	c.DataConn.Reset()
}

// wait takes n bytes from l, in pieces no larger than its burst.
func wait(ctx context.Context, l *rate.Limiter, n int) error {
	if l.Limit() == rate.Inf {
		return nil
	}
	for n > 0 {
		take := min(n, l.Burst())
		if err := l.WaitN(ctx, take); err != nil {
			return err
		}
		n -= take
	}
	return nil
}
