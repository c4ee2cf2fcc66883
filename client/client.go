// Package client is the inlets tunnel client: it dials the server's control
// plane, authenticates, announces its upstreams, and serves the streams the
// server opens by relaying them to those upstreams. It reconnects, with
// exponential backoff and jitter, until it is stopped.
package client

import (
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-inlets/caddy-inlets/internal/version"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Config configures a Client.
type Config struct {
	// URL of the server's control plane: ws:// or wss://. When it has no
	// path, tunnel.ConnectPath is used.
	URL string
	// URLs are more servers of the same fleet. The client keeps a session
	// to each server: to every URL, and to every address a URL's host
	// name resolves to (see ResolveInterval), at most MaxSessions.
	URLs []string
	// ResolveInterval is how often the URLs' host names are resolved
	// again, so that a server added to the name gets a session. Default
	// 30s.
	ResolveInterval time.Duration
	// LookupHost resolves the URLs' host names; nil is the system's
	// resolver (net.DefaultResolver.LookupHost).
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Token is the server's bearer token.
	Token string
	// ID names this client in the server's status; generated when empty.
	ID string

	// HTTP lists the hosts to serve (HTTP mode).
	HTTP []tunnel.HTTPUpstream
	// TCP lists the TCP ports to serve (TCP mode).
	TCP []tunnel.TCPUpstream
	// UDP lists the UDP ports to serve (TCP mode, with or without TCP
	// ports).
	UDP []tunnel.UDPUpstream
	// TLS lists the TLS server names to serve (TCP mode): connections a
	// caddy-l4 route of the server passes through by server name.
	SNI []tunnel.TLSUpstream

	// TLS configures wss:// connections to the server (private CAs,
	// InsecureSkipVerify for testing). Nil uses the system's roots.
	TLS *tls.Config
	// UpstreamTLS configures connections to https:// upstreams. Nil uses
	// the system's roots.
	UpstreamTLS *tls.Config

	// Logger receives what the client does; nil logs to standard error.
	Logger *slog.Logger

	// DialTimeout bounds dialing the server and each upstream. Default 10s.
	DialTimeout time.Duration

	// Peers are the hosts, besides those under the domain of a server
	// given in URL or URLs, that a server may advertise as its fleet's
	// peers: a host name, *.domain, or an IP address (see trustPeer).
	Peers []string

	// MaxUnread bounds, in bytes, what the servers have sent on streams
	// that the upstreams have not taken yet, all sessions together, as a
	// bound: 256 KiB for each stream whose upstream is not waiting for
	// data, plus what the streams' windows have grown (growth stops at
	// half of it). Past three quarters of it, the streams whose upstreams
	// have not taken data for longest are reset (see tunnel.Budget): an
	// upstream that stops reading cannot make the client hold more,
	// whatever its visitors send. Default DefaultMaxUnread.
	MaxUnread int64
	// MaxStreamWindow is the largest receive window a stream grows to
	// (see tunnel.Config). Default tunnel.DefaultMaxStreamWindow.
	MaxStreamWindow uint32
	// MaxStreams bounds the streams each server may have open at once on
	// its session: past it, a new stream is reset at once, counted and
	// logged, and the session goes on. Each open stream costs the client
	// about 12 KiB besides what it holds unread (see MaxUnread), waiting
	// for its header at most tunnel.HandshakeTimeout. Default
	// DefaultMaxStreams.
	MaxStreams int
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts. Defaults: 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultMaxUnread is Config.MaxUnread's default: fit for a small device,
// a quarter of the server's default.
const DefaultMaxUnread = 64 << 20

// DefaultMaxStreams is Config.MaxStreams's default: the server's default
// max_streams_per_client.
const DefaultMaxStreams = 10000

// Client is a tunnel client. Run it with Run.
type Client struct {
	cfg    Config
	url    string   // the first of urls
	urls   []string // every server URL, normalized
	hello  tunnel.Hello
	logger *slog.Logger
	dialer *websocket.Dialer

	http     map[string]*httpUpstream
	tcp      map[int]*tcpUpstream
	udp      map[int]string    // UDP port -> upstream host:port
	tls      map[string]string // TLS name -> upstream host:port
	prefixed *prefixProxy      // nil unless an HTTP upstream has a path prefix

	// mux is the configuration of every session, with the budget they
	// share.
	mux tunnel.Config

	// badHeaderLogged is when a bad stream header was last logged.
	badHeaderLogged atomic.Int64

	// connected counts the sessions the servers have accepted now.
	connected atomic.Int64
	// refused is the last refusal that retrying cannot help.
	refused atomic.Pointer[RejectedError]
	// drained is closed by Drain: a session that ends is not replaced,
	// and a server in backoff is not dialled again.
	drained   chan struct{}
	drainOnce sync.Once
	fleet     fleet
}

// New checks cfg and returns a client ready to Run.
func New(cfg Config) (*Client, error) {
	var urls []string
	for _, raw := range append([]string{cfg.URL}, cfg.URLs...) {
		u, err := parseServerURL(raw)
		if err != nil {
			return nil, err
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = tunnel.ConnectPath
		}
		if !slices.Contains(urls, u.String()) {
			urls = append(urls, u.String())
		}
	}
	if len(urls) > MaxSessions {
		return nil, fmt.Errorf("%d server URLs: a client keeps at most %d sessions", len(urls), MaxSessions)
	}
	if cfg.Token == "" {
		return nil, errors.New("no token: pass the server's token with --token or --token-file")
	}
	if cfg.ID == "" {
		cfg.ID = newID()
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ResolveInterval == 0 {
		cfg.ResolveInterval = 30 * time.Second
	}
	if cfg.LookupHost == nil {
		cfg.LookupHost = net.DefaultResolver.LookupHost
	}
	if cfg.MaxUnread == 0 {
		cfg.MaxUnread = DefaultMaxUnread
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxStreams < 0 {
		return nil, fmt.Errorf("--max-streams %d: at least 1", cfg.MaxStreams)
	}
	if cfg.MaxUnread < 1<<20 {
		return nil, fmt.Errorf("--max-unread %d: at least 1 MiB", cfg.MaxUnread)
	}
	mux := tunnel.Config{MaxStreamWindow: cfg.MaxStreamWindow, Budget: tunnel.NewBudget(cfg.MaxUnread)}
	if err := tunnel.VerifyConfig(mux); err != nil {
		return nil, err
	}
	var shedLogged atomic.Int64 // UnixNano
	var shed atomic.Int64
	mux.Budget.OnShed = func(_ *tunnel.Stream, away time.Duration) {
		if n := shed.Add(1); sometimes(&shedLogged) {
			cfg.Logger.Warn("reset a stream whose upstream stopped taking data, to stay within --max-unread (said at most once a minute)",
				"away", away.Round(time.Millisecond), "reset_so_far", n, "max_unread", cfg.MaxUnread)
		}
	}
	c := &Client{
		drained: make(chan struct{}),
		cfg:     cfg,
		mux:     mux,
		url:     urls[0],
		urls:    urls,
		logger:  cfg.Logger,
		dialer: &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: cfg.DialTimeout,
			TLSClientConfig:  cfg.TLS,
		},
		hello: tunnel.Hello{
			ClientID:    cfg.ID,
			Version:     version.Version(),
			Protocol:    tunnel.ProtocolVersion,
			MinProtocol: tunnel.MinProtocolVersion,
			HTTP:        cfg.HTTP,
			TCP:         cfg.TCP,
			UDP:         cfg.UDP,
			TLS:         cfg.SNI,
		},
	}
	c.hello.Mode = tunnel.ModeHTTP
	if len(cfg.TCP)+len(cfg.UDP)+len(cfg.SNI) > 0 {
		c.hello.Mode = tunnel.ModeTCP
	}
	if err := c.hello.Validate(); err != nil {
		return nil, err
	}
	if err := c.buildUpstreams(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseServerURL checks the server's URL, with the fix for the mistakes
// a newcomer makes.
func parseServerURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		return nil, fmt.Errorf("--url %s has no scheme: write ws://%s, or wss://%s for a server with HTTPS", raw, raw, raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--url %q: %v", raw, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		return nil, fmt.Errorf("--url %s: the client speaks WebSocket: write ws://%s", raw, strings.TrimPrefix(raw, "http://"))
	case "https":
		return nil, fmt.Errorf("--url %s: the client speaks WebSocket: write wss://%s", raw, strings.TrimPrefix(raw, "https://"))
	default:
		return nil, fmt.Errorf("--url %s must start with ws:// or wss://", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("--url %s has no host", raw)
	}
	return u, nil
}

// Hint is the fix for an error that dialing a server gives, or "": a
// certificate the client does not trust, or a scheme that is not the
// port's.
func Hint(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var hostname x509.HostnameError
	var record tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return "the server's certificate is signed by a CA this machine does not trust: give that CA with --tls-ca FILE (or, to test only, --insecure-skip-verify)"
	case errors.As(err, &hostname):
		return "the server's certificate is for another name: use the name it was issued for in --url (or, to test only, --insecure-skip-verify)"
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, or not for a server): renew it, or, to test only, --insecure-skip-verify"
	case errors.As(err, &record):
		return "the server speaks plain HTTP on this port: use ws:// rather than wss://"
	}
	return ""
}

// ID is the client's ID.
func (c *Client) ID() string { return c.cfg.ID }

// Connected reports whether a server has accepted a session now.
func (c *Client) Connected() bool { return c.connected.Load() > 0 }

// Refused is the last refusal of a server that retrying cannot help (a
// host or port the server does not allow, a wrong token, an old
// protocol), nil if there was none.
func (c *Client) Refused() *RejectedError { return c.refused.Load() }

// Sessions is how many servers have accepted a session now.
func (c *Client) Sessions() int { return int(c.connected.Load()) }

// RejectedError is the server's refusal of a connection or an announcement.
type RejectedError struct {
	// Status is the HTTP status of a refused upgrade, or 0 when the
	// handshake was refused.
	Status int
	// Code and Retry are the rejection's code and retry class
	// (tunnel.Reject* and tunnel.Retry*).
	Code  string
	Retry string
	// RetryAfter is how long the server asked the client to wait (429).
	RetryAfter time.Duration
	Reason     string
	// Disconnected is whether the server had accepted the session, and
	// ended it later (its tunnel deleted, its token rotated).
	Disconnected bool
}

func (e *RejectedError) Error() string {
	switch {
	case e.Status != 0:
		return fmt.Sprintf("server refused the connection (HTTP %d): %s", e.Status, e.Reason)
	case e.Disconnected:
		return "server disconnected the tunnel: " + e.Reason
	}
	return "server rejected the tunnel: " + e.Reason
}

// Run connects and serves until ctx ends, reconnecting after every failure.
// It returns nil once ctx has ended.
//
// Between attempts it waits a backoff that doubles from MinBackoff to
// MaxBackoff after each failure, and is reset once a session has been
// accepted; each wait is drawn between half the backoff and the whole
// (equal jitter), so that a restarted server is not hit by every client
// at once. A rejection that says retrying helps at once (the server is
// shutting down, and its successor takes clients) is retried after
// MinBackoff; one that says it cannot help waits MaxBackoff, and the
// client says so; a 429 waits what the server asked. A client with
// several servers backs off at most fleetMaxBackoff from each, but for
// the refusals that retrying cannot help.
func (c *Client) Run(ctx context.Context) error {
	if c.prefixed != nil {
		defer c.prefixed.close()
	}
	return c.runFleet(ctx)
}

// Drain retires the client gracefully, as a reload that replaces it does:
// it tells every server to open no more streams on the client's sessions
// (a yamux Go Away: the server offers new visitors to its other clients,
// such as the one that replaces this one), serves the streams open on
// them until they end, and returns when none is left or ctx ends. A
// session that ends meanwhile is not replaced. Cancel Run's context
// after it, to close the sessions.
func (c *Client) Drain(ctx context.Context) {
	c.drainOnce.Do(func() { close(c.drained) })
	sessions := func() []*tunnel.Session {
		c.fleet.mu.Lock()
		defer c.fleet.mu.Unlock()
		var out []*tunnel.Session
		for _, srv := range c.fleet.servers {
			if sess := srv.sess.Load(); sess != nil {
				out = append(out, sess)
			}
		}
		return out
	}
	for _, s := range sessions() {
		// Queued behind the session's data at worst; a session that
		// ends meanwhile fails it.
		go s.GoAway()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		open := 0
		for _, s := range sessions() {
			open += s.Streams()
		}
		if open == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// draining reports whether Drain was called.
func (c *Client) draining() bool {
	select {
	case <-c.drained:
		return true
	default:
		return false
	}
}

// fleetMaxBackoff caps the backoff of a client with several servers: a
// server of a fleet that comes back, whatever its outage lasted, has its
// clients back within about 4 s of listening, before a load balancer
// sends it visitors. A lone server's clients back off to MaxBackoff.
const fleetMaxBackoff = 4 * time.Second

// runServer keeps a session to one server until ctx ends, with its own
// backoff: one server failing never holds up another's session.
func (c *Client) runServer(ctx context.Context, srv *server) error {
	backoff := c.cfg.MinBackoff
	for {
		if c.draining() {
			return nil
		}
		accepted, err := c.session(ctx, srv)
		if ctx.Err() != nil || c.draining() {
			return nil
		}
		if accepted {
			backoff = c.cfg.MinBackoff
		}
		if srv.restarting() {
			// Its successor listens soon: back off no more than a second.
			backoff = min(max(backoff, c.cfg.MinBackoff), time.Second)
		}
		if srv.several.Load() {
			backoff = min(backoff, fleetMaxBackoff)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, c.cfg.MaxBackoff)
		if srv.restarting() {
			backoff = min(backoff, time.Second)
		}
		var rej *RejectedError
		logger := srv.logger(c.logger)
		switch {
		case !errors.As(err, &rej):
			logger.Warn("tunnel down; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond))
		case rej.Retry == tunnel.RetryNow:
			wait = c.cfg.MinBackoff
			logger.Warn("server asked the client to reconnect", "reason", rej.Reason, "retry_in", wait.Round(time.Millisecond))
		case rej.Retry == tunnel.RetryNever:
			c.refused.Store(rej)
			wait = c.cfg.MaxBackoff
			logger.Error("server refuses this client, and trying again cannot help until its operator, or yours, changes something; trying every "+wait.String()+" meanwhile",
				"error", rej.Error(), "code", rej.Code)
		default:
			if rej.RetryAfter > 0 {
				wait = min(rej.RetryAfter, c.cfg.MaxBackoff)
			}
			logger.Warn("server refused the client for now; trying again", "error", rej.Error(), "code", rej.Code, "retry_in", wait.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.drained:
			return nil
		case <-time.After(wait):
		}
	}
}

// session runs one session. accepted reports whether the server accepted it.
func (c *Client) session(ctx context.Context, srv *server) (accepted bool, err error) {
	sess, told, err := c.connect(ctx, srv)
	if err != nil {
		return false, err
	}
	defer sess.Close()
	c.connected.Add(1)
	srv.up.Store(true)
	srv.sess.Store(sess)
	defer func() {
		srv.sess.Store(nil)
		srv.up.Store(false)
		c.connected.Add(-1)
	}()
	if c.draining() {
		sess.GoAway()
	}
	srv.logger(c.logger).Info("connected", "url", srv.url, "client_id", c.cfg.ID, "upstreams", c.describe())
	if slices.Contains(c.urls, srv.url) {
		defer c.peersSessionEnded(srv, srv.logger(c.logger))
	}

	go func() {
		select {
		case <-ctx.Done():
			sess.Close()
		case <-sess.Done():
		}
	}()
	// Accepting a stream waits for yamux to send its acknowledgement,
	// which queues behind the data of the streams already busy: several
	// acceptors keep a busy client from taking new streams one at a time.
	sess.SetMaxStreams(c.cfg.MaxStreams)
	var refusedLogged atomic.Int64 // UnixNano
	sess.OnRefusedStream(func(n int64) {
		if sometimes(&refusedLogged) {
			srv.logger(c.logger).Warn("the server opened more streams at once than this client takes; reset them", "refused_so_far", n, "max_streams", c.cfg.MaxStreams)
		}
	})
	errs := make(chan error, acceptors)
	for range acceptors {
		go func() {
			for {
				st, err := sess.Accept(context.Background())
				if err != nil {
					errs <- err
					return
				}
				goServe(func() { c.serveStream(st) })
			}
		}()
	}
	err = <-errs
	sess.Close()
	for range acceptors - 1 {
		<-errs
	}
	// What the server said last, read once the session ended: why it
	// ended the session, if it said.
	select {
	case rej := <-told:
		if rej != nil {
			return true, rej
		}
	case <-time.After(time.Second):
	}
	return true, fmt.Errorf("session ended: %w", err)
}

// acceptors is how many streams a client may be accepting at once.
const acceptors = 32

// sometimes reports whether a minute has passed since it last said yes
// with last (a UnixNano, 0 at first): a bound on repeated log lines.
func sometimes(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return (prev == 0 || now-prev >= int64(time.Minute)) && last.CompareAndSwap(prev, now)
}

// connect dials the server, upgrades, and performs the handshake. told
// has, once the control stream ends, why the server ended the session
// (nil if it did not say).
func (c *Client) connect(ctx context.Context, srv *server) (sess *tunnel.Session, told <-chan *RejectedError, err error) {
	header := http.Header{
		"Authorization":   {"Bearer " + c.cfg.Token},
		tunnel.ModeHeader: {c.hello.Mode},
	}
	ws, resp, err := srv.dialer.DialContext(ctx, srv.url, header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, nil, c.refusal(srv.url, resp)
		}
		if hint := Hint(err); hint != "" {
			return nil, nil, fmt.Errorf("connecting to %s: %w: %s", srv, err, hint)
		}
		return nil, nil, fmt.Errorf("connecting to %s: %w", srv, err)
	}
	ws.NetConn().SetDeadline(time.Time{})
	sess, err = tunnel.ClientSession(tunnel.NewConn(ws, tunnel.ClientSide), c.mux)
	if err != nil {
		ws.Close()
		return nil, nil, err
	}
	ctrl, _, err := tunnel.SendHello(ctx, sess, c.hello)
	if err != nil {
		sess.Close()
		var rej *tunnel.Rejection
		if errors.As(err, &rej) {
			return nil, nil, &RejectedError{Code: rej.Code, Retry: rej.Retry, Reason: rej.Reason}
		}
		return nil, nil, err
	}
	if slices.Contains(c.urls, srv.url) {
		// Before the control stream's first message, which may be peers.
		c.peersSessionStarted(srv, srv.logger(c.logger))
	}
	rejected := make(chan *RejectedError, 1)
	go func() { rejected <- c.watchControl(ctrl, sess, srv, srv.logger(c.logger)) }()
	return sess, rejected, nil
}

// refusal is the error of an upgrade the server answered with another
// status than 101.
func (c *Client) refusal(url string, resp *http.Response) *RejectedError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, tunnel.MaxReasonLen))
	resp.Body.Close()
	rej := &RejectedError{Status: resp.StatusCode, Reason: strings.TrimSpace(string(body)), Retry: tunnel.RetryLater}
	if rej.Reason == "" {
		rej.Reason = http.StatusText(resp.StatusCode)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		rej.Retry = tunnel.RetryNever
	case resp.StatusCode == http.StatusTooManyRequests:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			rej.RetryAfter = time.Duration(s) * time.Second
		}
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(rej.Reason, "HTTP request to an HTTPS server"):
		rej.Retry = tunnel.RetryNever
		rej.Reason += " (the server speaks HTTPS on this port: use wss:// rather than ws://)"
	case resp.StatusCode < 500 && !strings.HasPrefix(rej.Reason, "inlets:"):
		// An answer that is not the inlets handler's: another site,
		// another path.
		rej.Retry = tunnel.RetryNever
		rej.Reason = fmt.Sprintf("%s is not an inlets control plane (it answered HTTP %d): give --url the address of the site with the inlets directive (its path is %s unless you gave another)",
			url, resp.StatusCode, tunnel.ConnectPath)
	}
	return rej
}

// watchControl logs the server's later messages until the stream ends
// with the session, and returns the rejection that ended it, if the
// server sent one.
func (c *Client) watchControl(ctrl *tunnel.Stream, sess *tunnel.Session, srv *server, logger *slog.Logger) *RejectedError {
	for {
		var msg tunnel.Message
		if err := tunnel.ReadFrame(ctrl, tunnel.MaxHandshakeSize, &msg); err != nil {
			return nil
		}
		switch msg.Type {
		case tunnel.TypeReject:
			// The server ends the session after it; runServer says why.
			sess.Close()
			retry := msg.Retry
			if retry == "" {
				retry = tunnel.RetryOf(msg.Code)
			}
			return &RejectedError{Code: tunnel.TruncateReason(msg.Code), Retry: retry, Reason: tunnel.TruncateReason(msg.Reason), Disconnected: true}
		case tunnel.TypePeers:
			c.advertised(srv, msg.Peers, logger)
		case tunnel.TypeShutdown:
			srv.shutdownAt.Store(time.Now().UnixNano())
			logger.Warn("server is shutting down; reconnecting to it promptly, the other servers keep serving", "reason", tunnel.TruncateReason(msg.Reason))
		case tunnel.TypeWithdraw:
			var attrs []any
			if len(msg.Ports) > 0 {
				attrs = append(attrs, "ports", msg.Ports)
			}
			if len(msg.UDPPorts) > 0 {
				attrs = append(attrs, "udp_ports", msg.UDPPorts)
			}
			logger.Warn("server stopped serving ports", append(attrs, "reason", tunnel.TruncateReason(msg.Reason))...)
		default:
			// Unknown message types are for newer clients: ignored.
			logger.Debug("message from server", "type", tunnel.TruncateReason(msg.Type))
		}
	}
}

// serveStream reads a data stream's header, connects the stream's
// upstream, tells the server whether it could, and relays the stream.
func (c *Client) serveStream(st *tunnel.Stream) {
	st.SetReadDeadline(time.Now().Add(tunnel.HandshakeTimeout))
	var h tunnel.StreamHeader
	if err := tunnel.ReadFrame(st, tunnel.MaxStreamHeaderSize, &h); err != nil {
		// A stream the server reset or closed before its header (its
		// visitor left) is routine; anything else is not.
		if errors.Is(err, tunnel.ErrStreamReset) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			c.logger.Debug("stream ended before its header", "error", err)
		} else if sometimes(&c.badHeaderLogged) {
			c.logger.Warn("bad stream header (said at most once a minute)", "error", err)
		}
		st.Reset()
		return
	}
	st.SetReadDeadline(time.Time{})
	switch h.Kind {
	case tunnel.KindHTTP:
		c.serveHTTP(st, h)
	case tunnel.KindTCP:
		c.serveTCP(st, h)
	case tunnel.KindUDP:
		c.serveUDP(st, h)
	case tunnel.KindTLS:
		c.serveTLS(st, h)
	default:
		c.logger.Warn("server sent a stream of a kind this client does not know: upgrade the client", "kind", tunnel.TruncateReason(h.Kind))
		reply(st, tunnel.StreamUnknownKind, "this client does not know streams of kind "+h.Kind)
	}
}

// reply answers a stream's header (see tunnel.Reply): it reports whether
// the stream goes on.
func reply(st *tunnel.Stream, code, reason string) bool {
	return tunnel.Reply(st, code, reason) == nil
}

func (c *Client) describe() string {
	var parts []string
	for _, up := range c.cfg.HTTP {
		parts = append(parts, up.Host+"="+up.URL)
	}
	for _, up := range c.cfg.TCP {
		parts = append(parts, fmt.Sprintf("%d=%s", up.Port, up.Upstream))
	}
	for _, up := range c.cfg.UDP {
		parts = append(parts, fmt.Sprintf("udp/%d=%s", up.Port, up.Upstream))
	}
	for _, up := range c.cfg.SNI {
		parts = append(parts, up.Name+"=tls://"+up.Upstream)
	}
	return strings.Join(parts, ", ")
}

// newID returns 32 hex digits, the form of inlets client IDs.
func newID() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}
