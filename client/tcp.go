package client

import (
	"net"

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
func (c *Client) serveTCP(conn tunnel.Stream, h tunnel.StreamHeader) {
	up := c.tcp[h.Port]
	if up == nil {
		c.logger.Warn("server sent a stream for a port this client does not serve", "port", h.Port)
		conn.Close()
		return
	}
	upstream, err := net.DialTimeout("tcp", up.addr, c.cfg.DialTimeout)
	if err != nil {
		c.logger.Error("upstream unreachable", "port", h.Port, "upstream", up.addr, "error", err)
		conn.Close()
		return
	}
	if h.ProxyProtocol != "" {
		if err := writeProxyHeader(upstream, h); err != nil {
			c.logger.Error("writing PROXY header", "port", h.Port, "error", err)
			conn.Close()
			upstream.Close()
			return
		}
	}
	tunnel.Join(conn, upstream, 0)
}

func writeProxyHeader(w net.Conn, h tunnel.StreamHeader) error {
	var version byte = 1
	if h.ProxyProtocol == "v2" {
		version = 2
	}
	src, err := net.ResolveTCPAddr("tcp", h.RemoteAddr)
	if err != nil {
		return err
	}
	dst, err := net.ResolveTCPAddr("tcp", h.LocalAddr)
	if err != nil {
		return err
	}
	_, err = proxyproto.HeaderProxyFromAddrs(version, src, dst).WriteTo(w)
	return err
}
