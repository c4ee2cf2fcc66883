package l4ports

import (
	"context"
	"net"
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
	header := tunnel.StreamHeader{
		Kind:          tunnel.KindTCP,
		Port:          l.port,
		RemoteAddr:    visitor.RemoteAddr().String(),
		LocalAddr:     visitor.LocalAddr().String(),
		ProxyProtocol: l.fwd.proxyProtocol,
	}
	stream, err := registry.Dial(context.Background(), header, l.balancer.Order(registry.Port{Num: l.port}, l.fwd.reg.PortSessions(registry.Port{Num: l.port})))
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
func relay(fwd forwarding, port int, visitor net.Conn, stream *tunnel.DataConn) {
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
