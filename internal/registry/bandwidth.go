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
type bandwidth struct {
	spec     bandwidthSpec
	down, up *rate.Limiter // nil: no cap that way
}

// bandwidths holds every tunnel's, by name: a reload that keeps a
// tunnel's caps keeps its buckets.
type bandwidths struct {
	mu sync.Mutex
	m  map[string]*bandwidth
}

// of returns tunnel's buckets for spec, new ones when the spec changed.
func (b *bandwidths) of(tunnel string, spec bandwidthSpec) *bandwidth {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bw := b.m[tunnel]; bw != nil && bw.spec == spec {
		return bw
	}
	bw := &bandwidth{spec: spec, down: bucket(spec.down), up: bucket(spec.up)}
	if b.m == nil {
		b.m = make(map[string]*bandwidth)
	}
	b.m[tunnel] = bw
	return bw
}

func (b *bandwidths) forget(tunnel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, tunnel)
}

// bucket is a byte bucket of perSecond, nil for none. Its burst, a
// tenth of a second's worth between 64 KiB and 4 MiB, is what a stream
// takes at most at once.
func bucket(perSecond int64) *rate.Limiter {
	if perSecond == 0 {
		return nil
	}
	burst := min(max(perSecond/10, 64<<10), 4<<20)
	return rate.NewLimiter(rate.Limit(perSecond), int(burst))
}

// throttle returns c drawing from bw's buckets: what it reads (the
// client's upstream's bytes, on their way down to the visitor) waits for
// the down bucket after it is read, so that a stream over the cap stops
// reading and its window holds the rest back at the client; what it
// writes (the visitor's bytes, up) waits for the up bucket first.
func throttle(c *tunnel.DataConn, bw *bandwidth) net.Conn {
	if bw == nil || bw.down == nil && bw.up == nil {
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
	if n > 0 && c.bw.down != nil {
		if werr := wait(c.ctx, c.bw.down, n); werr != nil && err == nil {
			err = net.ErrClosed
		}
	}
	return n, err
}

func (c *throttledConn) Write(p []byte) (int, error) {
	if c.bw.up == nil {
		return c.DataConn.Write(p)
	}
	written := 0
	for len(p) > 0 {
		chunk := min(len(p), c.bw.up.Burst())
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
	for n > 0 {
		take := min(n, l.Burst())
		if err := l.WaitN(ctx, take); err != nil {
			return err
		}
		n -= take
	}
	return nil
}
