package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Stream is one yamux stream of a Session, as a net.Conn with the two
// ways a TCP connection ends:
//
//   - CloseWrite half-closes it (a yamux FIN): the peer reads EOF and can
//     still write back.
//   - Close ends it. When the peer has half-closed already, that is a FIN
//     too, and both sides are done. Otherwise Close resets the stream
//     (see Conn.ResetStream): whatever the peer sends from then on is
//     thrown away at once on both sides, rather than kept in a receive
//     window nobody reads, and a peer still writing gets an error.
type Stream struct {
	st   *yamux.Stream
	conn *Conn

	// budget, when set, counts what the stream holds unread: unread,
	// while counted, both guarded by budgetMu. lastRead is when its
	// reader last took something, in UnixNano.
	budget   *Budget
	budgetMu sync.Mutex
	unread   int64
	counted  bool
	lastRead atomic.Int64

	// eof is set once Read has returned io.EOF, the peer's FIN.
	eof atomic.Bool
	// peerReset is set once yamux has reported the peer's RST.
	peerReset atomic.Bool
	// closed is set by Close.
	closed atomic.Bool
}

func newStream(st *yamux.Stream, conn *Conn) *Stream { return &Stream{st: st, conn: conn} }

// ID is the stream's yamux ID, the same on both sides.
func (s *Stream) ID() uint32 { return s.st.StreamID() }

// Read reads from the stream. It returns io.EOF after the peer's FIN,
// ErrStreamReset after its RST, and net.ErrClosed after Close.
func (s *Stream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.st.Read(p)
	if n > 0 && s.budget != nil {
		s.budget.consumed(s, int64(n))
		s.lastRead.Store(time.Now().UnixNano())
	}
	return n, s.note(err)
}

// Write writes to the stream, with the errors of Read.
func (s *Stream) Write(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.st.Write(p)
	return n, s.note(err)
}

// ErrStreamReset is what Read and Write return once the peer has reset
// the stream.
var ErrStreamReset = errors.New("tunnel: stream reset by the peer")

func (s *Stream) note(err error) error {
	switch {
	case err == nil:
	case err == io.EOF:
		s.eof.Store(true)
	case errors.Is(err, yamux.ErrConnectionReset):
		s.peerReset.Store(true)
		return ErrStreamReset
	case s.closed.Load():
		return net.ErrClosed
	}
	return err
}

// CloseWrite half-closes the stream.
func (s *Stream) CloseWrite() error { return s.st.Close() }

// Close ends the stream: see Stream.
func (s *Stream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	switch {
	case s.peerReset.Load():
		// yamux has forgotten it already.
		s.conn.untrack(s)
	case s.eof.Load():
		s.st.Close()
		s.conn.untrack(s)
	default:
		s.Reset()
	}
	return nil
}

// Reset resets the stream on both sides, frees what it has buffered, and
// wakes whoever waits on it.
func (s *Stream) Reset() {
	s.closed.Store(true)
	s.conn.untrack(s)
	s.conn.ResetStream(s.ID())
	// Take out what yamux holds for the stream now; the window updates
	// its reads would send are dropped by the Conn.
	past := time.Unix(1, 0)
	s.st.SetDeadline(past)
	buf := copyBuffers.Get().(*[]byte)
	for {
		if _, err := s.st.Read(*buf); err != nil {
			break
		}
	}
	copyBuffers.Put(buf)
	s.st.Shrink()
}

func (s *Stream) LocalAddr() net.Addr                { return s.st.LocalAddr() }
func (s *Stream) RemoteAddr() net.Addr               { return s.st.RemoteAddr() }
func (s *Stream) SetDeadline(t time.Time) error      { return s.st.SetDeadline(t) }
func (s *Stream) SetReadDeadline(t time.Time) error  { return s.st.SetReadDeadline(t) }
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.st.SetWriteDeadline(t) }

var _ net.Conn = (*Stream)(nil)
