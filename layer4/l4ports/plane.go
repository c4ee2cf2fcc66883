// Package l4ports is the TCP and UDP data plane of caddy-inlets, which
// the inlets app starts (its tcp field; package app): it listens on the
// ports that tunnel clients announce (those the config allows) and
// forwards every visitor connection over a new stream to a client
// serving that port, which relays it to its upstream.
package l4ports

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Load-balancing policies between the clients that serve one port.
const (
	PolicyRoundRobin = "round_robin"
	PolicyLeastConn  = "least_conn"
)

// DefaultIdleTimeout ends a forwarded connection that has moved no byte in
// either direction for this long. An hour lets an SSH or database session
// sit idle through a meeting or a lunch break, yet connections whose
// visitor vanished without a word (a sleeping laptop, a NAT that forgot
// them) do not hold a stream and two sockets forever.
const DefaultIdleTimeout = time.Hour

// Plane is the TCP and UDP data plane (inlets-pro's TCP mode), in JSON
// the inlets app's tcp. When a tunnel client
// announces ports, the ports this config allows start listening on the
// bind address; every connection to one of them is forwarded through a
// client serving that port to the client's upstream host. A port stops
// listening when the last client serving it goes away.
//
// Clients and their connections belong to the process, not to a config: a
// reload keeps them. The new config listens on the ports it allows, and a
// client whose ports it no longer allows is told so (a "withdraw" control
// message) and keeps its session.
type Plane struct {
	// The address the data-plane ports listen on: an IP address or a host
	// name (inlets-pro's --data-addr). Default: every interface, IPv4 and
	// IPv6.
	Bind string `json:"bind,omitempty"`

	// The ports clients may open: single ports ("2222") and inclusive
	// ranges ("8000-8100"). A client announcing any other port is refused.
	// Required.
	Ports []string `json:"ports,omitempty"`

	// Ask clients to send a PROXY protocol header to their upstream before
	// any byte of the connection, carrying the visitor's address and the
	// address it connected to: "v1" (text) or "v2" (binary). With "v2",
	// UDP flows carry one too, at the start of every datagram. Default:
	// none.
	ProxyProtocol string `json:"proxy_protocol,omitempty"`

	// How long a forwarded connection may move no byte in either
	// direction before it is closed. Default: 1h.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// How a connection picks one of several clients serving its port:
	// "round_robin" (default) or "least_conn" (the client with the fewest
	// open streams). A client that cannot open a stream is skipped. A UDP
	// flow picks its client when it starts and keeps it.
	LBPolicy string `json:"lb_policy,omitempty"`

	// The UDP ports clients may open, in the syntax of ports. Each
	// visitor address is a flow, carried on one stream to one client.
	UDPPorts []string `json:"udp_ports,omitempty"`

	// How long a UDP flow may carry no datagram in either direction
	// before it ends. Default: 30s.
	UDPIdleTimeout caddy.Duration `json:"udp_idle_timeout,omitempty"`

	// The most flows one UDP port carries at once; a datagram from a new
	// visitor address past it is dropped (and counted). Default: 1024.
	UDPMaxFlows int `json:"udp_max_flows,omitempty"`

	// The most flows one UDP port carries at once from one source: an
	// IPv4 address, or an IPv6 /64. A datagram from a new visitor
	// address of a source past it is dropped (and counted, reason
	// "source_limit"), so one source, spoofed or not, cannot take every
	// flow of a port. Default: 128, and never more than udp_max_flows.
	UDPMaxFlowsPerSource int `json:"udp_max_flows_per_source,omitempty"`

	// The largest visitor datagram forwarded, in bytes; a larger one is
	// dropped (and counted), never truncated. Default: 9216; at most
	// 65507.
	MaxDatagramSize int `json:"max_datagram_size,omitempty"`

	ctx     caddy.Context
	logger  *zap.Logger
	reg     *registry.Registry
	allowed portSet
	// allowedUDP is the UDP ports of the config's own.
	allowedUDP portSet
	// tenancy is the config's tunnels: a named tunnel's tcp_ports are
	// served to its clients, in addition to allowed.
	tenancy *registry.Tenancy
	// reserved maps the ports Caddy's own HTTP servers listen on to the
	// server's name, as Start finds them: never a tunnel's.
	reserved map[int]string
	// l4 is the ports a server of caddy-l4's layer4 app listens on, as
	// Start finds them: clients may announce them (if allowed), and this
	// app does not listen on them; the layer4 routes' inlets handler
	// passes their visitors to the clients.
	l4  map[registry.Port]bool
	fwd forwarding
	udp udpForwarding

	// mu guards listeners, stopWatch and stopped. OpenPorts holds it for
	// the whole announcement, so that announcements and session changes
	// are applied one at a time.
	mu        sync.Mutex
	listeners map[registry.Port]listener
	stopWatch func()
	stopped   bool
}

// Provision parses the config, with the registry of clients and the
// tunnels of the config (its tenancy). It never binds a port: `caddy
// validate` provisions without starting.
func (a *Plane) Provision(ctx caddy.Context, reg *registry.Registry, tenancy *registry.Tenancy) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.reg = reg
	a.tenancy = tenancy
	var err error
	if a.allowed, err = parsePorts(a.Ports); err != nil {
		return err
	}
	if a.allowedUDP, err = parsePorts(a.UDPPorts); err != nil {
		return fmt.Errorf("inlets tcp: udp_%w", err)
	}
	a.udp = udpForwarding{
		reg:           a.reg,
		proxyProtocol: udpProxyProtocol(a.ProxyProtocol),
		idleTimeout:   cmp.Or(time.Duration(a.UDPIdleTimeout), DefaultUDPIdleTimeout),
		maxFlows:      cmp.Or(a.UDPMaxFlows, DefaultUDPMaxFlows),
		maxPerSource:  cmp.Or(a.UDPMaxFlowsPerSource, DefaultUDPMaxFlowsPerSource),
		maxDatagram:   cmp.Or(a.MaxDatagramSize, DefaultMaxDatagramSize),
		leastConn:     a.LBPolicy == PolicyLeastConn,
	}
	idle := time.Duration(a.IdleTimeout)
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	a.fwd = forwarding{
		reg:           a.reg,
		proxyProtocol: a.ProxyProtocol,
		idleTimeout:   idle,
		leastConn:     a.LBPolicy == PolicyLeastConn,
	}
	return nil
}

// udpProxyProtocol is the PROXY protocol version UDP flows ask of
// clients: v2, which has a datagram form; v1 is text for TCP alone.
func udpProxyProtocol(v string) string {
	if v == "v2" {
		return v
	}
	return ""
}

// Validate checks the config's values.
func (a *Plane) Validate() error {
	if err := validateBind(a.Bind); err != nil {
		return err
	}
	switch a.ProxyProtocol {
	case "", "v1", "v2":
	default:
		return fmt.Errorf("inlets tcp: proxy_protocol %q: want v1 or v2 (or nothing, for none)", a.ProxyProtocol)
	}
	if a.IdleTimeout < 0 {
		return fmt.Errorf("inlets tcp: idle_timeout %s must be positive", time.Duration(a.IdleTimeout))
	}
	switch a.LBPolicy {
	case "", PolicyRoundRobin, PolicyLeastConn:
	default:
		return fmt.Errorf("inlets tcp: lb_policy %q: want %s or %s", a.LBPolicy, PolicyRoundRobin, PolicyLeastConn)
	}
	if a.UDPIdleTimeout < 0 {
		return fmt.Errorf("inlets tcp: udp_idle_timeout %s must be positive", time.Duration(a.UDPIdleTimeout))
	}
	if a.UDPMaxFlows < 0 {
		return fmt.Errorf("inlets tcp: udp_max_flows %d must be positive", a.UDPMaxFlows)
	}
	if a.UDPMaxFlowsPerSource < 0 {
		return fmt.Errorf("inlets tcp: udp_max_flows_per_source %d must be positive", a.UDPMaxFlowsPerSource)
	}
	if a.MaxDatagramSize < 0 || a.MaxDatagramSize > MaxDatagramSize {
		return fmt.Errorf("inlets tcp: max_datagram_size %d: want 1 to %d bytes (the largest UDP payload)", a.MaxDatagramSize, MaxDatagramSize)
	}
	return nil
}

// validateBind accepts an IP address (IPv6 with or without brackets) or a
// host name, without a port or a network.
func validateBind(bind string) error {
	host := strings.TrimSuffix(strings.TrimPrefix(bind, "["), "]")
	if net.ParseIP(host) != nil || bind == "" {
		return nil
	}
	if strings.ContainsAny(bind, ":/[] ") {
		return fmt.Errorf("inlets tcp: bind %q: want an IP address or a host name, without a port (ports come from clients)", bind)
	}
	return nil
}

// Start makes this config the TCP data plane: it listens on the ports that
// connected clients announce and this config allows, tells clients about
// announced ports it does not serve, and follows sessions as they come and
// go. It fails only on a config that gives a port of Caddy's own HTTP
// servers to a tunnel: a port a client announced that it cannot bind is withdrawn
// from its clients with the reason, rather than failing the reload of a
// whole config over one client's announcement.
func (a *Plane) Start(hasControlPlane bool) error {
	if len(a.allowed) == 0 && len(a.allowedUDP) == 0 && !a.tenancy.HasPorts() {
		a.logger.Warn("the TCP data plane has no ports of its own and no tunnel has tcp_ports: it opens no port until one does (`caddy inlets tunnel create NAME --tcp-port N`), or until its `ports` lists some")
	}
	if !hasControlPlane {
		a.logger.Warn("this config has a TCP data plane (the inlets global option's tcp block) but no inlets control plane: no client can connect to announce ports; " +
			"add `inlets { token ... }` or `inlets control { token ... }` to a site")
	}
	if err := a.reserveCaddysPorts(); err != nil {
		return err
	}
	a.l4 = layer4Ports(a.ctx)
	a.mu.Lock()
	a.listeners = make(map[registry.Port]listener)
	// Installed before reading the announced ports: a client admitted from
	// now on asks this plane (and waits for mu), and one admitted earlier
	// is already listed.
	install(a)
	a.stopWatch = a.reg.Watch(a.closeUnserved)
	unbound := make(map[registry.Port]error)
	for _, p := range a.reg.Ports() {
		if !a.servesSome(p) || a.l4[p] || a.listeners[p] != nil {
			continue
		}
		l, err := a.listenOn(p)
		if err != nil {
			a.logger.Error("listening on an announced port", zap.Stringer("port", p), zap.Error(err))
			unbound[p] = err
			continue
		}
		a.listeners[p] = l
	}
	a.mu.Unlock()
	a.withdrawUnserved(unbound)
	return nil
}

// reserveCaddysPorts records the ports of the config's HTTP servers,
// which no client may open (a range in ports, such as 1-65535, may cover
// them), and refuses a config that gives one to a tunnel: its clients
// would receive that site's visitors, and the tokens of the clients
// connecting to its control plane.
func (a *Plane) reserveCaddysPorts() error {
	a.reserved = make(map[int]string)
	app, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(httpApp.Servers)) {
		for _, addr := range httpApp.Servers[name].Listen {
			na, err := caddy.ParseNetworkAddress(addr)
			if err != nil || !strings.HasPrefix(na.Network, "tcp") {
				continue
			}
			for port := int(na.StartPort); port <= int(na.EndPort) && port > 0; port++ {
				what := fmt.Sprintf("Caddy's server %s listens on %s", name, addr)
				a.reserved[port] = what
				if owner := a.tenancy.PortOwner(registry.Port{Num: port}); owner != registry.Unnamed {
					return fmt.Errorf("tunnel %s: tcp_ports: %d is a port of Caddy's own (%s): its clients would receive that server's connections; remove it from one of them", owner, port, what)
				}
			}
		}
	}
	return nil
}

// layer4Ports returns the ports the servers of the config's layer4 app
// (caddy-l4) listen on, TCP and UDP.
func layer4Ports(ctx caddy.Context) map[registry.Port]bool {
	out := make(map[registry.Port]bool)
	app, err := ctx.AppIfConfigured("layer4")
	if err != nil {
		return out
	}
	l4, ok := app.(*layer4.App)
	if !ok {
		return out
	}
	for _, srv := range l4.Servers {
		for _, addr := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(addr)
			if err != nil {
				continue
			}
			udp := strings.HasPrefix(na.Network, "udp")
			if !udp && !strings.HasPrefix(na.Network, "tcp") {
				continue
			}
			for port := int(na.StartPort); port <= int(na.EndPort) && port > 0; port++ {
				out[registry.Port{UDP: udp, Num: port}] = true
			}
		}
	}
	return out
}

// withdrawUnserved tells each client which of its ports this config does
// not serve: those it does not allow, and those in unbound, which it could
// not listen on. The client keeps its session and its other ports.
func (a *Plane) withdrawUnserved(unbound map[registry.Port]error) {
	disallowed := "the server's allowed ports are now " + a.allowed.String()
	disallowedUDP := "the server's allowed UDP ports are now " + a.allowedUDP.String()
	for _, s := range a.reg.Sessions() {
		if len(s.Hello.TCP)+len(s.Hello.UDP) == 0 {
			continue
		}
		reasons := make(map[registry.Port]string)
		for _, p := range s.Ports() {
			switch {
			case !a.allows(s.Tunnel, p) && p.UDP:
				reasons[p] = disallowedUDP
			case !a.allows(s.Tunnel, p):
				reasons[p] = disallowed
			case unbound[p] != nil:
				reasons[p] = unbound[p].Error()
			}
		}
		if len(reasons) > 0 {
			a.logger.Info("withdrawing ports this config does not serve",
				zap.String("client_id", s.Hello.ClientID), zap.Uint64("session", s.ID),
				zap.Stringers("ports", slices.SortedFunc(maps.Keys(reasons), registry.Port.Compare)))
		}
		// Also with none withdrawn: ports served again are forgotten as
		// withdrawn, so a later withdrawal is told again.
		if err := s.Withdraw(reasons); err != nil {
			a.logger.Warn("telling a client about withdrawn ports", zap.Uint64("session", s.ID), zap.Error(err))
		}
	}
}

// Stop closes this config's listeners. The connections they accepted go
// on: they belong to the client sessions, which outlive the config.
func (a *Plane) Stop() error {
	successor := uninstall(a)
	a.mu.Lock()
	a.stopped = true
	if a.stopWatch != nil {
		a.stopWatch()
	}
	listeners := a.listeners
	a.listeners = nil
	a.mu.Unlock()
	for _, l := range listeners {
		l.close()
	}
	if !successor && !caddy.Exiting() {
		a.withdrawAll()
	}
	return nil
}

// withdrawAll tells every TCP client that the server serves no port any
// more: the new config has no TCP data plane.
func (a *Plane) withdrawAll() {
	const reason = "the server's configuration no longer serves TCP or UDP tunnels (it has no `inlets { tcp { ... } }` block)"
	for _, s := range a.reg.Sessions() {
		if len(s.Hello.TCP)+len(s.Hello.UDP) == 0 {
			continue
		}
		reasons := make(map[registry.Port]string)
		for _, p := range s.Ports() {
			reasons[p] = reason
		}
		if err := s.Withdraw(reasons); err != nil {
			a.logger.Warn("telling a client about withdrawn ports", zap.Uint64("session", s.ID), zap.Error(err))
		}
	}
}

// openPorts listens on every port s announces, or on none of those it
// opened itself: a port outside the allow-list, or one that cannot be
// bound, refuses the whole announcement. The registry has added s
// already, so a listener it opens is never seen unserved.
func (a *Plane) openPorts(s *registry.Session) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return errStopped
	}
	var refused, refusedUDP []int
	for _, p := range s.Ports() {
		switch {
		case a.allows(s.Tunnel, p):
		case p.UDP:
			refusedUDP = append(refusedUDP, p.Num)
		default:
			refused = append(refused, p.Num)
		}
	}
	if len(refused) > 0 {
		if len(a.allowed) == 0 {
			return tunnel.Reject(tunnel.RejectPortNotAllowed, "%s not among this server's TCP ports: it serves only its tunnels' ports, to their tokens", portsPhrase(refused))
		}
		return tunnel.Reject(tunnel.RejectPortNotAllowed, "%s not in the server's allowed ports %s", portsPhrase(refused), a.allowed)
	}
	if len(refusedUDP) > 0 {
		if len(a.allowedUDP) == 0 {
			return tunnel.Reject(tunnel.RejectPortNotAllowed, "UDP %s not among this server's UDP ports: it serves only its tunnels' UDP ports, to their tokens (a server's own are its inlets { tcp { udp_ports ... } })", portsPhrase(refusedUDP))
		}
		return tunnel.Reject(tunnel.RejectPortNotAllowed, "UDP %s not in the server's allowed UDP ports %s", portsPhrase(refusedUDP), a.allowedUDP)
	}
	var opened []registry.Port
	for _, p := range s.Ports() {
		if a.listeners[p] != nil || a.l4[p] {
			continue
		}
		l, err := a.listenOn(p)
		if err != nil {
			// None of those it opened: the announcement is refused whole.
			for _, o := range opened {
				if !servedByOthers(a.reg.PortSessions(o), s) {
					a.listeners[o].close()
					delete(a.listeners, o)
				}
			}
			return tunnel.Reject(tunnel.RejectPortUnavailable, "%s", err)
		}
		a.listeners[p] = l
		opened = append(opened, p)
	}
	return nil
}

// listener is a config's listener on one port, TCP or UDP.
type listener interface{ close() }

// listenOn listens on p, a TCP or a UDP port.
func (a *Plane) listenOn(p registry.Port) (listener, error) {
	if p.UDP {
		l, err := a.listenUDP(p.Num)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	l, err := a.listen(p.Num)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// allows reports whether this config serves p to clients of tunnel: a
// named tunnel's own ports, or for the Unnamed one, the allowed ports
// that no named tunnel owns.
func (a *Plane) allows(tunnel string, p registry.Port) bool {
	if owner := a.tenancy.PortOwner(p); owner != registry.Unnamed {
		return owner == tunnel
	}
	return tunnel == registry.Unnamed && a.allowedOf(p).contains(p.Num)
}

// servesSome reports whether this config serves p to some tunnel's
// clients.
func (a *Plane) servesSome(p registry.Port) bool {
	return a.allowedOf(p).contains(p.Num) || a.tenancy.PortOwner(p) != registry.Unnamed
}

// allowedOf is the config's own allowed ports of p's kind.
func (a *Plane) allowedOf(p registry.Port) portSet {
	if p.UDP {
		return a.allowedUDP
	}
	return a.allowed
}

func servedByOthers(sessions []*registry.Session, s *registry.Session) bool {
	for _, other := range sessions {
		if other != s {
			return true
		}
	}
	return false
}

// closeUnserved closes the listeners of the ports of s that no session
// serves any more. The registry calls it whenever a session comes or goes.
func (a *Plane) closeUnserved(s *registry.Session) {
	if len(s.Hello.TCP)+len(s.Hello.UDP) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range s.Ports() {
		if l := a.listeners[p]; l != nil && len(a.reg.PortSessions(p)) == 0 {
			l.close()
			delete(a.listeners, p)
		}
	}
}

// Interface guards
var _ caddy.Validator = (*Plane)(nil)
