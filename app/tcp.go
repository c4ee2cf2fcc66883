package app

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/layer4/l4ports"
)

// tcpAppID is the ID of TCPApp.
const tcpAppID = "inlets_tcp"

// TCPApp is the data plane as an app of its own, apps.inlets_tcp in
// JSON: the same object as the inlets app's tcp, for configs written
// that way. It is the inlets app's data plane, started with its own
// start; a config gives it in one of the two places.
type TCPApp struct {
	l4ports.Plane
	inlets *App
}

// CaddyModule returns the Caddy module information. Its receiver is a
// pointer because the plane holds a mutex, which must not be copied.
func (*TCPApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  tcpAppID,
		New: func() caddy.Module { return new(TCPApp) },
	}
}

// Provision provisions the plane with the inlets app's registry and
// tunnels, loading the inlets app if nothing else has.
func (t *TCPApp) Provision(ctx caddy.Context) error {
	a, err := of(ctx)
	if err != nil {
		return err
	}
	if a.TCP != nil {
		return fmt.Errorf("the TCP data plane is configured twice, as the inlets app's tcp and as the %s app: keep one", tcpAppID)
	}
	t.inlets = a
	return t.Plane.Provision(ctx, a.reg, a.tenancy)
}

// Start starts the plane.
func (t *TCPApp) Start() error { return t.Plane.Start(t.inlets.controlPlanes.Load() > 0) }

// Stop stops the plane.
func (t *TCPApp) Stop() error { return t.Plane.Stop() }

// Admit registers s in reg and has the data plane serving now listen on
// the ports it announces: a client is admitted with every port it
// announces, or not at all. It returns the *tunnel.Rejection to send the
// client when s cannot be admitted, having registered nothing.
func Admit(reg *registry.Registry, s *registry.Session) error {
	if len(s.Hello.TCP)+len(s.Hello.UDP) == 0 {
		return reg.Admit(s)
	}
	// Added before its ports listen, so that a listener is never seen
	// with no session serving it.
	if err := reg.Add(s); err != nil {
		return err
	}
	if err := l4ports.OpenPorts(s); err != nil {
		reg.Remove(s)
		return err
	}
	reg.Follow(s)
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.App          = (*TCPApp)(nil)
	_ caddy.Provisioner  = (*TCPApp)(nil)
	_ caddy.Validator    = (*TCPApp)(nil)
)
