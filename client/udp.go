package client

import (
	"errors"
	"fmt"
	"net"
	"syscall"

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
	buf := make([]byte, tunnel.MaxDatagramSize)
	for {
		n, err := tunnel.ReadDatagram(st, buf)
		if err != nil {
			break
		}
		if _, err := upstream.Write(buf[:n]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
	}
	upstream.Close()
	<-answers
	st.Reset()
}
