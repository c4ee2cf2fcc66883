package client

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/pires/go-proxyproto"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// serveUDP relays one visitor's flow of datagrams: each one read from the
// stream goes to the port's upstream from a socket of the flow's own, and
// each answer read from that socket comes back framed on the stream.
// The flow ends when the server ends the stream (it does when the flow is
// idle) or the socket fails.
func (c *Client) serveUDP(st *tunnel.Stream, h tunnel.StreamHeader) {
	addr, ok := c.udp[h.Port]
	if !ok {
		c.logger.Warn("server sent a flow for a UDP port this client does not serve", "udp_port", h.Port)
		reply(st, tunnel.StreamUnknownTarget, fmt.Sprintf("the tunnel client does not serve UDP port %d", h.Port))
		return
	}
	var prefix []byte
	if h.ProxyProtocol != "" {
		var err error
		if prefix, err = udpProxyHeader(h); err != nil {
			c.logger.Error("PROXY header for a UDP flow", "udp_port", h.Port, "error", err)
			reply(st, tunnel.StreamUpstreamUnreachable, "the tunnel client could not make the PROXY header: "+err.Error())
			return
		}
	}
	upstream, err := net.DialTimeout("udp", addr, c.cfg.DialTimeout)
	if err != nil {
		c.logger.Error("UDP upstream unreachable", "udp_port", h.Port, "upstream", addr, "error", err)
		reply(st, tunnel.StreamUpstreamUnreachable, fmt.Sprintf("the tunnel client could not open a socket to the upstream of UDP port %d", h.Port))
		return
	}
	if !reply(st, "", "") {
		upstream.Close()
		return
	}
	answers := make(chan struct{})
	go func() {
		defer close(answers)
		buf := make([]byte, tunnel.MaxDatagramSize)
		for {
			n, err := upstream.Read(buf)
			if err != nil {
				// An ICMP port unreachable from an upstream that is not
				// up (yet): the datagram is lost, as it would be
				// without the tunnel; the flow goes on.
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue
				}
				st.Reset()
				return
			}
			if err := tunnel.WriteDatagram(st, buf[:n]); err != nil {
				st.Reset()
				return
			}
		}
	}()
	// With a PROXY header, each datagram goes out behind it.
	out := make([]byte, len(prefix)+tunnel.MaxDatagramSize)
	copy(out, prefix)
	buf := out[len(prefix):]
	for {
		n, err := tunnel.ReadDatagram(st, buf)
		if err != nil {
			break
		}
		if _, err := upstream.Write(out[:len(prefix)+n]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
	}
	upstream.Close()
	<-answers
	st.Reset()
}

// udpProxyHeader is the PROXY protocol v2 header, in its datagram form,
// that h asks to put before every datagram of the flow: the visitor's
// address as the source, the server's as the destination.
func udpProxyHeader(h tunnel.StreamHeader) ([]byte, error) {
	if h.ProxyProtocol != "v2" {
		return nil, fmt.Errorf("PROXY protocol %q on a UDP flow: this client writes v2 (v1 has no datagram form)", h.ProxyProtocol)
	}
	src, err := parseTCPAddr(h.RemoteAddr)
	if err != nil {
		return nil, fmt.Errorf("visitor address: %w", err)
	}
	dst, err := parseTCPAddr(h.LocalAddr)
	if err != nil {
		return nil, fmt.Errorf("server address: %w", err)
	}
	return proxyproto.HeaderProxyFromAddrs(2, &net.UDPAddr{IP: src.IP, Port: src.Port}, &net.UDPAddr{IP: dst.IP, Port: dst.Port}).Format()
}
