// Package l4inlets is caddy-inlets' handler for caddy-l4 (the layer4 app
// and its listener wrapper, github.com/mholt/caddy-l4):
// layer4.handlers.inlets passes a visitor's TLS connection, untouched, to
// a tunnel client that announced the connection's server name, which
// relays it to an upstream that terminates TLS itself. One public port
// can so serve Caddy's own HTTPS sites and pass other names through.
//
// It is named as caddy-l4's own handler packages are (l4proxy, l4echo);
// package layer4 is caddy-l4's, and l4ports is the data plane on ports of
// caddy-inlets' own.
package l4inlets

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/layer4/l4ports"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// ServerNamePlaceholder is where caddy-l4's tls matcher leaves the
// server name of the ClientHello it matched.
const ServerNamePlaceholder = "{l4.tls.server_name}"

// DefaultHandshakeTimeout lets go a TLS passthrough visitor that has not
// finished its handshake after this long with no byte moving: a TLS
// handshake over any link takes a few round trips, not minutes.
const DefaultHandshakeTimeout = 10 * time.Second

// Handler routes a TLS connection by its server name to the tunnel
// clients that announced it (`inlets tcp client --sni NAME`): the exact
// name if a client announced it, else the one-label wildcard that
// matches ("*.k8s.example.com"), among the clients of the tunnel that owns
// the name. A route's tls matcher must have read the ClientHello, as
// `@passthrough tls sni *.k8s.example.com` does; the ClientHello and
// everything after it reach the client's upstream as the visitor sent
// them.
//
// Any other connection goes by the port it came to, to the clients that
// announced that TCP port (`--ports`), or for a UDP server of the layer4
// app, that UDP port (`--udp-ports`): a layer4 server's ports are served
// through its routes, and the TCP data plane (the inlets app's tcp) does not listen on them
// itself, so every caddy-l4 matcher can guard them.
//
// When no client serves the name, or the connection is not TLS, the
// handler passes the connection on to the next handler, or to the next
// route: in the listener wrapper, to Caddy's own sites on the port. When
// clients serve it but none can take the connection now, it is closed:
// Caddy's own site would answer with a certificate the visitor does not
// expect.
type Handler struct {
	// Ask clients to send their upstream a PROXY protocol header ("v1" or
	// "v2") carrying the visitor's address, before the ClientHello.
	// Default: none.
	ProxyProtocol string `json:"proxy_protocol,omitempty"`

	// How long a connection may move no byte in either direction before
	// it is closed. Default: 1h, as the TCP data plane's.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// How long a TLS passthrough connection may move no byte before its
	// TLS handshake is done: until the visitor has sent bytes after the
	// upstream's first answer. A visitor that sends a ClientHello and
	// then nothing is let go after this, not after idle_timeout; while
	// it waits, it holds its TCP connection, a stream and about 10 KiB of
	// Caddy's heap (two goroutines, two 2 KiB read buffers). Default: 10s.
	HandshakeTimeout caddy.Duration `json:"handshake_timeout,omitempty"`

	// How to pick among the clients serving one name or port:
	// "round_robin" or "least_conn" (fewest open connections), as the
	// TCP data plane's. Clients still in their handshake, and for a port
	// those that found its upstream unreachable lately, come last.
	// Default: round_robin.
	LBPolicy string `json:"lb_policy,omitempty"`

	reg       *registry.Registry
	logger    *zap.Logger
	idle      time.Duration
	handshake time.Duration
	balancer  registry.Balancer
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "layer4.handlers.inlets",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision checks the config and finds the registry of clients.
func (h *Handler) Provision(ctx caddy.Context) error {
	switch h.ProxyProtocol {
	case "", "v1", "v2":
	default:
		return fmt.Errorf("layer4 inlets: proxy_protocol %q: want v1 or v2 (or nothing, for none)", h.ProxyProtocol)
	}
	if h.IdleTimeout < 0 {
		return fmt.Errorf("layer4 inlets: idle_timeout %s must be positive", time.Duration(h.IdleTimeout))
	}
	switch h.LBPolicy {
	case "", l4ports.PolicyRoundRobin:
	case l4ports.PolicyLeastConn:
		h.balancer.LeastConn = true
	default:
		return fmt.Errorf("layer4 inlets: lb_policy %q: want %s or %s", h.LBPolicy, l4ports.PolicyRoundRobin, l4ports.PolicyLeastConn)
	}
	if h.HandshakeTimeout < 0 {
		return fmt.Errorf("layer4 inlets: handshake_timeout %s must be positive", time.Duration(h.HandshakeTimeout))
	}
	h.idle = time.Duration(h.IdleTimeout)
	if h.idle == 0 {
		h.idle = l4ports.DefaultIdleTimeout
	}
	h.handshake = time.Duration(h.HandshakeTimeout)
	if h.handshake == 0 {
		h.handshake = DefaultHandshakeTimeout
	}
	h.logger = ctx.Logger()
	reg, err := app.FromContext(ctx)
	if err != nil {
		return err
	}
	h.reg = reg
	return nil
}

// Handle passes cx to a client serving its server name, or its port, or
// on to next.
func (h *Handler) Handle(cx *layer4.Connection, next layer4.Handler) error {
	header := tunnel.StreamHeader{
		RemoteAddr: cx.RemoteAddr().String(),
		LocalAddr:  cx.LocalAddr().String(),
	}
	var sessions []*registry.Session
	var what string
	var port registry.Port // the port whose upstream's health orders the clients
	var owner string       // the tunnel whose visitors policy applies
	if serverName := cx.Replacer().ReplaceAll(ServerNamePlaceholder, ""); serverName != "" {
		header.Host, sessions = h.reg.LookupTLS(serverName)
		header.Kind, header.ProxyProtocol, what = tunnel.KindTLS, h.ProxyProtocol, "TLS name "+header.Host
		owner = h.reg.Tenancy().Owner(tunnel.HostOnly(serverName))
	}
	if len(sessions) == 0 {
		// By the port the visitor came to: its UDP port for a datagram
		// flow of a UDP server, else its TCP port.
		switch addr := cx.LocalAddr().(type) {
		case *net.UDPAddr:
			port = registry.Port{UDP: true, Num: addr.Port}
			sessions = h.reg.PortSessions(port)
			header = tunnel.StreamHeader{Kind: tunnel.KindUDP, Port: addr.Port, RemoteAddr: header.RemoteAddr, LocalAddr: header.LocalAddr}
			if h.ProxyProtocol == "v2" { // v1 is text for TCP alone
				header.ProxyProtocol = "v2"
			}
			what = fmt.Sprintf("UDP port %d", addr.Port)
		case *net.TCPAddr:
			port = registry.Port{Num: addr.Port}
			sessions = h.reg.PortSessions(port)
			header = tunnel.StreamHeader{Kind: tunnel.KindTCP, Port: addr.Port, RemoteAddr: header.RemoteAddr, LocalAddr: header.LocalAddr, ProxyProtocol: h.ProxyProtocol}
			what = fmt.Sprintf("port %d", addr.Port)
		}
		owner = h.reg.Tenancy().PortOwner(port)
	}
	if len(sessions) == 0 {
		return next.Handle(cx)
	}
	if policy := h.reg.VisitorPolicy(owner); policy != nil {
		addr, _ := netip.ParseAddrPort(header.RemoteAddr)
		if reason, _ := h.reg.RefuseVisitor(owner, policy, registry.VisitConnection, header.Kind, addr.Addr().WithZone("").Unmap()); reason != "" {
			// Closed before any byte of it reaches a client.
			if c := h.logger.Check(zap.DebugLevel, "visitor refused by its tunnel's visitors policy"); c != nil {
				c.Write(zap.String("for", what), zap.String("remote_addr", header.RemoteAddr), zap.String("reason", reason))
			}
			return nil
		}
	}
	stream, err := registry.Dial(context.Background(), header, h.balancer.Order(port, sessions))
	if err != nil {
		return fmt.Errorf("no tunnel client could take a connection for %s (from %s): %w", what, header.RemoteAddr, err)
	}
	if c := h.logger.Check(zap.DebugLevel, "connection passed to a tunnel client"); c != nil {
		c.Write(zap.String("for", what), zap.String("remote_addr", header.RemoteAddr))
	}
	switch header.Kind {
	case tunnel.KindTLS:
		defer metrics.TLSConnectionOpened(header.Host).Closed()
		tunnel.JoinHandshake(visitor{cx}, stream, h.handshake, h.idle)
	case tunnel.KindTCP:
		defer metrics.TCPConnectionOpened(header.Port).Closed()
		tunnel.Join(visitor{cx}, stream, h.idle)
	case tunnel.KindUDP:
		defer metrics.UDPFlowOpened(header.Port).Closed()
		relayDatagrams(cx, stream)
	}
	return nil
}

// relayDatagrams carries the datagrams of one caddy-l4 UDP "connection"
// (a visitor address; each Read is one datagram, each Write sends one) on
// a UDP stream, framed, until either ends: caddy-l4 ends it after its
// server's idle_timeout.
func relayDatagrams(cx *layer4.Connection, stream net.Conn) {
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		buf := make([]byte, tunnel.MaxDatagramSize)
		for {
			n, err := tunnel.ReadDatagram(stream, buf)
			if err != nil {
				cx.Close()
				return
			}
			if _, err := cx.Write(buf[:n]); err != nil {
				stream.Close()
				return
			}
		}
	}()
	buf := make([]byte, tunnel.MaxDatagramSize)
	for {
		n, err := cx.Read(buf)
		if err != nil {
			break
		}
		if err := tunnel.WriteDatagram(stream, buf[:n]); err != nil {
			break
		}
	}
	stream.Close()
	<-answered
}

// visitor is the caddy-l4 connection, which replays what its matchers
// read, with the half-close of the TCP connection under it: a visitor's
// FIN from the upstream's side stays a FIN.
type visitor struct{ *layer4.Connection }

func (v visitor) CloseWrite() error {
	if cw, ok := v.Connection.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return v.Close()
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens, in a
// route of the layer4 app or of its listener wrapper. Syntax:
//
//	inlets {
//		proxy_protocol v1|v2
//		idle_timeout      <duration>
//		handshake_timeout <duration>
//		lb_policy         round_robin|least_conn
//	}
//
// All are optional, and so is the block.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the handler's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "proxy_protocol":
			h.ProxyProtocol = val
		case "idle_timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("idle_timeout %q: want a positive duration such as 30m or 2h", val)
			}
			h.IdleTimeout = caddy.Duration(dur)
		case "handshake_timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("handshake_timeout %q: want a positive duration such as 10s or 1m", val)
			}
			h.HandshakeTimeout = caddy.Duration(dur)
		case "lb_policy":
			h.LBPolicy = val
		default:
			return d.Errf("unknown option %q of the layer4 inlets handler: want proxy_protocol, idle_timeout, handshake_timeout or lb_policy", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Handler)(nil)
	_ layer4.NextHandler    = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ net.Conn              = visitor{}
)
