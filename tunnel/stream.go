package tunnel

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/yamux"
)

// Stream is one yamux stream of a Session, as a net.Conn with the two
// ways a TCP connection ends:
//
//   - CloseWrite half-closes it (a yamux FIN): the peer reads EOF and can
//     still write back.
//   - Close ends it. When the peer has half-closed already, that is a FIN
//     too, and both sides are done. Otherwise Close resets the stream
//     (Reset): whatever the peer sends from then on is thrown away at once
//     on both sides, rather than kept in a receive window nobody reads,
//     and a peer still writing gets an error.
//
// Read returns io.EOF after the peer's FIN, ErrStreamReset after its RST,
// net.ErrClosed after Close, and os.ErrDeadlineExceeded past a deadline;
// Write the same but io.EOF.
type Stream struct {
	st   *yamux.Stream
	sess *Session

	// data is set on a data stream, which counts in the session's
	// streams and budget: everything but the control stream.
	data bool
	// leftRead is when the reader last left Read (or the stream was
	// opened), in UnixNano, while it is not in Read; 0 while it is; -1
	// once the stream has ended; pendingSetUp while a stream the peer
	// opened is set up (see Budget). Kept for a data stream with a budget.
	leftRead atomic.Int64
	// accepted is when the peer's stream was accepted, in UnixNano.
	accepted int64
	// replied is set once Reply has taken the stream: its set-up ends as
	// its reader next comes to Read.
	replied atomic.Bool

	// eof is set once Read has returned io.EOF, the peer's FIN.
	eof atomic.Bool
	// closed is set by Close or Reset; ended once the stream is counted
	// out of its session: by those, or by the session's end (when what
	// had arrived may still be read).
	closed, ended atomic.Bool
}

// ID is the stream's yamux ID, the same on both sides.
func (s *Stream) ID() uint32 { return s.st.StreamID() }

// Read reads from the stream.
func (s *Stream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	b := s.budgeted()
	if b != nil {
		switch left := s.leftRead.Load(); {
		case left > 0:
			if s.leftRead.CompareAndSwap(left, 0) {
				b.cover()
			}
		case left == pendingSetUp && s.replied.Load():
			if s.leftRead.CompareAndSwap(pendingSetUp, 0) {
				b.settle()
			}
		}
	}
	n, err := s.st.Read(p)
	if b != nil && s.leftRead.CompareAndSwap(0, time.Now().UnixNano()) {
		b.expose()
	}
	return n, s.note(err)
}

// Write writes to the stream. On the server's side it wakes the
// session's watchdog: the client owes an answer.
func (s *Stream) Write(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	if s.data && s.sess.watch != nil {
		s.sess.watch.spoke()
	}
	n, err := s.st.Write(p)
	return n, s.note(err)
}

// pendingSetUp is leftRead while a stream the peer opened is set up.
const pendingSetUp = -2

// budgeted is the budget a data stream counts in, or nil.
func (s *Stream) budgeted() *Budget {
	if s.data {
		return s.sess.budget
	}
	return nil
}

// ErrStreamReset is what Read and Write return once the peer has reset
// the stream.
var ErrStreamReset = errors.New("tunnel: stream reset by the peer")

func (s *Stream) note(err error) error {
	switch {
	case err == nil:
	case err == io.EOF:
		s.eof.Store(true)
	case s.closed.Load():
		return net.ErrClosed
	case errors.Is(err, yamux.ErrTimeout):
		return os.ErrDeadlineExceeded
	case errors.Is(err, yamux.ErrStreamReset):
		return ErrStreamReset
	}
	return err
}

// CloseWrite half-closes the stream.
func (s *Stream) CloseWrite() error { return s.st.CloseWrite() }

// Close ends the stream: see Stream.
func (s *Stream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if !s.eof.Load() {
		s.Reset()
		return nil
	}
	s.end()
	// The peer is done writing: a FIN, and yamux forgets the stream.
	s.st.CloseWrite()
	return nil
}

// Reset resets the stream on both sides: yamux sends an RST, forgets the
// stream, and from then on discards what the peer sends for it; whoever
// waits on the stream wakes with an error.
func (s *Stream) Reset() {
	s.closed.Store(true)
	s.end()
	s.st.Reset()
}

// end counts a data stream out of its session, once.
func (s *Stream) end() {
	if s.ended.Swap(true) || !s.data {
		return
	}
	s.sess.untrack(s)
}

func (s *Stream) LocalAddr() net.Addr                { return s.sess.conn.LocalAddr() }
func (s *Stream) RemoteAddr() net.Addr               { return s.sess.conn.RemoteAddr() }
func (s *Stream) SetDeadline(t time.Time) error      { return s.st.SetDeadline(t) }
func (s *Stream) SetReadDeadline(t time.Time) error  { return s.st.SetReadDeadline(t) }
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.st.SetWriteDeadline(t) }

var _ net.Conn = (*Stream)(nil)
