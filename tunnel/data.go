package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DataConn is the server's side of a data stream: a net.Conn to a
// visitor's upstream through a client. OpenData opens the stream on the
// first client that its next function offers, writes the stream header,
// and returns at once, without waiting for the client's reply:
//
//   - In protocol version 3, what the visitor sends follows the header at
//     once, and the first MaxEarlyData bytes of it are kept until the
//     reply. A reply that says the client could not reach its upstream
//     (that client forwarded nothing: it connects before it forwards, and
//     discards what it holds on failure) moves the stream, header, kept
//     bytes and half-close, to the next client next offers, and so on
//     until one takes it or none is left. Past MaxEarlyData, Write waits
//     for the reply.
//   - In version 2, Write waits for the reply before it sends anything,
//     and the stream moves the same way.
//
// Read reads the reply first, then the upstream's bytes. A caller must
// keep reading (as a relay does) for writes past the early data to go
// on. Once no client is left, Read and Write return the error next gave.
type DataConn struct {
	header StreamHeader
	next   func(refused error) (*Session, error)

	// ready is set once a client has replied that its upstream took the
	// stream: st is then fixed, and kept dropped.
	ready atomic.Bool

	// mu guards what follows; cond is signalled when ready or failed is
	// set.
	mu   sync.Mutex
	cond sync.Cond
	// st is the stream of the client offered the visitor now, and early
	// whether its session lets the visitor's bytes go before the reply.
	st    *Stream
	early bool
	// kept is what the visitor sent before the reply, to send again to
	// the next client.
	kept []byte
	// halfClosed is set by CloseWrite; closed by Close.
	halfClosed, closed bool
	// failed is set once no client is left, or the stream broke before a
	// reply: Read and Write return it.
	failed error
	// readDeadline is what SetReadDeadline last set: waiting for the reply
	// honours it, and a moved stream gets it.
	readDeadline, writeDeadline time.Time
	// waitEnded is set when AwaitReply's context ended: the wait is over.
	waitEnded bool
}

// MaxEarlyData is how much of what a visitor sends a DataConn keeps until
// the client's reply, and so how much goes before it.
const MaxEarlyData = 64 << 10

// ReplyError is a client's StreamReply saying it did not take a stream.
type ReplyError struct {
	Code, Reason string
}

func (e *ReplyError) Error() string { return e.Code + ": " + e.Reason }

// OpenData opens a data stream for a visitor with header h on the first
// session next offers (next(nil)). Each time a session cannot open the
// stream, or its client replies that it did not take it, next is called
// again with why (a *ReplyError for a reply) for the session to try next;
// it returns an error, the one the DataConn then fails with, when none
// is left. next is called from OpenData and from Read, never at once.
func OpenData(ctx context.Context, h StreamHeader, next func(refused error) (*Session, error)) (*DataConn, error) {
	d := &DataConn{header: h, next: next}
	d.cond.L = &d.mu
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.offer(ctx, nil); err != nil {
		return nil, err
	}
	return d, nil
}

// offer opens the stream on the next session that opens one, and writes
// the header and what was kept. The caller holds mu.
func (d *DataConn) offer(ctx context.Context, refused error) error {
	frame, err := AppendFrame(nil, d.header)
	if err != nil {
		return err
	}
	for {
		sess, err := d.next(refused)
		if err != nil {
			return err
		}
		st, err := sess.Open(ctx)
		if err != nil {
			refused = fmt.Errorf("opening a stream: %w", err)
			continue
		}
		early := sess.Protocol() >= 3
		st.SetWriteDeadline(time.Now().Add(ConnectionWriteTimeout))
		_, err = st.Write(append(frame, d.kept...))
		if err == nil && d.halfClosed && early {
			err = st.CloseWrite()
		}
		st.SetWriteDeadline(d.writeDeadline)
		if err != nil {
			st.Reset()
			refused = fmt.Errorf("writing a stream header: %w", err)
			continue
		}
		st.SetReadDeadline(d.readDeadline)
		d.st, d.early = st, early
		return nil
	}
}

// Read reads the upstream's bytes, once the reply is in.
func (d *DataConn) Read(p []byte) (int, error) {
	if !d.ready.Load() {
		if err := d.awaitReply(); err != nil {
			return 0, err
		}
	}
	return d.st.Read(p)
}

// AwaitReply waits until a client has taken the stream (Read does that
// by itself), or ctx ends, or no client is left: for a caller that must
// not write past the early data before it knows, or that has nothing to
// send first. A stream whose wait ctx ended is reset.
func (d *DataConn) AwaitReply(ctx context.Context) error {
	if d.ready.Load() {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.waitEnded = true
		if d.st != nil {
			d.st.SetReadDeadline(time.Unix(1, 0))
		}
		d.mu.Unlock()
	})
	defer stop()
	return d.awaitReply()
}

// awaitReply reads replies, moving the stream to the next client after
// each refusal, until one takes it.
func (d *DataConn) awaitReply() error {
	for {
		d.mu.Lock()
		st, err := d.st, d.failed
		if err != nil {
			d.mu.Unlock()
			return err
		}
		deadline := d.readDeadline
		if limit := time.Now().Add(StreamReplyTimeout); deadline.IsZero() || limit.Before(deadline) {
			deadline = limit
		}
		if d.waitEnded {
			deadline = time.Unix(1, 0)
		}
		// Under mu, so that AwaitReply's end, which sets st's deadline
		// under mu too, is never overwritten.
		st.SetReadDeadline(deadline)
		d.mu.Unlock()
		var reply StreamReply
		err = ReadFrame(st, MaxStreamHeaderSize, &reply)

		d.mu.Lock()
		switch {
		case d.ready.Load():
			// Another reader took it.
		case d.closed:
			d.mu.Unlock()
			return net.ErrClosed
		case err != nil:
			// The stream broke before its reply, or the wait passed
			// the caller's deadline: the client may have taken it and
			// forwarded what it had, so it does not move (unless
			// nothing was sent but the header).
			st.Reset()
			if len(d.kept) == 0 && !d.halfClosed && !errors.Is(err, os.ErrDeadlineExceeded) {
				err = d.offer(context.Background(), fmt.Errorf("waiting for the client's reply: %w", err))
			}
			if err != nil {
				d.fail(fmt.Errorf("waiting for the client's reply: %w", err))
			}
		case reply.Error != "":
			st.Reset()
			if err := d.offer(context.Background(), &ReplyError{Code: reply.Error, Reason: TruncateReason(reply.Reason)}); err != nil {
				d.fail(err)
			}
		default:
			st.SetReadDeadline(d.readDeadline)
			if d.halfClosed && !d.early {
				st.CloseWrite()
			}
			d.kept = nil
			d.ready.Store(true)
			d.cond.Broadcast()
		}
		ready := d.ready.Load()
		d.mu.Unlock()
		if ready {
			return nil
		}
	}
}

// fail ends the DataConn with err. The caller holds mu.
func (d *DataConn) fail(err error) {
	if d.failed == nil {
		d.failed = err
	}
	d.cond.Broadcast()
}

// Write sends p: before the reply, as early data while there is room
// (version 3), and after it otherwise.
func (d *DataConn) Write(p []byte) (int, error) {
	if d.ready.Load() {
		return d.st.Write(p)
	}
	d.mu.Lock()
	written := 0
	for len(p) > 0 && !d.ready.Load() {
		if d.failed != nil || d.closed || d.halfClosed {
			err := d.failed
			if err == nil {
				err = net.ErrClosed
			}
			d.mu.Unlock()
			return written, err
		}
		room := MaxEarlyData - len(d.kept)
		if !d.early || room <= 0 {
			d.cond.Wait()
			continue
		}
		chunk := p[:min(len(p), room)]
		n, err := d.st.Write(chunk)
		d.kept = append(d.kept, chunk[:n]...)
		written += n
		p = p[n:]
		if err != nil {
			// The reader finds out why: the stream is reset, or the
			// session has ended. What was kept moves with the stream.
			d.cond.Wait()
		}
	}
	d.mu.Unlock()
	if len(p) == 0 {
		return written, nil
	}
	n, err := d.st.Write(p)
	return written + n, err
}

// CloseWrite half-closes the stream: the upstream reads EOF once it has
// what was written.
func (d *DataConn) CloseWrite() error {
	if d.ready.Load() {
		return d.st.CloseWrite()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ready.Load() {
		return d.st.CloseWrite()
	}
	d.halfClosed = true
	if d.early {
		return d.st.CloseWrite()
	}
	return nil
}

// Close ends the stream: see Stream.Close.
func (d *DataConn) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.cond.Broadcast()
	return d.st.Close()
}

// Reset resets the stream.
func (d *DataConn) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.cond.Broadcast()
	d.st.Reset()
}

// Stream is the stream of the client offered the visitor now.
func (d *DataConn) Stream() *Stream {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

func (d *DataConn) LocalAddr() net.Addr  { return d.Stream().LocalAddr() }
func (d *DataConn) RemoteAddr() net.Addr { return d.Stream().RemoteAddr() }

func (d *DataConn) SetDeadline(t time.Time) error {
	d.SetReadDeadline(t)
	return d.SetWriteDeadline(t)
}

func (d *DataConn) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.readDeadline = t
	if d.ready.Load() {
		return d.st.SetReadDeadline(t)
	}
	return nil
}

func (d *DataConn) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writeDeadline = t
	return d.st.SetWriteDeadline(t)
}

var _ net.Conn = (*DataConn)(nil)
