package handler

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
)

func init() {
	caddy.RegisterModule(Upstreams{})
}

// Upstreams is a reverse_proxy dynamic upstream source: the tunnel clients
// that serve the request's Host, exact names before one-label wildcards
// before the catch-all "*". Each upstream's dial address names one client
// session and only the inlets transport can dial it.
type Upstreams struct {
	reg *registry.Registry
}

// CaddyModule returns the Caddy module information.
func (Upstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.inlets",
		New: func() caddy.Module { return new(Upstreams) },
	}
}

// Provision finds the registry.
func (u *Upstreams) Provision(ctx caddy.Context) error {
	reg, err := app.FromContext(ctx)
	u.reg = reg
	return err
}

// GetUpstreams returns one upstream per client serving r's Host, in session
// order, leaving out those that reported the upstream unreachable lately
// unless no other client serves the host. They are new values each time:
// reverse_proxy writes to them.
func (u *Upstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	routes := u.reg.Lookup(r.Host)
	up := 0
	for _, rt := range routes {
		if rt.Up() {
			up++
		}
	}
	ups := make([]reverseproxy.Upstream, 0, len(routes))
	for _, rt := range routes {
		if up == 0 || rt.Up() {
			ups = append(ups, reverseproxy.Upstream{Dial: rt.Dial()})
		}
	}
	out := make([]*reverseproxy.Upstream, len(ups))
	for i := range ups {
		out[i] = &ups[i]
	}
	return out, nil
}

// UnmarshalCaddyfile takes no options:
//
//	dynamic inlets
func (u *Upstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module's name
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("the inlets upstream source takes no options")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Upstreams)(nil)
	_ reverseproxy.UpstreamSource = (*Upstreams)(nil)
	_ caddyfile.Unmarshaler       = (*Upstreams)(nil)
)
