package l4ports

import (
	"context"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// forwarding is what forwarding a connection needs of the config, copied
// by value: connections outlive the config that accepted them.
type forwarding struct {
	reg           *registry.Registry
	proxyProtocol string
	idleTimeout   time.Duration
	leastConn     bool
}

// serve forwards one visitor connection through a client serving the
// port, trying the next client when one cannot open a stream.
func (l *portListener) serve(visitor net.Conn) {
	port := registry.Port{Num: l.port}
	if refuseVisitor(l.fwd.reg, port, "tcp", visitor) {
		return
	}
	header := tunnel.StreamHeader{
		Kind:          tunnel.KindTCP,
		Port:          l.port,
		RemoteAddr:    visitor.RemoteAddr().String(),
		LocalAddr:     visitor.LocalAddr().String(),
		ProxyProtocol: l.fwd.proxyProtocol,
	}
	stream, err := registry.Dial(context.Background(), header, l.balancer.Order(port, l.fwd.reg.PortSessions(port)))
	if err != nil {
		visitor.Close()
		if c := l.fwd.reg.Logger().Check(zap.WarnLevel, "tcp: no tunnel client could take a connection"); c != nil {
			c.Write(zap.Int("port", l.port), zap.String("remote_addr", header.RemoteAddr), zap.Error(err))
		}
		return
	}
	relay(l.fwd, l.port, visitor, stream)
}

// relay copies visitor ⇄ stream until both directions have ended. Every
// forwarded connection passes here exactly once, so this is where the data
// plane counts connections per port: one opened before the copy, one
// closed after it.
func relay(fwd forwarding, port int, visitor, stream net.Conn) {
	logger := fwd.reg.Logger()
	if c := logger.Check(zap.DebugLevel, "tcp: connection opened"); c != nil {
		c.Write(zap.Int("port", port), zap.String("remote_addr", visitor.RemoteAddr().String()))
	}
	start := time.Now()

	defer metrics.TCPConnectionOpened(port).Closed()
	tunnel.Join(visitor, stream, fwd.idleTimeout)

	if c := logger.Check(zap.DebugLevel, "tcp: connection closed"); c != nil {
		c.Write(zap.Int("port", port), zap.Duration("duration", time.Since(start)))
	}
}

// refuseVisitor holds a new connection to port to the visitors policy of
// the tunnel that owns the port: a refused visitor's connection is reset
// before any byte of it reaches a client.
func refuseVisitor(reg *registry.Registry, port registry.Port, transport string, visitor net.Conn) bool {
	owner := reg.Tenancy().PortOwner(port)
	p := reg.VisitorPolicy(owner)
	if p == nil {
		return false
	}
	addr, ok := connAddr(visitor)
	if !ok {
		return false
	}
	reason, _ := reg.RefuseVisitor(owner, p, registry.VisitConnection, transport, addr)
	if reason == "" {
		return false
	}
	if c, ok := visitor.(*net.TCPConn); ok {
		c.SetLinger(0)
	}
	visitor.Close()
	if c := reg.Logger().Check(zap.DebugLevel, "visitor refused by its tunnel's visitors policy"); c != nil {
		c.Write(zap.Stringer("port", port), zap.Stringer("remote_addr", addr), zap.String("reason", reason))
	}
	return true
}

// connAddr is the IP address of c's peer.
func connAddr(c net.Conn) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().WithZone("").Unmap(), true
}
