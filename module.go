// Package inlets is caddy-inlets: a tunnel server inside Caddy for clients
// on private networks, in the manner of inlets-pro. Importing it (xcaddy
// build --with github.com/caddy-inlets/caddy-inlets) registers every module
// of the project: the inlets app, the http.handlers.inlets handler with its
// reverse_proxy transport and upstream source, the TCP data plane, the admin
// API route (admin.api.inlets, from status/caddystatus) and the `caddy
// inlets` command.
package inlets

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	_ "github.com/caddy-inlets/caddy-inlets/status/caddystatus"

	_ "github.com/caddy-inlets/caddy-inlets/handler"
	_ "github.com/caddy-inlets/caddy-inlets/layer4"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the inlets app: the registry of connected tunnel clients, shared by
// every inlets handler and the TCP data plane of a config. It has no
// settings; handlers load it on demand. The registry itself outlives the
// app: a config reload hands the same sessions to the new config.
type App struct {
	reg *registry.Registry
	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "inlets",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision takes a reference on the process-wide registry, and adds the
// inlets metrics to the config's metrics registry. Every config has a new
// one; the metrics' values carry over.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	if err := metrics.Register(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	a.reg = registry.Load()
	return nil
}

// Start makes this config's logger the registry's.
func (a *App) Start() error {
	a.reg.SetLogger(a.ctx.Logger())
	return nil
}

// Stop does nothing: sessions belong to the registry, not to a config.
func (a *App) Stop() error { return nil }

// Cleanup drops the reference; the last one closes every session.
func (a *App) Cleanup() error {
	registry.Release()
	return nil
}

// Registry returns the registry of connected clients.
func (a *App) Registry() *registry.Registry { return a.reg }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ registry.Provider  = (*App)(nil)
)
