package handler

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
)

func init() {
	caddy.RegisterModule(Permission{})
}

// Permission is tls.permission.inlets: on-demand TLS gets a certificate
// for a name only while a connected client serves it. In a Caddyfile:
//
//	{
//		on_demand_tls {
//			permission inlets
//		}
//	}
//
// A name is allowed when a connected client of the tunnel that owns it
// announces it as an exact host. A name under a wildcard a client
// announces ("shop.example.com" under "*.example.com", one label, as
// visitors are routed) is allowed only if that tunnel has
// on_demand_wildcards and lists that very wildcard in its hosts (not
// merely a pattern that covers it, such as "*"): otherwise anyone could
// make the server ask its CA for as many names as they like and exhaust
// its rate limits. The
// catch-all "*" never allows a name. Caddy also asks before loading a
// certificate from storage, so a name whose client has left gets no
// certificate, new or stored, until a client announces it again.
// Denials wrap caddytls.ErrPermissionDenied and say why; Caddy logs them
// at debug level.
type Permission struct {
	reg *registry.Registry
}

// CaddyModule returns the Caddy module information.
func (Permission) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.permission.inlets",
		New: func() caddy.Module { return new(Permission) },
	}
}

// Provision finds the registry of clients.
func (p *Permission) Provision(ctx caddy.Context) error {
	reg, err := registry.FromContext(ctx)
	if err != nil {
		return err
	}
	p.reg = reg
	return nil
}

// CertificateAllowed allows a certificate for name if a connected client
// serves it, as the type's documentation says.
func (p *Permission) CertificateAllowed(_ context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || strings.Contains(name, "*") {
		return fmt.Errorf("%w: inlets: %q is not a host name a client can announce", caddytls.ErrPermissionDenied, name)
	}
	if len(p.reg.LookupExact(name)) > 0 {
		return nil
	}
	_, parent, ok := strings.Cut(name, ".")
	if ok && strings.Contains(parent, ".") {
		pattern := "*." + parent
		if routes := p.reg.LookupExact(pattern); len(routes) > 0 {
			owner := p.reg.Tenancy().OwnerOfPattern(pattern)
			sc := p.reg.Tenancy().Scope(owner)
			if sc != nil && sc.OnDemandWildcards && slices.Contains(sc.Hosts, pattern) && p.reg.Tenancy().Owner(name) == owner {
				return nil
			}
			return fmt.Errorf("%w: inlets: %s is served only under the wildcard %s, which is not one of the hosts of a tunnel with on_demand_wildcards", caddytls.ErrPermissionDenied, name, pattern)
		}
	}
	return fmt.Errorf("%w: inlets: no connected client announces %s", caddytls.ErrPermissionDenied, name)
}

// UnmarshalCaddyfile reads `permission inlets`, which takes no options.
func (p *Permission) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module's name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("the inlets permission takes no options; a tunnel's on_demand_wildcards decides about wildcards")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Permission)(nil)
	_ caddytls.OnDemandPermission = (*Permission)(nil)
	_ caddyfile.Unmarshaler       = (*Permission)(nil)
)
