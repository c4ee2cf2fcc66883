package registry

import (
	"strconv"
	"strings"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalTunnel sets up tun from a `tunnel <name> { ... }`
// block of the `inlets` global option; the dispenser is on the name.
// Syntax:
//
//	tunnel <name> {
//		token                  <token>
//		token_file             <path>
//		token_sha256           <hex digest>
//		hosts                  <pattern>...
//		tcp_ports              <port|first-last>...
//		udp_ports              <port|first-last>...
//		max_clients            <n>
//		max_streams_per_client <n>
//		on_demand_wildcards
//		on_demand_per_hour     <n>
//		visitors {
//			allow           <cidr|address>...
//			deny            <cidr|address>...
//			rate            <n>/s|<n>/m|<n>/h [burst <n>]
//			connection_rate <n>/s|<n>/m|<n>/h [burst <n>]
//			bandwidth_down  <bytes>/s
//			bandwidth_up    <bytes>/s
//			basic_auth [bcrypt|argon2id] [<realm>] {
//				<username> <hashed_password>
//			}
//			forward_auth <upstream> {
//				uri          <uri>
//				copy_headers <field>...
//			}
//			auth_skip       <path>...
//		}
//	}
//
// At least one token, in any of the three forms (each may be repeated):
// token takes placeholders such as {env.TOKEN} or {file./run/secrets/x},
// expanded when the config loads; token_sha256 keeps only the digest in
// the config (`printf %s "$TOKEN" | sha256sum`). hosts, tcp_ports and
// udp_ports may be repeated. The values are checked when the config loads.
func UnmarshalTunnel(d *caddyfile.Dispenser, tun *Tunnel) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "token", "token_file", "token_sha256":
			if !d.NextArg() {
				return d.ArgErr()
			}
			var tok Token
			switch opt {
			case "token":
				tok.Value = d.Val()
			case "token_file":
				tok.File = d.Val()
			default:
				tok.SHA256 = strings.ToLower(d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			tun.Tokens = append(tun.Tokens, tok)
		case "hosts":
			hosts := d.RemainingArgs()
			if len(hosts) == 0 {
				return d.ArgErr()
			}
			tun.Hosts = append(tun.Hosts, hosts...)
		case "tcp_ports", "udp_ports":
			specs := d.RemainingArgs()
			if len(specs) == 0 {
				return d.ArgErr()
			}
			list := &tun.TCPPorts
			if opt == "udp_ports" {
				list = &tun.UDPPorts
			}
			for _, spec := range specs {
				ports, err := ParsePortSpec(spec)
				if err != nil {
					return d.Errf("%s: %v", opt, err)
				}
				*list = append(*list, ports...)
			}
		case "max_clients", "max_streams_per_client", "on_demand_per_hour":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("%s %q: want a positive number", opt, d.Val())
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "max_clients":
				tun.MaxClients = n
			case "max_streams_per_client":
				tun.MaxStreamsPerClient = n
			default:
				tun.OnDemandPerHour = n
			}
		case "on_demand_wildcards":
			if d.NextArg() {
				return d.ArgErr()
			}
			tun.OnDemandWildcards = true
		case "visitors":
			if d.NextArg() {
				return d.ArgErr()
			}
			if tun.Visitors == nil {
				tun.Visitors = new(config.Visitors)
			}
			if err := unmarshalVisitors(d, tun.Visitors); err != nil {
				return err
			}
		default:
			return d.Errf("unknown option %q in tunnel %s: want token, token_file, token_sha256, hosts, tcp_ports, udp_ports, max_clients, max_streams_per_client, on_demand_wildcards, on_demand_per_hour or visitors", opt, tunName(d))
		}
	}
	return nil
}

// unmarshalVisitors reads a tunnel's visitors block into v.
func unmarshalVisitors(d *caddyfile.Dispenser, v *config.Visitors) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "allow", "deny":
			prefixes := d.RemainingArgs()
			if len(prefixes) == 0 {
				return d.ArgErr()
			}
			for _, p := range prefixes {
				if _, err := config.ParseVisitorPrefix(p); err != nil {
					return d.Errf("visitors %s: %v", opt, err)
				}
			}
			if opt == "allow" {
				v.Allow = append(v.Allow, prefixes...)
			} else {
				v.Deny = append(v.Deny, prefixes...)
			}
		case "rate", "connection_rate":
			args := d.RemainingArgs()
			if len(args) != 1 && (len(args) != 3 || args[1] != "burst") {
				return d.Errf("visitors %s: want `%s <n>/s [burst <n>]`", opt, opt)
			}
			perSecond, err := config.ParseRate(args[0])
			if err != nil {
				return d.Errf("visitors %s: %v", opt, err)
			}
			burst := 0
			if len(args) == 3 {
				if burst, err = strconv.Atoi(args[2]); err != nil || burst <= 0 {
					return d.Errf("visitors %s: burst %q: want a positive number", opt, args[2])
				}
			}
			if opt == "rate" {
				v.RequestsPerSecond, v.RequestBurst = perSecond, burst
			} else {
				v.ConnectionsPerSecond, v.ConnectionBurst = perSecond, burst
			}
		case "bandwidth_down", "bandwidth_up":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := config.ParseBandwidth(d.Val())
			if err != nil {
				return d.Errf("visitors %s: %v", opt, err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if opt == "bandwidth_down" {
				v.BandwidthDown = n
			} else {
				v.BandwidthUp = n
			}
		case "basic_auth":
			if v.BasicAuth != nil {
				return d.Errf("visitors basic_auth is given twice: merge its accounts into one block")
			}
			b := new(config.BasicAuth)
			args := d.RemainingArgs()
			if len(args) > 0 && (args[0] == "bcrypt" || args[0] == "argon2id") {
				b.Hash, args = args[0], args[1:]
			}
			switch len(args) {
			case 0:
			case 1:
				b.Realm = args[0]
			default:
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				user := d.Val()
				if !d.NextArg() {
					return d.Errf("visitors basic_auth: user %q has no password hash: give `%s <hash>`, the hash from `caddy hash-password`", user, user)
				}
				b.Accounts = append(b.Accounts, config.Account{Username: user, Password: d.Val()})
				if d.NextArg() {
					return d.ArgErr()
				}
			}
			v.BasicAuth = b
		case "forward_auth":
			if v.ForwardAuth != nil {
				return d.Errf("visitors forward_auth is given twice")
			}
			f := new(config.ForwardAuth)
			if !d.NextArg() {
				return d.ArgErr()
			}
			f.Upstream = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch sub := d.Val(); sub {
				case "uri":
					if !d.NextArg() {
						return d.ArgErr()
					}
					f.URI = d.Val()
					if d.NextArg() {
						return d.ArgErr()
					}
				case "copy_headers":
					fields := d.RemainingArgs()
					if len(fields) == 0 {
						return d.ArgErr()
					}
					f.CopyHeaders = append(f.CopyHeaders, fields...)
				default:
					return d.Errf("unknown option %q in visitors forward_auth: want uri or copy_headers", sub)
				}
			}
			v.ForwardAuth = f
		case "auth_skip":
			paths := d.RemainingArgs()
			if len(paths) == 0 {
				return d.ArgErr()
			}
			v.AuthSkip = append(v.AuthSkip, paths...)
		default:
			return d.Errf("unknown option %q in the visitors of tunnel %s: want allow, deny, rate, connection_rate, bandwidth_down, bandwidth_up, basic_auth, forward_auth or auth_skip", opt, tunName(d))
		}
	}
	return nil
}

// tunName is the name of the tunnel block being read, for messages.
func tunName(d *caddyfile.Dispenser) string {
	if name, ok := d.GetContext("inlets.tunnel").(string); ok {
		return name
	}
	return ""
}

// ParsePortSpec parses "2201" or "3000-3010" (at most MaxTunnelPorts
// ports).
func ParsePortSpec(spec string) ([]int, error) {
	r, err := tunnel.ParsePortRange(spec, MaxTunnelPorts)
	if err != nil {
		return nil, err
	}
	return r.Ports(), nil
}
