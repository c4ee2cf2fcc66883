package inlets

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/layer4/l4ports"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("inlets", parseGlobalOption)
}

// parseGlobalOption sets up the inlets app from the `inlets` global
// option: the server's tunnels, its TCP and UDP data plane, and its peers. It lives here, not
// in a module's package, because it configures two: the registry's
// tunnels and layer4's TCP data plane. Syntax:
//
//	{
//		inlets {
//			tunnel <name> {
//				token_sha256 <hex>
//				hosts        <pattern>...
//				tcp_ports    <port|first-last>...
//				...
//			}
//			tcp {
//				bind           <host>
//				ports          <port|first-last>...
//				udp_ports      <port|first-last>...
//				...
//			}
//			peers       <ws(s) URL>...
//			max_unread  <size>
//			max_clients <n>
//		}
//	}
//
// max_unread bounds what clients have sent that visitors have not read
// yet, and max_clients the clients connected, the whole process together
// (see app.App's MaxUnread and MaxClients).
//
// peers are the control-plane URLs of the fleet's other servers, which
// this server advertises to its clients (see app.App's Peers).
// Each tunnel block is a tenant (see registry.UnmarshalTunnel);
// the tcp block is the TCP data plane (see l4ports.Plane's). Without a tcp
// block the server refuses TCP clients.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	d.Next() // the option's name
	if existing != nil {
		return nil, d.Err("the inlets global option is given twice: merge its blocks into one")
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	inlets := new(app.App)
	var tcp *l4ports.Plane
	for d.NextBlock(0) {
		switch d.Val() {
		case "tcp":
			if tcp != nil {
				return nil, d.Err("the inlets global option has two tcp blocks: merge them into one")
			}
			tcp = new(l4ports.Plane)
			if err := tcp.UnmarshalCaddyfile(d); err != nil {
				return nil, err
			}
		case "tunnel":
			if !d.NextArg() {
				return nil, d.Err("tunnel needs a name: `tunnel <name> { ... }`")
			}
			name := d.Val()
			if err := registry.ValidateTunnelName(name); err != nil {
				return nil, d.Err(err.Error())
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			if inlets.Tunnels[name] != nil {
				return nil, d.Errf("tunnel %s is given twice: merge its blocks into one", name)
			}
			d.SetContext("inlets.tunnel", name)
			tun := new(registry.Tunnel)
			if err := registry.UnmarshalTunnel(d, tun); err != nil {
				return nil, err
			}
			if inlets.Tunnels == nil {
				inlets.Tunnels = make(map[string]*registry.Tunnel)
			}
			inlets.Tunnels[name] = tun
		case "max_unread":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil || size > 1<<40 || size < app.MinMaxUnread {
				return nil, d.Errf("bad max_unread %q: want a size of at least 1MiB, such as 256MiB or 1GiB", d.Val())
			}
			inlets.MaxUnread = int64(size)
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "max_clients":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return nil, d.Errf("bad max_clients %q: want a positive number", d.Val())
			}
			inlets.MaxClients = n
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "peers":
			urls := d.RemainingArgs()
			if len(urls) == 0 {
				return nil, d.ArgErr()
			}
			inlets.Peers = append(inlets.Peers, urls...)
		default:
			return nil, d.Errf("unknown inlets global option %q: want tunnel, tcp, peers, max_unread or max_clients", d.Val())
		}
	}
	inlets.TCP = tcp
	if tcp == nil && inlets.Tunnels == nil && inlets.Peers == nil && inlets.MaxUnread == 0 && inlets.MaxClients == 0 {
		return nil, nil
	}
	return httpcaddyfile.App{Name: "inlets", Value: caddyconfig.JSON(inlets, nil)}, nil
}
