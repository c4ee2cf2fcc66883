package registry

import (
	"context"
	"crypto/sha256"
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

	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Session is one connected client.
type Session struct {
	// ID is unique among the sessions of this process and never reused.
	ID uint64
	// Hello is what the client announced.
	Hello tunnel.Hello
	// Protocol is the protocol version the session speaks.
	Protocol int
	// RemoteAddr is the client's address as the control plane saw it.
	RemoteAddr string
	// Since is when the session was accepted.
	Since time.Time
	// retired is set once the client has retired the session (see
	// Registry.Retire); the registry's mu guards its change.
	retired atomic.Bool
	// Tunnel is the name of the tunnel whose token the client presented,
	// or Unnamed for the default tunnel (an inlets handler's own token).
	Tunnel string

	// tokenDigest is the SHA-256 of the token the client presented.
	tokenDigest [sha256.Size]byte

	// dials holds, per announced HTTP host, the dial address the HTTP data
	// plane gives reverse_proxy for this session (see DialAddress).
	dials []string

	reg     *Registry
	sess    *tunnel.Session
	control *tunnel.Stream
	limits  Limits

	// down holds, for each announced HTTP host and then each TCP port, in
	// the Hello's order, until when (UnixNano) the client is taken not to
	// reach that upstream: it said so when a stream was opened.
	down []atomic.Int64

	// observedRTT is the round-trip time last observed in the metrics, in
	// nanoseconds.
	observedRTT atomic.Int64

	// accepted is set once the client has been told it is accepted.
	accepted atomic.Bool

	// controlMu serialises writes to the control stream and guards
	// pending and withdrawn.
	controlMu sync.Mutex
	// pending holds messages sent before the accept answer; they follow it.
	pending []tunnel.Message
	// withdrawn maps the announced ports the server does not serve now to
	// the reason the client was given.
	withdrawn map[Port]string
}

// Limits are what the accepting control plane allows a session.
type Limits struct {
	// Tunnel is the tunnel the client authenticated as, and TokenDigest
	// the SHA-256 of the token it presented.
	Tunnel      string
	TokenDigest [sha256.Size]byte

	// MaxStreams bounds the session's open data streams; 0: no bound.
	MaxStreams int
	// FailDuration is how long an upstream that the client could not
	// reach is avoided; 0: DefaultFailDuration.
	FailDuration time.Duration
}

// DefaultFailDuration is Limits.FailDuration's default.
const DefaultFailDuration = 5 * time.Second

// NewSession is a session that has read hello over sess, with ctrl its
// control stream, before it is admitted.
func (r *Registry) NewSession(sess *tunnel.Session, ctrl *tunnel.Stream, hello tunnel.Hello, protocol int, remoteAddr string, limits Limits) *Session {
	if limits.FailDuration <= 0 {
		limits.FailDuration = DefaultFailDuration
	}
	s := &Session{
		ID:          r.nextID.Add(1),
		Hello:       hello,
		Protocol:    protocol,
		RemoteAddr:  remoteAddr,
		Since:       time.Now(),
		Tunnel:      limits.Tunnel,
		tokenDigest: limits.TokenDigest,
		reg:         r,
		sess:        sess,
		control:     ctrl,
		limits:      limits,
		down:        make([]atomic.Int64, len(hello.HTTP)+len(hello.TCP)),
	}
	for i := range hello.HTTP {
		s.dials = append(s.dials, DialAddress(s.ID, i))
	}
	sess.SetMaxStreams(limits.MaxStreams)
	return s
}

// Admit registers s, unless the registry has max_clients sessions
// already (the config that started last set it) or the tunnels of the
// moment refuse it, and follows it: it is removed when it ends. It
// returns a *tunnel.Rejection to send the client, and registers nothing,
// when s cannot be admitted. A session that announces ports is admitted
// with Add, then Follow once its ports are open (package app's Admit).
func (r *Registry) Admit(s *Session) error {
	if err := r.Add(s); err != nil {
		return err
	}
	r.Follow(s)
	return nil
}

// Follow removes s from the registry when its session ends, and logs it;
// and retires it as soon as its client says so (a Go Away, as a client
// reloading its configuration sends once the session replacing it is
// up): see Registry.Retire.
func (r *Registry) Follow(s *Session) {
	s.sess.OnRetired(func() {
		r.Retire(s)
		r.Logger().Info("client retired its session: no new visitors go to it; its open streams go on",
			zap.String("remote_addr", s.RemoteAddr),
			zap.String("client_id", s.Hello.ClientID),
			zap.Uint64("session", s.ID),
			zap.Int64("streams", s.Streams()))
	})
	s.sess.Conn().OnClose(func() {
		r.Remove(s)
		fields := []zap.Field{
			zap.String("remote_addr", s.RemoteAddr),
			zap.String("client_id", s.Hello.ClientID),
			zap.Uint64("session", s.ID),
			zap.Duration("connected_for", time.Since(s.Since)),
		}
		if err := s.Err(); err != nil {
			fields = append(fields, zap.NamedError("reason", err))
		}
		r.Logger().Info("client disconnected", fields...)
	})
}

// Accept tells the client it is accepted, then sends what was notified
// while the handshake ran (a reload may withdraw ports meanwhile).
func (s *Session) Accept(serverVersion string) error {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	if err := tunnel.AcceptClient(s.control, serverVersion, s.Protocol); err != nil {
		return err
	}
	s.accepted.Store(true)
	for _, msg := range s.pending {
		if err := s.writeControlLocked(msg); err != nil {
			return err
		}
	}
	s.pending = nil
	return nil
}

// Close ends the session.
func (s *Session) Close() error { return s.sess.Close() }

// Disconnect tells an accepted client why the server ends its session
// (a "reject" on the control stream: its tunnel was deleted, its token
// rotated or expired), then ends it. The message goes out before the
// session's end; a client that does not read it within the control
// write's deadline just loses the session.
func (s *Session) Disconnect(rej *tunnel.Rejection) {
	s.controlMu.Lock()
	if s.accepted.Load() {
		_ = s.writeControlLocked(tunnel.Message{Type: tunnel.TypeReject, Code: rej.Code, Retry: rej.Retry, Reason: tunnel.TruncateReason(rej.Reason)})
	}
	s.controlMu.Unlock()
	s.Close()
}

// Err is why the session ended, when the server ended it: see
// tunnel.Session.Err.
func (s *Session) Err() error { return s.sess.Err() }

// Accepted reports whether the handshake is over and the client serves
// streams. A session is routable a moment before: the TCP data plane
// opens its ports first, so that a refused port refuses the session.
func (s *Session) Accepted() bool { return s.accepted.Load() }

// notifyLocked sends msg to the client on the control stream. Before the
// client has been accepted, msg is held and sent right after the accept
// answer. A write that fails or times out ends the session: the client
// reconnects and announces again.
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
func (s *Session) Withdraw(reasons map[Port]string) error {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	fresh := make(map[string][]Port)
	for port, reason := range reasons {
		if told, ok := s.withdrawn[port]; !ok || told != reason {
			fresh[reason] = append(fresh[reason], port)
		}
	}
	s.withdrawn = maps.Clone(reasons)
	for _, reason := range slices.Sorted(maps.Keys(fresh)) {
		msg := tunnel.Message{Type: tunnel.TypeWithdraw, Reason: reason}
		for _, p := range fresh[reason] {
			if p.UDP {
				msg.UDPPorts = append(msg.UDPPorts, p.Num)
			} else {
				msg.Ports = append(msg.Ports, p.Num)
			}
		}
		slices.Sort(msg.Ports)
		slices.Sort(msg.UDPPorts)
		if err := s.notifyLocked(msg); err != nil {
			return err
		}
	}
	return nil
}

// AnnounceShutdown tells the client the server is stopping: it reconnects
// promptly, to this server's successor, and keeps its other servers.
func (s *Session) AnnounceShutdown(reason string) error {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	return s.notifyLocked(tunnel.Message{Type: tunnel.TypeShutdown, Reason: reason})
}

// SendPeers tells the client the fleet's other servers (an empty list:
// none any more).
func (s *Session) SendPeers(peers []string) {
	s.controlMu.Lock()
	defer s.controlMu.Unlock()
	// A client that cannot take it loses its session (notify's deadline).
	_ = s.notifyLocked(tunnel.Message{Type: tunnel.TypePeers, Peers: peers})
}

// Port is a public port of the layer-4 data plane, TCP or UDP.
type Port struct {
	UDP bool
	Num int
}

// Ports lists the ports s announced: its TCP ports, then its UDP ports.
func (s *Session) Ports() []Port {
	out := make([]Port, 0, len(s.Hello.TCP)+len(s.Hello.UDP))
	for _, up := range s.Hello.TCP {
		out = append(out, Port{Num: up.Port})
	}
	for _, up := range s.Hello.UDP {
		out = append(out, Port{UDP: true, Num: up.Port})
	}
	return out
}

// Compare orders TCP ports before UDP ports, each by number.
func (p Port) Compare(q Port) int {
	if p.UDP != q.UDP {
		if q.UDP {
			return -1
		}
		return 1
	}
	return p.Num - q.Num
}

func (p Port) String() string {
	if p.UDP {
		return "udp/" + strconv.Itoa(p.Num)
	}
	return strconv.Itoa(p.Num)
}

// Streams is the number of data streams open now.
func (s *Session) Streams() int64 { return int64(s.sess.Streams()) }

// RTT is the round-trip time to the client the session measured last, 0
// before the first measurement.
func (s *Session) RTT() time.Duration { return s.sess.RTT() }

func (s *Session) logger() *zap.Logger { return s.reg.Logger() }

// Upstreams lists the announcement as status shows it: "host=url" for HTTP,
// "upstream" for TCP (the client's host:port), "udp://upstream" for UDP,
// "name=tls://upstream" for a TLS name.
func (s *Session) Upstreams() []string {
	out := make([]string, 0, len(s.Hello.HTTP)+len(s.Hello.TCP)+len(s.Hello.UDP)+len(s.Hello.TLS))
	for _, up := range s.Hello.HTTP {
		out = append(out, up.Host+"="+up.URL)
	}
	for _, up := range s.Hello.TCP {
		out = append(out, up.Upstream)
	}
	for _, up := range s.Hello.UDP {
		out = append(out, "udp://"+up.Upstream)
	}
	for _, up := range s.Hello.TLS {
		out = append(out, up.Name+"=tls://"+up.Upstream)
	}
	return out
}

// portIndex is the index in down of a TCP port the session announces;
// -1 if it does not announce the port.
func (s *Session) portIndex(port int) int {
	for i, up := range s.Hello.TCP {
		if up.Port == port {
			return len(s.Hello.HTTP) + i
		}
	}
	return -1
}

func (s *Session) up(i int) bool {
	return i < 0 || time.Now().UnixNano() >= s.down[i].Load()
}

// PortUp reports whether the client has not reported the upstream of port
// unreachable lately.
func (s *Session) PortUp(port int) bool { return s.up(s.portIndex(port)) }

// markDown has the upstream of down[i] avoided for the session's
// FailDuration.
func (s *Session) markDown(i int) {
	if i >= 0 {
		s.down[i].Store(time.Now().Add(s.limits.FailDuration).UnixNano())
	}
}

// UpstreamError is a client's report that it could not connect the
// upstream of a stream: nothing of the visitor's reached the upstream,
// so the visitor may be served by another client.
type UpstreamError struct {
	ClientID string
	Code     string
	Reason   string
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("tunnel client %s: %s: %s", e.ClientID, e.Code, e.Reason)
}

// Dial opens a data stream with header h for a visitor, offering it to
// sessions in turn (see tunnel.OpenData): it returns once the first that
// can open a stream has the header, without waiting for its client's
// reply, and moves the visitor to the next when a client replies that it
// could not take the stream. A client that reports its upstream
// unreachable has that upstream avoided for a while. When none is left,
// the error is the last one's. The sessions serve one host or port, so
// they are one tunnel's: the stream draws from that tunnel's bandwidth
// caps, if it has any.
func Dial(ctx context.Context, h tunnel.StreamHeader, sessions []*Session) (net.Conn, error) {
	var bw *bandwidth
	if len(sessions) > 0 && sessions[0].reg != nil {
		bw = sessions[0].reg.bandwidthOf(sessions[0].Tunnel)
	}
	var offered *Session
	next := func(refused error) (*tunnel.Session, error) {
		if offered != nil {
			err := offered.refusal(h, refused)
			if c := offered.logger().Check(zap.DebugLevel, "trying the next client"); c != nil {
				c.Write(zap.String("kind", h.Kind), zap.Uint64("session", offered.ID), zap.Error(err))
			}
			if len(sessions) == 0 {
				return nil, err
			}
		}
		if len(sessions) == 0 {
			return nil, errNoClient
		}
		offered, sessions = sessions[0], sessions[1:]
		return offered.sess, nil
	}
	conn, err := tunnel.OpenData(ctx, h, next)
	if err != nil {
		return nil, err
	}
	return throttle(conn, bw), nil
}

var errNoClient = errors.New("no tunnel client serves it")

// refusal is the error of the client's refusal of a stream with header
// h, and has an upstream it reports unreachable avoided for a while.
func (s *Session) refusal(h tunnel.StreamHeader, refused error) error {
	var re *tunnel.ReplyError
	if !errors.As(refused, &re) {
		if errors.Is(refused, tunnel.ErrStreamLimit) {
			return fmt.Errorf("client %s: the tunnel client has as many streams open as the server allows one client (max_streams_per_client %d)",
				s.Hello.ClientID, s.limits.MaxStreams)
		}
		return fmt.Errorf("client %s: %w", s.Hello.ClientID, refused)
	}
	if re.Code == tunnel.StreamUpstreamUnreachable {
		i := -1 // a UDP port's upstream is not followed: a UDP socket connects to anything
		switch h.Kind {
		case tunnel.KindHTTP:
			i = slices.IndexFunc(s.Hello.HTTP, func(up tunnel.HTTPUpstream) bool { return up.Host == h.Host })
		case tunnel.KindTCP:
			i = s.portIndex(h.Port)
		}
		s.markDown(i)
	}
	return &UpstreamError{ClientID: s.Hello.ClientID, Code: re.Code, Reason: re.Reason}
}

// DialAddress is the reverse_proxy dial address of announced HTTP host
// number index of a session. Keep-alive pools are keyed by it, so a pooled
// connection never outlives its session's routing.
func DialAddress(session uint64, index int) string {
	return "inlets-" + strconv.FormatUint(session, 10) + "-" + strconv.Itoa(index) + ":80"
}

// ParseDialAddress reverses DialAddress. It accepts only what
// DialAddress makes: decimal numbers without a sign.
func ParseDialAddress(addr string) (session uint64, index int, ok bool) {
	rest, ok1 := strings.CutPrefix(addr, "inlets-")
	rest, ok2 := strings.CutSuffix(rest, ":80")
	sid, idx, ok3 := strings.Cut(rest, "-")
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, false
	}
	session, err1 := strconv.ParseUint(sid, 10, 64)
	i, err2 := strconv.ParseUint(idx, 10, 16)
	if err1 != nil || err2 != nil || DialAddress(session, int(i)) != addr {
		return 0, 0, false // a sign, a leading zero: not DialAddress's
	}
	return session, int(i), true
}
