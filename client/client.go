// Package client is the inlets tunnel client: it dials the server's control
// plane, authenticates, announces its upstreams, and serves the streams the
// server opens by relaying them to those upstreams. It reconnects, with
// exponential backoff and jitter, until it is stopped.
package client

import (
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/caddy-inlets/caddy-inlets/internal/version"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Config configures a Client.
type Config struct {
	// URL of the server's control plane: ws:// or wss://. When it has no
	// path, tunnel.ConnectPath is used.
	URL string
	// Token is the server's bearer token.
	Token string
	// ID names this client in the server's status; generated when empty.
	ID string

	// HTTP lists the hosts to serve (HTTP mode).
	HTTP []tunnel.HTTPUpstream
	// TCP lists the ports to serve (TCP mode).
	TCP []tunnel.TCPUpstream

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
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts. Defaults: 250ms and 30s.
	MinBackoff, MaxBackoff time.Duration
}

// Client is a tunnel client. Run it with Run.
type Client struct {
	cfg    Config
	url    string
	hello  tunnel.Hello
	logger *slog.Logger
	dialer *websocket.Dialer

	http     map[string]*httpUpstream
	tcp      map[int]*tcpUpstream
	prefixed *prefixProxy // nil unless an HTTP upstream has a path prefix

	connected atomic.Bool
}

// New checks cfg and returns a client ready to Run.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", cfg.URL, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("server URL %q must start with ws:// or wss://", cfg.URL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = tunnel.ConnectPath
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
	c := &Client{
		cfg:    cfg,
		url:    u.String(),
		logger: cfg.Logger,
		dialer: &websocket.Dialer{
			Proxy:            http.ProxyFromEnvironment,
			HandshakeTimeout: cfg.DialTimeout,
			TLSClientConfig:  cfg.TLS,
		},
		hello: tunnel.Hello{
			ClientID: cfg.ID,
			Version:  version.Version(),
			Protocol: tunnel.ProtocolVersion,
			HTTP:     cfg.HTTP,
			TCP:      cfg.TCP,
		},
	}
	c.hello.Mode = tunnel.ModeHTTP
	if len(cfg.TCP) > 0 {
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

// ID is the client's ID.
func (c *Client) ID() string { return c.cfg.ID }

// Connected reports whether the server has accepted the current session.
func (c *Client) Connected() bool { return c.connected.Load() }

// RejectedError is the server's refusal of a connection or an announcement.
type RejectedError struct {
	// Status is the HTTP status of a refused upgrade, or 0 when the
	// handshake was refused.
	Status int
	Reason string
}

func (e *RejectedError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("server refused the connection (HTTP %d): %s", e.Status, e.Reason)
	}
	return "server rejected the tunnel: " + e.Reason
}

// Run connects and serves until ctx ends, reconnecting after every failure.
// It returns nil once ctx has ended.
func (c *Client) Run(ctx context.Context) error {
	if c.prefixed != nil {
		defer c.prefixed.close()
	}
	backoff := c.cfg.MinBackoff
	for {
		accepted, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if accepted {
			backoff = c.cfg.MinBackoff
		}
		// Full jitter around the backoff, so a restarted server is not
		// hit by every client at once.
		wait := backoff/2 + rand.N(backoff)
		c.logger.Warn("tunnel down; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// session runs one session. accepted reports whether the server accepted it.
func (c *Client) session(ctx context.Context) (accepted bool, err error) {
	mux, err := c.connect(ctx)
	if err != nil {
		return false, err
	}
	defer mux.Close()
	c.connected.Store(true)
	defer c.connected.Store(false)
	c.logger.Info("connected", "url", c.url, "client_id", c.cfg.ID, "upstreams", c.describe())

	go func() {
		select {
		case <-ctx.Done():
			mux.Close()
		case <-mux.CloseChan():
		}
	}()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return true, fmt.Errorf("session ended: %w", err)
		}
		go c.serveStream(st)
	}
}

// connect dials the server, upgrades, and performs the handshake.
func (c *Client) connect(ctx context.Context) (*yamux.Session, error) {
	header := http.Header{
		"Authorization":   {"Bearer " + c.cfg.Token},
		tunnel.ModeHeader: {c.hello.Mode},
	}
	ws, resp, err := c.dialer.DialContext(ctx, c.url, header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			reason := strings.TrimSpace(string(body))
			if reason == "" {
				reason = http.StatusText(resp.StatusCode)
			}
			if resp.StatusCode == http.StatusNotFound {
				reason += " (is " + c.url + " an inlets control plane?)"
			}
			return nil, &RejectedError{Status: resp.StatusCode, Reason: reason}
		}
		return nil, fmt.Errorf("connecting to %s: %w", c.url, err)
	}
	ws.NetConn().SetDeadline(time.Time{})
	mux, err := tunnel.ClientSession(tunnel.NewConn(ws, tunnel.ClientSide), nil)
	if err != nil {
		ws.Close()
		return nil, err
	}
	if err := c.handshake(ctx, mux); err != nil {
		mux.Close()
		return nil, err
	}
	return mux, nil
}

func (c *Client) handshake(ctx context.Context, mux *yamux.Session) error {
	actx, cancel := context.WithTimeout(ctx, tunnel.HandshakeTimeout)
	defer cancel()
	ctrl, err := mux.AcceptStreamWithContext(actx)
	if err != nil {
		return fmt.Errorf("waiting for the server's control stream: %w", err)
	}
	ctrl.SetDeadline(time.Now().Add(tunnel.HandshakeTimeout))
	if err := tunnel.WriteFrame(ctrl, c.hello); err != nil {
		return fmt.Errorf("sending hello: %w", err)
	}
	var answer tunnel.Message
	if err := tunnel.ReadFrame(ctrl, tunnel.MaxHandshakeSize, &answer); err != nil {
		return fmt.Errorf("reading the server's answer: %w", err)
	}
	switch answer.Type {
	case tunnel.TypeAccept:
	case tunnel.TypeReject:
		return &RejectedError{Reason: answer.Reason}
	default:
		return fmt.Errorf("unexpected answer %q from the server", answer.Type)
	}
	ctrl.SetDeadline(time.Time{})
	go c.watchControl(ctrl)
	return nil
}

// watchControl logs the server's later messages; the stream ends with the
// session.
func (c *Client) watchControl(ctrl *yamux.Stream) {
	defer ctrl.Close()
	for {
		var msg tunnel.Message
		if err := tunnel.ReadFrame(ctrl, tunnel.MaxHandshakeSize, &msg); err != nil {
			return
		}
		switch msg.Type {
		case tunnel.TypeWithdraw:
			c.logger.Warn("server stopped serving ports", "ports", msg.Ports, "reason", msg.Reason)
		default:
			c.logger.Info("message from server", "type", msg.Type, "reason", msg.Reason)
		}
	}
}

// serveStream reads a data stream's header and relays the stream.
func (c *Client) serveStream(st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(tunnel.HandshakeTimeout))
	var h tunnel.StreamHeader
	if err := tunnel.ReadFrame(st, tunnel.MaxStreamHeaderSize, &h); err != nil {
		c.logger.Warn("bad stream header", "error", err)
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	conn := tunnel.Stream{Stream: st}
	switch h.Kind {
	case tunnel.KindHTTP:
		c.serveHTTP(conn, h)
	case tunnel.KindTCP:
		c.serveTCP(conn, h)
	default:
		c.logger.Warn("unknown stream kind", "kind", h.Kind)
		st.Close()
	}
}

func (c *Client) describe() string {
	var parts []string
	for _, up := range c.cfg.HTTP {
		parts = append(parts, up.Host+"="+up.URL)
	}
	for _, up := range c.cfg.TCP {
		parts = append(parts, fmt.Sprintf("%d=%s", up.Port, up.Upstream))
	}
	return strings.Join(parts, ", ")
}

// newID returns 32 hex digits, the form of inlets client IDs.
func newID() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:])
	return hex.EncodeToString(b[:])
}
