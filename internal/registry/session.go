package registry

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/internal/version"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Session is one connected client.
type Session struct {
	// ID is unique among the sessions of this process and never reused.
	ID uint64
	// Hello is what the client announced.
	Hello tunnel.Hello
	// RemoteAddr is the client's address as the control plane saw it.
	RemoteAddr string
	// Since is when the session was accepted.
	Since time.Time

	// dials holds, per announced HTTP host, the dial address the HTTP data
	// plane gives reverse_proxy for this session (see DialAddress).
	dials []string

	mux     *yamux.Session
	control *yamux.Stream

	// streams counts open data streams, for least-connection balancing.
	streams atomic.Int64

	// accepted is set once the client has been told it is accepted.
	accepted atomic.Bool

	// controlMu serialises writes to the control stream and guards
	// pending and withdrawn.
	controlMu sync.Mutex
	// pending holds messages sent before the accept answer; they follow it.
	pending []tunnel.Message
	// withdrawn maps the announced ports the server does not serve now to
	// the reason the client was given.
	withdrawn map[int]string
}

// Policy is what the accepting handler requires of a client's announcement.
type Policy struct {
	// AllowHost reports whether the client may announce a host pattern;
	// nil allows every host.
	AllowHost func(pattern string) bool
}

var errShuttingDown = errors.New("the server is shutting down; the client will reconnect to its successor")

// Serve performs the handshake of a session over conn, a freshly upgraded
// WebSocket, in the caller's goroutine, and leaves the accepted session
// running on goroutines of its own, which hold only the registry and the
// session, never a config-scoped value. It owns conn.
func (r *Registry) Serve(conn *tunnel.Conn, remoteAddr string, policy Policy) {
	mux, err := tunnel.ServerSession(conn, yamuxLogger{r})
	if err != nil {
		conn.Close()
		r.Logger().Error("starting tunnel session", zap.String("remote_addr", remoteAddr), zap.Error(err))
		return
	}
	s, err := r.handshake(mux, remoteAddr, policy)
	if err != nil {
		mux.Close()
		r.Logger().Warn("client rejected", zap.String("remote_addr", remoteAddr), zap.Error(err))
		return
	}
	r.Logger().Info("client connected",
		zap.String("remote_addr", remoteAddr),
		zap.String("client_id", s.Hello.ClientID),
		zap.Uint64("session", s.ID),
		zap.String("mode", s.Hello.Mode),
		zap.String("client_version", s.Hello.Version),
		zap.Strings("upstreams", s.Upstreams()))
	// No goroutine waits for the end of the session: an idle client costs
	// the server only yamux's two. yamux closes conn when the session ends.
	conn.OnClose(func() {
		r.remove(s)
		r.Logger().Info("client disconnected",
			zap.String("remote_addr", s.RemoteAddr),
			zap.String("client_id", s.Hello.ClientID),
			zap.Uint64("session", s.ID),
			zap.Duration("connected_for", time.Since(s.Since)))
	})
}

// handshake reads the client's Hello on the control stream and answers it.
// On success the session is registered.
func (r *Registry) handshake(mux *yamux.Session, remoteAddr string, policy Policy) (*Session, error) {
	ctrl, err := mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("opening control stream: %w", err)
	}
	ctrl.SetDeadline(time.Now().Add(tunnel.HandshakeTimeout))

	var hello tunnel.Hello
	if err := tunnel.ReadFrame(ctrl, tunnel.MaxHandshakeSize, &hello); err != nil {
		err = fmt.Errorf("reading the client's hello: %w", err)
		reject(ctrl, err)
		return nil, err
	}
	// The client never opens a stream. From here on yamux resets any it
	// opens, without delivering it; one opened before is a protocol error.
	if err := mux.GoAway(); err != nil {
		return nil, fmt.Errorf("answering the client's hello: %w", err)
	}
	if mux.NumStreams() > 1 {
		err := errors.New("the client opened a stream, which the protocol forbids: the server opens every stream")
		reject(ctrl, err)
		return nil, err
	}
	s := &Session{
		ID:         r.nextID.Add(1),
		Hello:      hello,
		RemoteAddr: remoteAddr,
		Since:      time.Now(),
		mux:        mux,
		control:    ctrl,
	}
	if err := r.admit(s, policy); err != nil {
		reject(ctrl, err)
		return nil, err
	}
	if err := s.accept(); err != nil {
		r.remove(s)
		return nil, fmt.Errorf("answering the client's hello: %w", err)
	}
	return s, nil
}

// accept tells the client it is accepted, then sends what was notified
// while the handshake ran (a reload may withdraw ports meanwhile).
func (s *Session) accept() error {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	answer := tunnel.Message{Type: tunnel.TypeAccept, Version: version.Version()}
	if err := tunnel.WriteFrame(s.control, answer); err != nil {
		return err
	}
	s.control.SetDeadline(time.Time{})
	// The hello's bytes are read: give back the buffer it grew.
	s.control.Shrink()
	s.accepted.Store(true)
	for _, msg := range s.pending {
		if err := s.writeControlLocked(msg); err != nil {
			return err
		}
	}
	s.pending = nil
	return nil
}

// admit validates a session's announcement against the policy and the
// server's TCP settings and registers it, or registers nothing.
func (r *Registry) admit(s *Session, policy Policy) error {
	h := &s.Hello
	if err := h.Validate(); err != nil {
		return err
	}
	for i, up := range h.HTTP {
		if policy.AllowHost != nil && !policy.AllowHost(up.Host) {
			return fmt.Errorf("host %s is not allowed by this server", up.Host)
		}
		s.dials = append(s.dials, DialAddress(s.ID, i))
	}
	if err := r.add(s); err != nil {
		return err
	}
	if len(h.TCP) > 0 {
		if err := r.openPorts(s); err != nil {
			r.remove(s)
			return err
		}
	}
	return nil
}

// reject tells the client why it is refused.
func reject(ctrl *yamux.Stream, reason error) {
	_ = tunnel.WriteFrame(ctrl, tunnel.Message{Type: tunnel.TypeReject, Reason: reason.Error()})
	ctrl.Close()
}

// Close ends the session.
func (s *Session) Close() error { return s.mux.Close() }

// Accepted reports whether the handshake is over and the client serves
// streams. A session is routable a moment before: the TCP data plane
// opens its ports first, so that a refused port refuses the session.
func (s *Session) Accepted() bool { return s.accepted.Load() }

// Notify sends msg to the client on the control stream. Before the client
// has been accepted, msg is held and sent right after the accept answer.
// A write that fails or times out ends the session: the client reconnects
// and announces again.
func (s *Session) Notify(msg tunnel.Message) error {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	return s.notifyLocked(msg)
}

func (s *Session) notifyLocked(msg tunnel.Message) error {
	if !s.accepted.Load() {
		s.pending = append(s.pending, msg)
		return nil
	}
	return s.writeControlLocked(msg)
}

// writeControlLocked writes one message with a deadline, so a client that
// stopped reading cannot hold up a config reload.
func (s *Session) writeControlLocked(msg tunnel.Message) error {
	s.control.SetWriteDeadline(time.Now().Add(tunnel.ConnectionWriteTimeout))
	err := tunnel.WriteFrame(s.control, msg)
	s.control.SetWriteDeadline(time.Time{})
	if err != nil {
		// A partly written frame leaves the control stream unreadable.
		s.Close()
		return fmt.Errorf("sending a %s message to client %s: %w", msg.Type, s.Hello.ClientID, err)
	}
	return nil
}

// Withdraw records that the server serves none of the ports in reasons,
// which s announced, each for the reason given, and serves the session's
// other ports. It tells the client about each port newly withdrawn, or
// withdrawn for a new reason, in one message per reason: a port that stays
// withdrawn across reloads is not reported again.
func (s *Session) Withdraw(reasons map[int]string) error {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	fresh := make(map[string][]int)
	for port, reason := range reasons {
		if told, ok := s.withdrawn[port]; !ok || told != reason {
			fresh[reason] = append(fresh[reason], port)
		}
	}
	s.withdrawn = maps.Clone(reasons)
	for _, reason := range slices.Sorted(maps.Keys(fresh)) {
		msg := tunnel.Message{Type: tunnel.TypeWithdraw, Ports: slices.Sorted(slices.Values(fresh[reason])), Reason: reason}
		if err := s.notifyLocked(msg); err != nil {
			return err
		}
	}
	return nil
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Streams is the number of data streams open now.
func (s *Session) Streams() int64 { return s.streams.Load() }

// Upstreams lists the announcement as status shows it: "host=url" for HTTP,
// "upstream" for TCP (the client's host:port).
func (s *Session) Upstreams() []string {
	out := make([]string, 0, len(s.Hello.HTTP)+len(s.Hello.TCP))
	for _, up := range s.Hello.HTTP {
		out = append(out, up.Host+"="+up.URL)
	}
	for _, up := range s.Hello.TCP {
		out = append(out, up.Upstream)
	}
	return out
}

// OpenStream opens a data stream to the client and writes its header.
func (s *Session) OpenStream(h tunnel.StreamHeader) (net.Conn, error) {
	st, err := s.mux.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("opening a stream to client %s: %w", s.Hello.ClientID, err)
	}
	if err := tunnel.WriteFrame(st, h); err != nil {
		st.Close()
		return nil, fmt.Errorf("writing a stream header to client %s: %w", s.Hello.ClientID, err)
	}
	s.streams.Add(1)
	return &dataStream{Stream: tunnel.Stream{Stream: st}, session: s}, nil
}

// dataStream counts itself out of its session's open streams once closed.
type dataStream struct {
	tunnel.Stream
	session *Session
	closed  atomic.Bool
}

func (d *dataStream) Close() error {
	if d.closed.CompareAndSwap(false, true) {
		d.session.streams.Add(-1)
	}
	return d.Stream.Close()
}

// DialAddress is the reverse_proxy dial address of announced HTTP host
// number index of a session. Keep-alive pools are keyed by it, so a pooled
// connection never outlives its session's routing.
func DialAddress(session uint64, index int) string {
	return "inlets-" + strconv.FormatUint(session, 10) + "-" + strconv.Itoa(index) + ":80"
}

// ParseDialAddress reverses DialAddress.
func ParseDialAddress(addr string) (session uint64, index int, ok bool) {
	rest, ok1 := strings.CutPrefix(addr, "inlets-")
	rest, ok2 := strings.CutSuffix(rest, ":80")
	sid, idx, ok3 := strings.Cut(rest, "-")
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, false
	}
	session, err1 := strconv.ParseUint(sid, 10, 64)
	index, err2 := strconv.Atoi(idx)
	return session, index, err1 == nil && err2 == nil
}

// yamuxLogger sends yamux's log lines to the registry's current logger at
// debug level: they describe peers going away, which is routine.
type yamuxLogger struct{ r *Registry }

func (l yamuxLogger) Print(v ...any) { l.r.Logger().Sugar().Debug(v...) }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.r.Logger().Sugar().Debugf(format, v...)
}
func (l yamuxLogger) Println(v ...any) { l.r.Logger().Sugar().Debugln(v...) }
