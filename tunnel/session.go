package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// Session is the yamux session of one client's WebSocket, on either side.
// The server opens every stream (it is yamux's "client" role); the client
// accepts them.
type Session struct {
	mux  *yamux.Session
	conn *Conn
	// ended is why the session ended, when Conn or the watchdog ended it.
	ended atomic.Pointer[error]
}

// ServerConfig is what the server chooses for a session.
type ServerConfig struct {
	// StreamWindow is the receive window of each stream: how many bytes
	// the client may send on a stream that the server has not read yet.
	// It bounds the server's memory per stream, and one stream's
	// throughput to StreamWindow per round trip. Default:
	// DefaultStreamWindow; minimum: MinStreamWindow.
	StreamWindow uint32

	// ProbeAfter and AnswerTimeout bound how long a client that stops
	// answering keeps its session: the server pings a client from which
	// it has heard nothing for ProbeAfter since it sent it data or a new
	// stream, and ends the session when nothing more has come
	// AnswerTimeout later. Defaults: DefaultProbeAfter and
	// DefaultAnswerTimeout.
	ProbeAfter, AnswerTimeout time.Duration

	// Budget, if set, bounds the data clients have sent that no visitor
	// has read yet, with the other sessions that share it.
	Budget *Budget

	// Logger receives yamux's log lines; nil discards them.
	Logger yamux.Logger
}

// muxConfig is the yamux configuration of both sides.
//
// yamux's defaults are not used as they are:
//   - MaxStreamWindowSize is the side's choice (ServerConfig.StreamWindow).
//   - ConnectionWriteTimeout is a safety valve, not a liveness check: a
//     healthy but slow link must not trip it (yamux advisory
//     GHSA-29qp-crvh-w22m). Nothing here retries a stream write that timed
//     out: the copier that sees the error resets the stream.
//   - The client pings every KeepAliveInterval, which tells it when the
//     server is gone. The server does not ping an idle client: its Conn
//     ends a session that has sent nothing for PeerSilenceTimeout, and its
//     watchdog one that leaves data unanswered (see ServerConfig).
//   - StreamCloseTimeout and StreamOpenTimeout are off. yamux's close
//     timer keeps a half-closed stream and its buffers for the timeout
//     even after the session has ended; here a stream is reset when it is
//     closed before its peer has finished (see Stream.Close), and a peer
//     that does not accept a stream is caught by the watchdog, which does
//     not need a goroutine per stream.
func muxConfig(window uint32, logger yamux.Logger) *yamux.Config {
	cfg := &yamux.Config{
		AcceptBacklog:          256,
		EnableKeepAlive:        true,
		KeepAliveInterval:      KeepAliveInterval,
		ConnectionWriteTimeout: ConnectionWriteTimeout,
		MaxStreamWindowSize:    max(window, MinStreamWindow),
		Logger:                 logger,
	}
	if logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	return cfg
}

// ServerSession starts the server's side of a session over conn.
func ServerSession(conn *Conn, cfg ServerConfig) (*Session, error) {
	s := &Session{conn: conn}
	conn.SetIdleTimeout(PeerSilenceTimeout)
	conn.inspect = newClientPolice().inspect
	conn.budget = cfg.Budget
	probe, answer := cfg.ProbeAfter, cfg.AnswerTimeout
	if probe <= 0 {
		probe = DefaultProbeAfter
	}
	if answer <= 0 {
		answer = DefaultAnswerTimeout
	}
	conn.Watch(probe, answer, func() {
		s.end(fmt.Errorf("the client answered nothing for %s", probe+answer))
	})
	window := cfg.StreamWindow
	if window == 0 {
		window = DefaultStreamWindow
	}
	mc := muxConfig(window, cfg.Logger)
	mc.EnableKeepAlive = false
	mux, err := yamux.Client(conn, mc)
	if err != nil {
		return nil, err
	}
	s.mux = mux
	return s, nil
}

// ClientSession starts the client's side of a session over conn.
func ClientSession(conn *Conn, logger yamux.Logger) (*Session, error) {
	mux, err := yamux.Server(conn, muxConfig(DefaultStreamWindow, logger))
	if err != nil {
		return nil, err
	}
	return &Session{mux: mux, conn: conn}, nil
}

// end closes the session for a reason that Err will report, without
// waiting to send what is queued: the peer is gone or misbehaving.
func (s *Session) end(reason error) {
	s.ended.CompareAndSwap(nil, &reason)
	s.conn.SetWriteDeadline(time.Unix(1, 0))
	s.Close()
}

// Err is why the session ended, if it was not closed by either side's
// code or by the connection's end: an unanswering peer or a breach of
// the protocol. It is nil otherwise.
func (s *Session) Err() error {
	if p := s.ended.Load(); p != nil {
		return *p
	}
	return s.conn.inspectErr()
}

// Open opens a stream (the server's side). A data stream (any but the
// first, the control stream) counts in the session's budget.
func (s *Session) Open() (*Stream, error) {
	st, err := s.mux.OpenStream()
	if err != nil {
		return nil, err
	}
	stream := newStream(st, s.conn)
	if st.StreamID() != controlStreamID {
		s.conn.track(stream)
	}
	return stream, nil
}

// Accept waits for the next stream the server opens (the client's side).
func (s *Session) Accept(ctx context.Context) (*Stream, error) {
	st, err := s.mux.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, err
	}
	return newStream(st, s.conn), nil
}

// GoAway tells the peer that this side accepts no stream of its: yamux
// resets any it opens from then on.
func (s *Session) GoAway() error { return s.mux.GoAway() }

// NumStreams is the number of streams yamux holds open.
func (s *Session) NumStreams() int { return s.mux.NumStreams() }

// Close ends the session and every stream in it. It closes the
// connection and lets yamux end the session when its reader sees the
// end, rather than calling yamux's Close first: that one wakes every
// goroutine blocked reading a stream before its reader has stopped, and
// they spin until it has; with thousands of sessions closing at once,
// for minutes.
func (s *Session) Close() error {
	s.conn.Close()
	<-s.mux.CloseChan()
	return nil
}

// Done is closed once the session has ended.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Conn is the session's connection.
func (s *Session) Conn() *Conn { return s.conn }

// ErrProtocol marks a breach of the protocol by the peer.
var ErrProtocol = errors.New("protocol violation")

// clientPolice holds a client to what the protocol lets it send the
// server, frame by frame, before yamux acts on the frames: yamux itself
// would buffer a control stream's data, accept streams the client opens,
// and answer every ping with a goroutine of its own.
type clientPolice struct {
	// controlBytes counts the data the client sent on the control stream.
	controlBytes int
	// pingTokens is a bucket of the pings the client may send, refilled
	// at pingRate per second up to pingBurst; pingRefill is when it was
	// last refilled.
	pingTokens float64
	pingRefill time.Time
}

const (
	// controlStreamID is the yamux ID of the control stream, the first
	// stream the server opens.
	controlStreamID = 1

	pingBurst = 20
	pingRate  = 2
)

func newClientPolice() *clientPolice {
	return &clientPolice{pingTokens: pingBurst, pingRefill: time.Now()}
}

func (p *clientPolice) inspect(h *yamuxHeader) error {
	flags := h.flags()
	switch h.typ() {
	case yamuxTypeData, yamuxTypeWindowUpdate:
		if flags&yamuxFlagSYN != 0 {
			return fmt.Errorf("%w: the client opened a stream; the server opens every stream", ErrProtocol)
		}
		if h.streamID() != controlStreamID {
			return nil
		}
		if flags&(yamuxFlagFIN|yamuxFlagRST) != 0 {
			return fmt.Errorf("the client closed its control stream")
		}
		if p.controlBytes += h.bodyLen(); p.controlBytes > 4+MaxHandshakeSize {
			return fmt.Errorf("%w: the client sent more than its hello on the control stream", ErrProtocol)
		}
	case yamuxTypePing:
		if flags&yamuxFlagSYN == 0 {
			return nil
		}
		now := time.Now()
		p.pingTokens = min(pingBurst, p.pingTokens+now.Sub(p.pingRefill).Seconds()*pingRate)
		p.pingRefill = now
		if p.pingTokens < 1 {
			return fmt.Errorf("%w: the client sends more than %d pings a second", ErrProtocol, pingRate)
		}
		p.pingTokens--
	}
	return nil
}
