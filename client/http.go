package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// httpUpstream is where one announced host goes.
type httpUpstream struct {
	host string
	url  *url.URL
	// addr is the host:port to dial.
	addr string
	// prefixed upstreams have a path prefix, so requests are rewritten by
	// a reverse proxy; the others are relayed byte for byte.
	prefixed bool
}

func (c *Client) buildUpstreams() error {
	c.http = make(map[string]*httpUpstream, len(c.cfg.HTTP))
	for _, up := range c.cfg.HTTP {
		u, err := tunnel.ParseUpstreamURL(up.URL)
		if err != nil {
			return err
		}
		addr := u.Host
		if u.Port() == "" {
			port := "80"
			if u.Scheme == tunnel.SchemeHTTPS || u.Scheme == tunnel.SchemeH2 {
				port = "443"
			}
			addr = net.JoinHostPort(u.Hostname(), port)
		}
		hu := &httpUpstream{host: up.Host, url: u, addr: addr, prefixed: strings.Trim(u.Path, "/") != ""}
		c.http[up.Host] = hu
		if hu.prefixed && c.prefixed == nil {
			c.prefixed = newPrefixProxy(c)
		}
	}
	c.tcp = make(map[int]*tcpUpstream, len(c.cfg.TCP))
	for _, up := range c.cfg.TCP {
		if _, _, err := net.SplitHostPort(up.Upstream); err != nil {
			return fmt.Errorf("TCP upstream %q for port %d: %w", up.Upstream, up.Port, err)
		}
		c.tcp[up.Port] = &tcpUpstream{port: up.Port, addr: up.Upstream}
	}
	c.udp = make(map[int]string, len(c.cfg.UDP))
	for _, up := range c.cfg.UDP {
		if _, _, err := net.SplitHostPort(up.Upstream); err != nil {
			return fmt.Errorf("UDP upstream %q for port %d: %w", up.Upstream, up.Port, err)
		}
		c.udp[up.Port] = up.Upstream
	}
	c.tls = make(map[string]string, len(c.cfg.SNI))
	for _, up := range c.cfg.SNI {
		if _, _, err := net.SplitHostPort(up.Upstream); err != nil {
			return fmt.Errorf("upstream %q for TLS name %s: %w", up.Upstream, up.Name, err)
		}
		c.tls[up.Name] = up.Upstream
	}
	return nil
}

// dialHTTP connects to an upstream, over TLS for https:// and h2://. The
// stream carries the HTTP the server speaks for the host: HTTP/1.1, or
// HTTP/2 for h2c:// and h2:// (see tunnel.HTTPUpstream.HTTP2), so that is
// all TLS may negotiate.
func (c *Client) dialHTTP(ctx context.Context, up *httpUpstream) (net.Conn, error) {
	d := &net.Dialer{Timeout: c.cfg.DialTimeout}
	proto := "http/1.1"
	switch up.url.Scheme {
	case tunnel.SchemeHTTP, tunnel.SchemeH2C:
		return d.DialContext(ctx, "tcp", up.addr)
	case tunnel.SchemeH2:
		proto = "h2"
	}
	td := &tls.Dialer{NetDialer: d, Config: c.upstreamTLS(up.url.Hostname(), proto)}
	conn, err := td.DialContext(ctx, "tcp", up.addr)
	noH2 := fmt.Errorf("%s did not agree to HTTP/2 (ALPN h2) over TLS: for an HTTP/1.1 upstream, write https://%s", up.url.String(), up.url.Host)
	if err != nil {
		// A server with protocols of its own, none of them h2, ends the
		// handshake with this alert.
		if proto == "h2" && strings.Contains(err.Error(), "no application protocol") {
			return nil, fmt.Errorf("%w (%v)", noH2, err)
		}
		return nil, err
	}
	if got := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; proto == "h2" && got != "h2" {
		conn.Close()
		return nil, noH2
	}
	return conn, nil
}

// upstreamTLS is the TLS configuration of an upstream with serverName,
// offering only proto by ALPN.
func (c *Client) upstreamTLS(serverName, proto string) *tls.Config {
	var cfg *tls.Config
	if c.cfg.UpstreamTLS != nil {
		cfg = c.cfg.UpstreamTLS.Clone()
	} else {
		cfg = new(tls.Config)
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	cfg.NextProtos = []string{proto}
	return cfg
}

// serveHTTP relays an HTTP stream to the upstream of the host it was
// opened for.
func (c *Client) serveHTTP(st *tunnel.Stream, h tunnel.StreamHeader) {
	up := c.http[h.Host]
	if up == nil {
		c.logger.Warn("server sent a stream for a host this client does not serve", "host", tunnel.TruncateReason(h.Host))
		reply(st, tunnel.StreamUnknownTarget, "the tunnel client does not serve "+h.Host)
		return
	}
	if up.prefixed {
		// The prefix proxy dials for each request, and answers 502
		// itself when it cannot.
		if reply(st, "", "") {
			c.prefixed.serve(st, up)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout)
	upstream, err := c.dialHTTP(ctx, up)
	cancel()
	if err != nil {
		c.logger.Error("upstream unreachable", "host", h.Host, "upstream", up.url.String(), "error", err)
		reply(st, tunnel.StreamUpstreamUnreachable, "the tunnel client could not reach the upstream for "+h.Host)
		return
	}
	if !reply(st, "", "") {
		upstream.Close()
		return
	}
	tunnel.Join(st, upstream, 0)
}

// prefixProxy serves the streams of upstreams with a path prefix through
// an HTTP reverse proxy that rewrites each request's path onto the prefix.
type prefixProxy struct {
	ln     *streamListener
	server *http.Server
}

type upstreamKey struct{}

func newPrefixProxy(c *Client) *prefixProxy {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dialHTTP(ctx, ctx.Value(upstreamKey{}).(*httpUpstream))
		},
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dialHTTP(ctx, ctx.Value(upstreamKey{}).(*httpUpstream))
		},
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     2 * time.Minute,
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			up := pr.In.Context().Value(upstreamKey{}).(*httpUpstream)
			pr.SetURL(up.url)
			// Keep what the server's reverse proxy set: the visitor's
			// Host and its X-Forwarded-* headers.
			pr.Out.Host = pr.In.Host
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Values(k); len(v) > 0 {
					pr.Out.Header[k] = v
				}
			}
		},
		Transport:     transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			up := r.Context().Value(upstreamKey{}).(*httpUpstream)
			c.logger.Error("upstream unreachable", "host", up.host, "upstream", up.url.String(), "error", err)
			http.Error(w, "502 Bad Gateway: the tunnel client could not reach the upstream for "+up.host, http.StatusBadGateway)
		},
	}
	p := &prefixProxy{ln: newStreamListener()}
	p.server = &http.Server{
		Handler: proxy,
		ConnContext: func(ctx context.Context, conn net.Conn) context.Context {
			return context.WithValue(ctx, upstreamKey{}, conn.(*upstreamConn).up)
		},
		ReadHeaderTimeout: time.Minute,
	}
	go p.server.Serve(p.ln)
	return p
}

// upstreamConn is a stream bound for a given upstream.
type upstreamConn struct {
	*tunnel.Stream
	up *httpUpstream
}

func (p *prefixProxy) serve(conn *tunnel.Stream, up *httpUpstream) {
	if !p.ln.push(&upstreamConn{Stream: conn, up: up}) {
		conn.Close()
	}
}

func (p *prefixProxy) close() {
	p.server.Close()
}

// streamListener hands streams to an http.Server.
type streamListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newStreamListener() *streamListener {
	return &streamListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *streamListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return tunnelAddr{} }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "inlets" }
func (tunnelAddr) String() string  { return "inlets-tunnel" }
