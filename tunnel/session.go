package tunnel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/yamux"
)

// Session is the yamux session of one client's WebSocket, on either side.
// The server opens every stream (it is yamux's "client" role); the client
// accepts them.
type Session struct {
	mux    *yamux.Session
	conn   *Conn
	budget *Budget
	// watch is the server's watchdog; nil on the client's side.
	watch *watchdog

	// protocol is the protocol version the handshake agreed on.
	protocol atomic.Int32
	// ended is why the session ended, when the watchdog ended it.
	ended atomic.Pointer[error]

	// maxStreams bounds the data streams open at once; 0: no bound.
	// open counts them, from Open or Accept until Close or Reset;
	// refused counts those Accept reset past the bound.
	maxStreams, open, refused atomic.Int64
	onRefused                 func(refused int64)
	// streamsMu guards streams, the data streams open, and over.
	streamsMu sync.Mutex
	streams   map[*Stream]struct{}
	over      bool
}

// ServerSession starts the server's side of a session over conn. It owns
// conn from then on.
func ServerSession(conn *Conn, cfg Config) (*Session, error) {
	if err := VerifyConfig(cfg); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := newSession(conn, cfg)
	conn.SetIdleTimeout(PeerSilenceTimeout)
	s.watch = newWatchdog(s, cfg.ProbeAfter, cfg.AnswerTimeout)
	conn.onHeard = s.watch.heard
	mc := muxConfig(cfg, false)
	// The client never opens a stream: yamux resets any it does.
	mc.MaxIncomingStreams = 0
	mux, err := yamux.Client(conn, mc, s.memoryManager())
	if err != nil {
		return nil, err
	}
	s.mux = mux
	return s, nil
}

// ClientSession starts the client's side of a session over conn. It owns
// conn from then on.
func ClientSession(conn *Conn, cfg Config) (*Session, error) {
	if err := VerifyConfig(cfg); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := newSession(conn, cfg)
	mux, err := yamux.Server(conn, muxConfig(cfg, true), s.memoryManager())
	if err != nil {
		return nil, err
	}
	s.mux = mux
	return s, nil
}

func newSession(conn *Conn, cfg Config) *Session {
	s := &Session{conn: conn, budget: cfg.Budget, streams: make(map[*Stream]struct{})}
	s.protocol.Store(ProtocolVersion)
	conn.onEnd = s.release
	if s.budget != nil {
		s.budget.addSession(s)
	}
	return s
}

// memoryManager is the factory of the yamux session's MemoryManagers:
// the budget's, or none.
func (s *Session) memoryManager() func() (yamux.MemoryManager, error) {
	if s.budget == nil {
		return nil
	}
	return s.budget.memoryManager
}

// release runs once, when the connection closes, whatever ended the
// session: its streams leave the budget.
func (s *Session) release() {
	if s.watch != nil {
		s.watch.stop()
	}
	s.streamsMu.Lock()
	s.over = true
	streams := s.streams
	s.streams = nil
	s.streamsMu.Unlock()
	for st := range streams {
		st.end()
	}
	if s.budget != nil {
		s.budget.removeSession(s)
	}
}

// end closes the session for a reason that Err will report, without
// waiting to send what is queued: the peer is gone or misbehaving.
func (s *Session) end(reason error) {
	s.ended.CompareAndSwap(nil, &reason)
	s.conn.SetWriteDeadline(time.Unix(1, 0))
	s.Close()
}

// Err is why the session ended when the server's watchdog ended it
// (a client that stopped answering); nil otherwise.
func (s *Session) Err() error {
	if p := s.ended.Load(); p != nil {
		return *p
	}
	return nil
}

// SetProtocol records the protocol version the handshake agreed on.
func (s *Session) SetProtocol(v int) { s.protocol.Store(int32(v)) }

// Protocol is the protocol version the session speaks.
func (s *Session) Protocol() int { return int(s.protocol.Load()) }

// SetMaxStreams bounds the data streams the session has open at once, on
// either side: the server's Open fails past it, and the client's Accept
// resets the server's streams past it; 0: no bound.
func (s *Session) SetMaxStreams(n int) { s.maxStreams.Store(int64(n)) }

// GoAway tells the peer to open no more streams on the session; the
// streams open go on, and a stream the peer opened before it read the
// Go Away is accepted as any other. A client sends it to retire a session
// gracefully (see doc.go, "Retiring a session").
func (s *Session) GoAway() error { return s.mux.Retire() }

// OnRetired has f called, in a goroutine of its own, once the peer has
// sent a Go Away (see GoAway): on a server, the client retires the
// session.
func (s *Session) OnRetired(f func()) { s.mux.OnRemoteGoAway(f) }

// Streams is the number of data streams open now.
func (s *Session) Streams() int { return int(s.open.Load()) }

// RTT is the round-trip time the session measured last (smoothed), or 0
// before the first measurement.
func (s *Session) RTT() time.Duration { return s.mux.RTT() }

// ErrStreamLimit is what Open returns when the session has as many data
// streams open as SetMaxStreams allows.
var ErrStreamLimit = errors.New("as many streams open as allowed")

// Open opens a data stream (the server's side).
func (s *Session) Open(ctx context.Context) (*Stream, error) {
	if n := s.open.Add(1); s.maxStreams.Load() > 0 && n > s.maxStreams.Load() {
		s.open.Add(-1)
		return nil, fmt.Errorf("%w (%d)", ErrStreamLimit, s.maxStreams.Load())
	}
	st, err := s.mux.OpenStream(ctx)
	if err != nil {
		s.open.Add(-1)
		return nil, err
	}
	stream := &Stream{st: st, sess: s, data: true}
	if !s.track(stream, false) {
		return nil, yamux.ErrSessionShutdown
	}
	s.watch.spoke()
	return stream, nil
}

// openControl opens the control stream, the first the server opens.
func (s *Session) openControl() (*Stream, error) {
	st, err := s.mux.OpenStream(context.Background())
	if err != nil {
		return nil, err
	}
	return &Stream{st: st, sess: s}, nil
}

// Accept waits for the next data stream the server opens (the client's
// side). Past SetMaxStreams, a new stream is reset at once, counted in
// RefusedStreams, and Accept waits for the next. A ctx that ends first
// ends the session: yamux has no way to stop waiting otherwise.
func (s *Session) Accept(ctx context.Context) (*Stream, error) {
	for {
		st, err := s.accept(ctx)
		if err != nil {
			return nil, err
		}
		if n := s.open.Add(1); s.maxStreams.Load() > 0 && n > s.maxStreams.Load() {
			s.open.Add(-1)
			st.Reset()
			if n := s.refused.Add(1); s.onRefused != nil {
				s.onRefused(n)
			}
			continue
		}
		stream := &Stream{st: st, sess: s, data: true}
		if !s.track(stream, true) {
			return nil, yamux.ErrSessionShutdown
		}
		return stream, nil
	}
}

// RefusedStreams is how many streams Accept has reset for passing
// SetMaxStreams.
func (s *Session) RefusedStreams() int64 { return s.refused.Load() }

// OnRefusedStream has f told, with RefusedStreams, of each stream Accept
// resets for passing SetMaxStreams. Call it before Accept.
func (s *Session) OnRefusedStream(f func(refused int64)) { s.onRefused = f }

// acceptControl waits for the control stream.
func (s *Session) acceptControl(ctx context.Context) (*Stream, error) {
	st, err := s.accept(ctx)
	if err != nil {
		return nil, err
	}
	return &Stream{st: st, sess: s}, nil
}

func (s *Session) accept(ctx context.Context) (*yamux.Stream, error) {
	if ctx.Done() == nil {
		return s.mux.AcceptStream()
	}
	type accepted struct {
		st  *yamux.Stream
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		st, err := s.mux.AcceptStream()
		ch <- accepted{st, err}
	}()
	select {
	case a := <-ch:
		return a.st, a.err
	case <-ctx.Done():
		s.Close()
		if a := <-ch; a.st != nil {
			a.st.Reset()
		}
		return nil, ctx.Err()
	}
}

// track counts a new data stream in the session and its budget, as
// pending when the peer opened it; false when the session is over
// already (the stream is then reset).
func (s *Session) track(st *Stream, pending bool) bool {
	s.streamsMu.Lock()
	if s.over {
		s.streamsMu.Unlock()
		st.closed.Store(true)
		st.ended.Store(true)
		s.open.Add(-1)
		st.st.Reset()
		return false
	}
	s.streams[st] = struct{}{}
	if s.budget != nil {
		if pending {
			st.accepted = time.Now().UnixNano()
			st.leftRead.Store(pendingSetUp)
		} else {
			st.leftRead.Store(time.Now().UnixNano())
		}
	}
	s.streamsMu.Unlock()
	switch {
	case s.budget == nil:
	case pending:
		s.budget.pend()
	default:
		s.budget.expose()
	}
	return true
}

// untrack counts st out of the session and its budget.
func (s *Session) untrack(st *Stream) {
	s.streamsMu.Lock()
	delete(s.streams, st)
	s.streamsMu.Unlock()
	s.open.Add(-1)
	if s.budget == nil {
		return
	}
	switch left := st.leftRead.Swap(-1); {
	case left > 0:
		s.budget.cover()
	case left == pendingSetUp:
		s.budget.settle()
	}
}

// eachStream calls f with each data stream open, under the session's
// lock: f must not block.
func (s *Session) eachStream(f func(*Stream)) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	for st := range s.streams {
		f(st)
	}
}

// Close ends the session and every stream in it.
func (s *Session) Close() error { return s.mux.Close() }

// Done is closed once the session has ended.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Conn is the session's connection.
func (s *Session) Conn() *Conn { return s.conn }
