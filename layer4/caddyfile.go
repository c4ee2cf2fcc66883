package layer4

import (
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
//	}
//
// ports is required and may be repeated; a client may open only the ports
// listed. bind is the address they listen on (default: every interface).
// proxy_protocol makes clients send a PROXY protocol header to their
// upstream. idle_timeout (default 1h) closes a connection that moved no
// byte for that long. lb_policy picks among clients serving the same port.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	// The dispenser is on "tcp".
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "bind", "proxy_protocol", "lb_policy", "idle_timeout":
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
			case "idle_timeout":
				dur, err := caddy.ParseDuration(val)
				if err != nil || dur <= 0 {
					// 0 would read as the default in JSON.
					return d.Errf("idle_timeout %q: want a positive duration such as 30m or 2h", val)
				}
				a.IdleTimeout = caddy.Duration(dur)
			}
		case "ports":
			specs := d.RemainingArgs()
			if len(specs) == 0 {
				return d.ArgErr()
			}
			a.Ports = append(a.Ports, specs...)
		default:
			return d.Errf("unknown inlets tcp option %q: want bind, ports, proxy_protocol, idle_timeout or lb_policy", opt)
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*App)(nil)
