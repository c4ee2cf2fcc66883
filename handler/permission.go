package handler

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-inlets/caddy-inlets/app"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func init() {
	caddy.RegisterModule(Permission{})
}

// Permission is tls.permission.inlets: on-demand TLS gets a certificate
// for a name only while a connected client serves it, and within the
// budget of the tunnel that owns it. In a Caddyfile:
//
//	{
//		on_demand_tls {
//			permission inlets
//		}
//	}
//
// A name is allowed when a connected client of the tunnel that owns it
// announces it as an exact host, under one of the tunnel's exact or
// wildcard hosts; a name that only the tunnel's "*" gives it needs the
// tunnel's on_demand_wildcards. A name under a wildcard a client
// announces ("shop.example.com" under "*.example.com", one label, as
// visitors are routed) is allowed only if that tunnel has
// on_demand_wildcards and lists that very wildcard in its hosts (not
// merely a pattern that covers it, such as "*"): otherwise anyone could
// make the server ask its CA for as many names as they like. The
// catch-all "*" never allows a name. Caddy also asks before loading a
// certificate from storage, so a name whose client has left gets no
// certificate, new or stored, until a client announces it again.
//
// An allowed name whose certificate is not in storage costs its tunnel
// one order of its budget (on_demand_per_hour, default 20, at most 5 in
// any minute; the clients of a handler's own token share the default):
// past it, the name is denied until the budget has room, without asking
// the CA. Each answer is counted in tls_ondemand_certificates_total.
// Denials wrap caddytls.ErrPermissionDenied and say why; Caddy logs them
// at debug level.
type Permission struct {
	reg     *registry.Registry
	storage certmagic.Storage
}

// CaddyModule returns the Caddy module information.
func (Permission) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tls.permission.inlets",
		New: func() caddy.Module { return new(Permission) },
	}
}

// Provision finds the registry of clients, and the storage certificates
// are kept in.
func (p *Permission) Provision(ctx caddy.Context) error {
	reg, err := app.FromContext(ctx)
	if err != nil {
		return err
	}
	p.reg = reg
	p.storage = ctx.Storage()
	return nil
}

// CertificateAllowed allows a certificate for name if a connected client
// serves it and its tunnel's budget allows, as the type's documentation
// says.
func (p *Permission) CertificateAllowed(ctx context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || strings.Contains(name, "*") || tunnel.ValidateHostPattern(name) != nil {
		metrics.OnDemandCertificate(registry.Unnamed, metrics.OnDemandRefused)
		return fmt.Errorf("%w: inlets: %q is not a host name a client can announce", caddytls.ErrPermissionDenied, name)
	}
	ten := p.reg.Tenancy()
	owner, err := p.served(ten, name)
	if err != nil {
		metrics.OnDemandCertificate(owner, metrics.OnDemandRefused)
		return err
	}
	if p.stored(ctx, name) {
		metrics.OnDemandCertificate(owner, metrics.OnDemandStored)
		return nil
	}
	perHour := 0
	if sc := ten.Scope(owner); sc != nil {
		perHour = sc.OnDemandPerHour
	}
	if ok, wait := p.reg.TakeCertificateOrder(owner, perHour, time.Now()); !ok {
		metrics.OnDemandCertificate(owner, metrics.OnDemandOverBudget)
		who := "the clients of the server's own token"
		if owner != registry.Unnamed {
			who = "tunnel " + owner
		}
		return fmt.Errorf("%w: inlets: %s has ordered its on-demand certificates for now (on_demand_per_hour %d, at most %d a minute): %s waits %s",
			caddytls.ErrPermissionDenied, who, cmp.Or(perHour, registry.DefaultOnDemandPerHour), registry.OnDemandPerMinute, name, wait.Round(time.Second))
	}
	metrics.OnDemandCertificate(owner, metrics.OnDemandOrder)
	return nil
}

// served returns the tunnel that owns name if a connected client serves
// it in a way that allows a certificate, else an error that says why.
func (p *Permission) served(ten *registry.Tenancy, name string) (string, error) {
	owner, pattern := ten.OwnerAndPattern(name)
	if len(p.reg.LookupExact(name)) > 0 {
		if sc := ten.Scope(owner); pattern == "*" && (sc == nil || !sc.OnDemandWildcards) {
			return owner, fmt.Errorf("%w: inlets: %s is announced under tunnel %s's \"*\", which gets on-demand certificates only with on_demand_wildcards", caddytls.ErrPermissionDenied, name, owner)
		}
		return owner, nil
	}
	_, parent, ok := strings.Cut(name, ".")
	if ok && strings.Contains(parent, ".") {
		wildcard := "*." + parent
		if routes := p.reg.LookupExact(wildcard); len(routes) > 0 {
			announcer := ten.OwnerOfPattern(wildcard)
			sc := ten.Scope(announcer)
			if sc != nil && sc.OnDemandWildcards && slices.Contains(sc.Hosts, wildcard) && owner == announcer {
				return owner, nil
			}
			return owner, fmt.Errorf("%w: inlets: %s is served only under the wildcard %s, which is not one of the hosts of a tunnel with on_demand_wildcards", caddytls.ErrPermissionDenied, name, wildcard)
		}
	}
	return owner, fmt.Errorf("%w: inlets: no connected client announces %s", caddytls.ErrPermissionDenied, name)
}

// stored reports whether a certificate for name is in storage, from any
// issuer: loading it costs no order.
func (p *Permission) stored(ctx context.Context, name string) bool {
	if p.storage == nil {
		return false
	}
	issuers, err := p.storage.List(ctx, "certificates", false)
	if err != nil {
		return false
	}
	for _, dir := range issuers {
		if p.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(path.Base(dir), name)) {
			return true
		}
	}
	return false
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
