package registry

import (
	"strings"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// Owner returns the tunnel that owns a visitor's host (a name, lower
// case, no port): the one with the most specific pattern that matches
// it, or Unnamed.
func (t *Tenancy) Owner(host string) string {
	if t == nil {
		return Unnamed
	}
	if name, ok := t.exact[host]; ok {
		return name
	}
	return t.ownerUnder(host)
}

// OwnerAndPattern returns the tunnel that owns a visitor's host, as
// Owner does, and the pattern of its hosts that gives it the host: the
// host itself, a "*.parent" or "*"; "" for Unnamed.
func (t *Tenancy) OwnerAndPattern(host string) (tunnel, pattern string) {
	if t == nil {
		return Unnamed, ""
	}
	if name, ok := t.exact[host]; ok {
		return name, host
	}
	for rest := host; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok {
			break
		}
		if name, ok := t.wildcard[parent]; ok {
			return name, "*." + parent
		}
		rest = parent
	}
	if t.hasAny {
		return t.any, "*"
	}
	return Unnamed, ""
}

// ownerUnder is the owner of names under host by wildcard: the tunnel of
// the longest "*.parent" with parent a proper suffix of host, else that
// of "*".
func (t *Tenancy) ownerUnder(host string) string {
	for rest := host; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok {
			break
		}
		if name, ok := t.wildcard[parent]; ok {
			return name
		}
		rest = parent
	}
	if t.hasAny {
		return t.any
	}
	return Unnamed
}

// OwnerOfPattern returns the tunnel that owns an announced host pattern:
// for "*.x", the owner of the names under x that no more specific pattern
// takes; for "*", the tunnel holding "*".
func (t *Tenancy) OwnerOfPattern(p string) string {
	if t == nil {
		return Unnamed
	}
	switch {
	case p == "*":
		if t.hasAny {
			return t.any
		}
		return Unnamed
	case strings.HasPrefix(p, "*."):
		if name, ok := t.wildcard[p[2:]]; ok {
			return name
		}
		return t.ownerUnder(p[2:])
	}
	return t.Owner(p)
}

// HasPorts reports whether some tunnel has tcp_ports or udp_ports.
func (t *Tenancy) HasPorts() bool { return t != nil && len(t.ports) > 0 }

// PortOwner returns the tunnel that owns a TCP or UDP port, or Unnamed.
func (t *Tenancy) PortOwner(p Port) string {
	if t == nil {
		return Unnamed
	}
	if name, ok := t.ports[p]; ok {
		return name
	}
	return Unnamed
}

// CheckAnnouncement refuses what a client of tunnel name announces that
// the tunnel does not own, with the reason to give the client.
func (t *Tenancy) CheckAnnouncement(name string, hello *tunnel.Hello) error {
	sc := t.Scope(name)
	if name != Unnamed && sc == nil {
		return tunnel.Reject(tunnel.RejectTokenRefused, "tunnel %s no longer exists on this server", name)
	}
	for _, up := range hello.HTTP {
		if owner := t.OwnerOfPattern(up.Host); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectHostNotAllowed, "host %s belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Host)
			}
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "host %s is not in tunnel %s's hosts (%s): announce one of those, or ask the server's operator to add it", up.Host, name, strings.Join(sc.Hosts, " "))
		}
	}
	for _, up := range hello.TCP {
		if owner := t.PortOwner(Port{Num: up.Port}); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectPortNotAllowed, "port %d belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Port)
			}
			return tunnel.Reject(tunnel.RejectPortNotAllowed, "port %d is not in tunnel %s's tcp_ports (%s): announce one of those, or ask the server's operator to add it", up.Port, name, portsString(sc.Ports))
		}
	}
	for _, up := range hello.TLS {
		if owner := t.OwnerOfPattern(up.Name); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectHostNotAllowed, "TLS name %s belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Name)
			}
			return tunnel.Reject(tunnel.RejectHostNotAllowed, "TLS name %s is not in tunnel %s's hosts (%s): announce one of those, or ask the server's operator to add it", up.Name, name, strings.Join(sc.Hosts, " "))
		}
	}
	for _, up := range hello.UDP {
		if owner := t.PortOwner(Port{UDP: true, Num: up.Port}); owner != name {
			if name == Unnamed {
				return tunnel.Reject(tunnel.RejectPortNotAllowed, "UDP port %d belongs to a tunnel of its own on this server: connect with that tunnel's token", up.Port)
			}
			return tunnel.Reject(tunnel.RejectPortNotAllowed, "UDP port %d is not in tunnel %s's udp_ports (%s): announce one of those, or ask the server's operator to add it", up.Port, name, portsString(sc.UDPPorts))
		}
	}
	return nil
}
