// Package latency emulates a long link on loopback: a Relay forwards TCP
// connections to a target address and delays what they carry by a fixed
// time each way.
//
// Each direction of a connection has a reader and a writer goroutine. The
// reader stamps every chunk with the time it read it and queues it; the
// writer writes it at that time plus the direction's delay. Chunks are
// pipelined as on a real link: a delay adds latency, not a cap on
// throughput. There is no bandwidth limit and no loss; what bounds a
// direction is MaxInFlight, the memory of what it has read and not yet
// written: there the reader stops reading and TCP's flow control holds
// the sender.
//
// A connection's own handshake is not delayed: the relay accepts at once
// and dials the target at once, so a client's connect returns as soon as
// on loopback and its first bytes arrive one delay later. An end of
// stream (FIN) is passed on after the last chunk, with the same delay; a
// reset is passed on as a reset.
//
// Integration tests use it as a relay that delays what a tunnel client
// sends by several hundred milliseconds:
//
//	r, err := latency.Start(caddyAddr, 300*time.Millisecond, 0)
//	...
//	defer r.Close()
//	// the client dials "ws://" + r.Addr()
package latency

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MaxInFlight is the most memory one direction of a connection holds for
// what it has read from one side and not yet written to the other (a
// chunk read whole into a buffer of readSize counts that buffer). Full
// buffers, 64 MiB carry 1.3 GB/s at a delay of 50 ms: more than loopback
// moves through the relay.
const MaxInFlight = 64 << 20

// dialTimeout bounds the relay's dial of its target.
const dialTimeout = 5 * time.Second

// readSize is the most a reader reads at once: one chunk. A chunk of
// smallChunk bytes or fewer is copied out of the buffer it was read into.
const (
	readSize   = 64 << 10
	smallChunk = 4 << 10
)

// Relay listens on 127.0.0.1 and forwards every connection it accepts to
// its target, delaying each direction.
type Relay struct {
	ln       net.Listener
	target   string
	up, down time.Duration

	// stop ends the dials in progress once Close is called.
	ctx  context.Context
	stop context.CancelFunc
	// wg counts every goroutine of the relay: the accept loop, dials and
	// the four of each connection.
	wg sync.WaitGroup

	mu     sync.Mutex
	conns  map[*conn]struct{} // guarded by mu
	closed bool               // guarded by mu
}

// Start listens on 127.0.0.1:0 and forwards each connection to target
// (host:port), delaying by up what the accepted side sends to the target
// and by down what comes back. Either may be 0.
func Start(target string, up, down time.Duration) (*Relay, error) {
	if up < 0 || down < 0 {
		return nil, fmt.Errorf("latency: delays must not be negative (up %s, down %s)", up, down)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("latency: listening for a relay to %s: %w", target, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &Relay{ln: ln, target: target, up: up, down: down, ctx: ctx, stop: stop, conns: map[*conn]struct{}{}}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is the address the relay listens on, host:port.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Close stops listening, ends every connection at once (what is in flight
// is dropped) and returns once all of the relay's goroutines have.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()

	err := r.ln.Close()
	r.stop()
	for c := range conns {
		c.end(true)
	}
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	for {
		nc, err := r.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: wait a little, as net/http does.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		r.wg.Go(func() { r.forward(nc.(*net.TCPConn)) })
	}
}

// forward dials the target for an accepted connection and starts relaying
// between the two.
func (r *Relay) forward(accepted *net.TCPConn) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(r.ctx, "tcp", r.target)
	if err != nil {
		// As a refused connection would: a reset.
		accepted.SetLinger(0)
		accepted.Close()
		return
	}
	c := &conn{r: r, a: accepted, b: nc.(*net.TCPConn), done: make(chan struct{})}
	c.open.Store(2)
	c.queues = [2]*queue{newQueue(), newQueue()}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		c.end(true)
		return
	}
	r.conns[c] = struct{}{}
	r.mu.Unlock()

	up, down := c.queues[0], c.queues[1]
	r.wg.Go(func() { c.read(c.a, up) })
	r.wg.Go(func() { c.write(up, c.b, r.up) })
	r.wg.Go(func() { c.read(c.b, down) })
	r.wg.Go(func() { c.write(down, c.a, r.down) })
}

// conn is one relayed connection: a, accepted by the relay, and b, its
// dial of the target.
type conn struct {
	r      *Relay
	a, b   *net.TCPConn
	queues [2]*queue // a → b, b → a
	// open counts the directions that have not yet passed on their end
	// of stream.
	open    atomic.Int32
	endOnce sync.Once
	done    chan struct{} // closed by end
}

// chunk is what one read returned, or the end of the stream.
type chunk struct {
	at   time.Time // when it was read
	data []byte
	// buf, when set, is the pooled buffer that holds data, which the
	// writer puts back.
	buf *[]byte
	// eof marks the end of the stream: a FIN. reset marks an error: the
	// peer reset the connection, or it failed.
	eof, reset bool
}

// read reads src until its end, queueing each chunk with the time it
// was read, and last the way it ended. A large chunk is queued in the
// buffer it was read into; a small one is copied, so that a trickle of
// small writes does not hold a whole buffer each.
func (c *conn) read(src *net.TCPConn, q *queue) {
	buf := buffers.Get().(*[]byte)
	defer func() { buffers.Put(buf) }()
	for {
		n, err := src.Read(*buf)
		at := time.Now()
		if n > 0 {
			ch := chunk{at: at}
			if n > smallChunk {
				ch.data, ch.buf = (*buf)[:n], buf
				buf = buffers.Get().(*[]byte)
			} else {
				ch.data = append([]byte(nil), (*buf)[:n]...)
			}
			if !q.push(ch) {
				return
			}
		}
		if err != nil {
			q.push(chunk{at: at, eof: err == io.EOF, reset: err != io.EOF})
			return
		}
	}
}

// buffers holds the buffers chunks are read into, of readSize bytes.
var buffers = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}

// write writes each chunk of q to dst once its delay has passed, and
// passes on the end of the stream the same way. A write that fails ends
// the connection at once.
func (c *conn) write(q *queue, dst *net.TCPConn, delay time.Duration) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		ch, ok := q.pop()
		if !ok {
			return
		}
		if wait := time.Until(ch.at.Add(delay)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-c.done:
				return
			}
		}
		switch {
		case ch.reset:
			c.end(true)
			return
		case ch.eof:
			if err := dst.CloseWrite(); err != nil {
				c.end(true)
			} else if c.open.Add(-1) == 0 {
				c.end(false)
			}
			return
		}
		_, err := dst.Write(ch.data)
		q.release(ch)
		if err != nil {
			c.end(true)
			return
		}
	}
}

// end closes both sides, with a reset unless both directions have ended
// cleanly, wakes every goroutine of the connection and drops it from the
// relay's set.
func (c *conn) end(reset bool) {
	c.endOnce.Do(func() {
		close(c.done)
		for _, tc := range []*net.TCPConn{c.a, c.b} {
			if reset {
				tc.SetLinger(0)
			}
			tc.Close()
		}
		for _, q := range c.queues {
			q.close()
		}
		c.r.mu.Lock()
		delete(c.r.conns, c)
		c.r.mu.Unlock()
	})
}
