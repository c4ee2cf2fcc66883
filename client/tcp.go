package client

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// tcpUpstream is where one announced port goes.
type tcpUpstream struct {
	port int
	addr string
}

// serveTCP relays a TCP stream to the upstream of its port, first writing
// a PROXY protocol header when the server asks for one.
func (c *Client) serveTCP(st *tunnel.Stream, h tunnel.StreamHeader) {
	up := c.tcp[h.Port]
	if up == nil {
		c.logger.Warn("server sent a stream for a port this client does not serve", "port", h.Port)
		reply(st, tunnel.StreamUnknownTarget, fmt.Sprintf("the tunnel client does not serve port %d", h.Port))
		return
	}
	c.relayTCP(st, h, up.addr, fmt.Sprintf("port %d", h.Port))
}

// serveTLS relays a TLS connection passed through by server name to the
// upstream of its announced name, which terminates it.
func (c *Client) serveTLS(st *tunnel.Stream, h tunnel.StreamHeader) {
	addr, ok := c.tls[h.Host]
	if !ok {
		c.logger.Warn("server sent a TLS connection for a name this client does not serve", "name", tunnel.TruncateReason(h.Host))
		reply(st, tunnel.StreamUnknownTarget, "the tunnel client does not serve TLS name "+h.Host)
		return
	}
	c.relayTCP(st, h, addr, "TLS name "+h.Host)
}

// relayTCP connects a stream to a TCP upstream, first writing a PROXY
// protocol header when the server asks for one; what names the upstream
// in messages.
func (c *Client) relayTCP(st *tunnel.Stream, h tunnel.StreamHeader, addr, what string) {
	upstream, err := net.DialTimeout("tcp", addr, c.cfg.DialTimeout)
	if err != nil {
		c.logger.Error("upstream unreachable", "for", what, "upstream", addr, "error", err)
		reply(st, tunnel.StreamUpstreamUnreachable, "the tunnel client could not reach the upstream of "+what)
		return
	}
	if h.ProxyProtocol != "" {
		upstream.SetWriteDeadline(time.Now().Add(c.cfg.DialTimeout))
		err := writeProxyHeader(upstream, h)
		upstream.SetWriteDeadline(time.Time{})
		if err != nil {
			c.logger.Error("writing PROXY header", "for", what, "upstream", addr, "error", err)
			upstream.Close()
			reply(st, tunnel.StreamUpstreamUnreachable, "the tunnel client could not write the PROXY header: "+err.Error())
			return
		}
	}
	if !reply(st, "", "") {
		upstream.Close()
		return
	}
	tunnel.Join(st, upstream, 0)
}

// writeProxyHeader writes the PROXY protocol header (v1 or v2) that h asks
// for, carrying the visitor's address as the source and the server's
// address it connected to as the destination.
func writeProxyHeader(w net.Conn, h tunnel.StreamHeader) error {
	var version byte
	switch h.ProxyProtocol {
	case "v1":
		version = 1
	case "v2":
		version = 2
	default:
		return fmt.Errorf("unknown PROXY protocol version %q (this client writes v1 and v2)", h.ProxyProtocol)
	}
	src, err := parseTCPAddr(h.RemoteAddr)
	if err != nil {
		return fmt.Errorf("visitor address: %w", err)
	}
	dst, err := parseTCPAddr(h.LocalAddr)
	if err != nil {
		return fmt.Errorf("server address: %w", err)
	}
	_, err = proxyproto.HeaderProxyFromAddrs(version, src, dst).WriteTo(w)
	return err
}

// parseTCPAddr parses an IP:port without any name lookup. An IPv4 visitor
// of a dual-stack listener appears as ::ffff:a.b.c.d; it is sent as IPv4.
func parseTCPAddr(s string) (*net.TCPAddr, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}
