package l4ports

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the app from the `tcp` block of the `inlets`
// global option; its values are checked once, when the config is loaded
// (Provision and Validate). Syntax:
//
//	tcp {
//		bind           <host>
//		ports          <port|first-last>...
//		proxy_protocol v1|v2
//		idle_timeout   <duration>
//		lb_policy      round_robin|least_conn
//		udp_ports      <port|first-last>...
//		udp_idle_timeout  <duration>
//		udp_max_flows     <n>
//		udp_max_flows_per_source <n>
//		max_datagram_size <bytes>
//	}
//
// ports and udp_ports may be repeated; a client may open only the ports
// listed, and those of its tunnel (tcp_ports, udp_ports). bind is the address they listen on (default: every interface).
// proxy_protocol makes clients send a PROXY protocol header to their
// upstream. idle_timeout (default 1h) closes a connection that moved no
// byte for that long. lb_policy picks among clients serving the same port.
// A UDP flow (a visitor address) ends after udp_idle_timeout without a
// datagram (default 30s); a port carries at most udp_max_flows (default
// 1024), at most udp_max_flows_per_source (default 128) from one IPv4
// address or IPv6 /64; a visitor datagram over max_datagram_size bytes (default 9216)
// is dropped and counted.
func (a *Plane) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	// The dispenser is on "tcp".
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "bind", "proxy_protocol", "lb_policy", "idle_timeout", "udp_idle_timeout", "udp_max_flows", "udp_max_flows_per_source", "max_datagram_size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			val := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "bind":
				a.Bind = val
			case "proxy_protocol":
				a.ProxyProtocol = val
			case "lb_policy":
				a.LBPolicy = val
			case "idle_timeout", "udp_idle_timeout":
				dur, err := caddy.ParseDuration(val)
				if err != nil || dur <= 0 {
					// 0 would read as the default in JSON.
					return d.Errf("%s %q: want a positive duration such as 30s, 30m or 2h", opt, val)
				}
				if opt == "idle_timeout" {
					a.IdleTimeout = caddy.Duration(dur)
				} else {
					a.UDPIdleTimeout = caddy.Duration(dur)
				}
			case "udp_max_flows", "udp_max_flows_per_source", "max_datagram_size":
				n, err := strconv.Atoi(val)
				if err != nil || n <= 0 {
					return d.Errf("%s %q: want a positive number", opt, val)
				}
				switch opt {
				case "udp_max_flows":
					a.UDPMaxFlows = n
				case "udp_max_flows_per_source":
					a.UDPMaxFlowsPerSource = n
				default:
					a.MaxDatagramSize = n
				}
			}
		case "ports", "udp_ports":
			specs := d.RemainingArgs()
			if len(specs) == 0 {
				return d.ArgErr()
			}
			if opt == "ports" {
				a.Ports = append(a.Ports, specs...)
			} else {
				a.UDPPorts = append(a.UDPPorts, specs...)
			}
		default:
			return d.Errf("unknown inlets tcp option %q: want bind, ports, proxy_protocol, idle_timeout, lb_policy, udp_ports, udp_idle_timeout, udp_max_flows, udp_max_flows_per_source or max_datagram_size", opt)
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Plane)(nil)
