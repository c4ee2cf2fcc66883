// Package app is the inlets Caddy app, apps.inlets in JSON and the
// inlets global option in a Caddyfile: the server's tunnels (tenants),
// its TCP and UDP data plane, its fleet's peers and its process-wide
// limits. Every module of caddy-inlets reaches the registry of connected
// clients through it (FromContext). Go programs can build its config
// with this package's App and package config's Tunnel and Token.
package app

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/config"
	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/layer4/l4ports"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

func init() {
	caddy.RegisterModule(new(App))
	caddy.RegisterModule(new(TCPApp))
}

// App is the inlets app: the registry of connected tunnel clients, shared by
// every inlets handler and the TCP data plane of a config, and the
// server's tunnels. Handlers load it on demand when a config does not
// have it. The registry itself outlives the app: a config reload hands the
// same sessions to the new config, and disconnects only the clients that
// the new config's tunnels no longer admit.
type App struct {
	// The tunnels, by name: tenants of the server, each with its tokens
	// and what its clients may serve. The admin API edits them at
	// /config/apps/inlets/tunnels/<name>; see Tunnel.
	Tunnels map[string]*config.Tunnel `json:"tunnels,omitempty"`

	// The TCP and UDP data plane: the ports it listens on for clients
	// (the Caddyfile's global `inlets { tcp { ... } }`). Started and
	// stopped with this app. The same object is taken as an app of its
	// own, inlets_tcp (TCPApp), but not both.
	TCP *l4ports.Plane `json:"tcp,omitempty"`

	// The control-plane URLs of the other servers of this server's fleet
	// (ws:// or wss://, as clients connect to them), which it advertises
	// to its clients: each keeps a session to every server, and so may
	// serve visitors that reach any of them. For servers behind one load
	// balancer, where clients cannot address each one through the
	// balancer's name. At most 16.
	Peers []string `json:"peers,omitempty"`

	// What clients have sent on streams that no visitor has read yet, in
	// bytes, all clients of the process together, as a bound: 256 KiB for
	// each stream whose reader is not waiting for data, plus what the
	// streams' windows have grown (growth stops at half of it). Past
	// three quarters of it, the streams whose visitors have not read for
	// longest (at least 250ms) are reset until it is back under 90% of
	// that; at the limit, at once. Applied when the config starts, and
	// put back if it fails to start. An inlets handler's max_unread, if
	// no other is given, sets it too (all of a config's handlers must
	// agree). Default: 268435456 (256 MiB); at least 1 MiB.
	MaxUnread int64 `json:"max_unread,omitempty"`

	// The clients connected at once to this server, all control planes
	// and tunnels together; the next is refused (server-full, retry
	// later). Applied when the config starts, as max_unread. An inlets
	// handler's max_clients, if no other is given, sets it too (all of a
	// config's must agree). Default: 10000.
	MaxClients int `json:"max_clients,omitempty"`

	reg     *registry.Registry
	ctx     caddy.Context
	tenancy *registry.Tenancy
	// replaced is the tunnels this config's start replaced, which its
	// stop puts back if no later config has started: Caddy stops the
	// apps of a config that fails to start, and the old one runs on.
	replaced *registry.Tenancy
	// controlPlanes counts the config's handlers serving a control
	// plane; planesMu guards what they add to tenancy, and
	// handlersLimits.
	controlPlanes atomic.Int32
	planesMu      sync.Mutex
	// handlersLimits are the process-wide limits the config's handlers
	// gave (guarded by planesMu), by option name; replaced are the
	// values Start replaced, which Stop puts back if the config failed
	// to start.
	handlersLimits map[string]int64
	replacedUnread int64
	replacedMax    int64
}

// CaddyModule returns the Caddy module information. Its receiver is a
// pointer because App holds an atomic counter, which must not be copied.
func (*App) CaddyModule() caddy.ModuleInfo {
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
	if err := ValidatePeers(a.Peers); err != nil {
		return err
	}
	if a.MaxUnread != 0 && a.MaxUnread < MinMaxUnread {
		return fmt.Errorf("inlets: max_unread %d must be at least 1 MiB", a.MaxUnread)
	}
	if a.MaxClients < 0 {
		return fmt.Errorf("inlets: max_clients %d must be positive", a.MaxClients)
	}
	var err error
	if a.tenancy, err = registry.CompileTunnels(a.Tunnels); err != nil {
		return err
	}
	a.reg = registry.Load()
	if err := a.provisionAuth(ctx); err != nil {
		return err
	}
	if a.TCP != nil {
		if err := a.TCP.Provision(ctx, a.reg, a.tenancy); err != nil {
			return fmt.Errorf("tcp: %w", err)
		}
		if err := a.TCP.Validate(); err != nil {
			return fmt.Errorf("tcp: %w", err)
		}
	}
	return nil
}

// Start makes this config's logger, tunnels and process-wide limits the
// registry's, and starts its data plane. Only the data plane can fail,
// and it starts first, so that a failed start changes nothing.
func (a *App) Start() error {
	if a.TCP != nil {
		if err := a.TCP.Start(a.controlPlanes.Load() > 0); err != nil {
			return err
		}
	}
	a.reg.SetLogger(a.ctx.Logger())
	a.reg.SetPeers(a.Peers)
	a.replaced = a.reg.Tenancy()
	a.reg.SetTenancy(a.tenancy)
	a.replacedUnread = a.reg.Budget().Limit()
	a.reg.Budget().SetLimit(cmp.Or(a.MaxUnread, a.handlersLimits["max_unread"], registry.DefaultMaxUnread))
	a.replacedMax = a.reg.SetMaxClients(cmp.Or(int64(a.MaxClients), a.handlersLimits["max_clients"], registry.DefaultMaxClients))
	if a.tenancy.HasPorts() && a.TCP == nil {
		if _, err := a.ctx.AppIfConfigured(tcpAppID); errors.Is(err, caddy.ErrNotConfigured) {
			a.ctx.Logger().Warn("tunnels have tcp_ports, but this config has no TCP data plane: their TCP clients are refused; add `inlets { tcp { bind <address> } }` to the global options")
		}
	}
	return nil
}

// ValidatePeers checks the peers of the config: ws:// or wss:// URLs with
// a host, at most tunnel.MaxPeers.
func ValidatePeers(peers []string) error {
	if len(peers) > tunnel.MaxPeers {
		return fmt.Errorf("inlets: peers: %d URLs; a server advertises at most %d", len(peers), tunnel.MaxPeers)
	}
	for _, p := range peers {
		u, err := url.Parse(p)
		if err != nil || u.Scheme != "ws" && u.Scheme != "wss" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("inlets: peers: %q: want the URL clients connect to, ws://HOST:PORT or wss://HOST[/path]", p)
		}
	}
	return nil
}

// Stop leaves the sessions alone: they belong to the registry, not to a
// config. If no config started after this one (this one failed to start,
// and the one before runs on), it puts back the tunnels it replaced.
//
// When Caddy exits, it tells every client the server is shutting down,
// before the HTTP servers' grace period, so that clients reconnect
// promptly to the server that replaces this one.
func (a *App) Stop() error {
	if a.TCP != nil {
		a.TCP.Stop()
	}
	if caddy.Exiting() {
		a.announceShutdown()
		return nil
	}
	if a.replaced != nil && a.reg.Tenancy() == a.tenancy {
		a.reg.SetTenancy(a.replaced)
		a.reg.Budget().SetLimit(a.replacedUnread)
		a.reg.SetMaxClients(a.replacedMax)
	}
	return nil
}

// announceShutdown sends the shutdown message to every session, each
// with a write deadline (notify's), all at once.
func (a *App) announceShutdown() {
	var wg sync.WaitGroup
	for _, s := range a.reg.Sessions() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.AnnounceShutdown("the server is shutting down"); err != nil {
				a.ctx.Logger().Debug("telling a client the server shuts down", zap.Uint64("session", s.ID), zap.Error(err))
			}
		}()
	}
	wg.Wait()
}

// Cleanup drops the reference; the last one closes every session.
func (a *App) Cleanup() error {
	// Caddy cleans up a module whose provisioning failed too; only a
	// reference taken is dropped, or a refused config would take the
	// running config's reference, and the registry, with it.
	if a.reg != nil {
		registry.Release()
	}
	return nil
}

// FromContext returns the registry of a config, loading the inlets app
// into it if nothing else has: how every module of caddy-inlets reaches
// the registry.
func FromContext(ctx caddy.Context) (*registry.Registry, error) {
	a, err := of(ctx)
	if err != nil {
		return nil, err
	}
	return a.reg, nil
}

// of returns the inlets app of ctx's config, loading it if nothing else
// has.
func of(ctx caddy.Context) (*App, error) {
	app, err := ctx.App("inlets")
	if err != nil {
		return nil, fmt.Errorf("loading the inlets app: %w", err)
	}
	return app.(*App), nil
}

// NoteControlPlane records that a handler of ctx's config serves the
// control plane, and adds its own tokens (by digest) to the config's
// default tunnel with its allow_hosts: when the config starts, the
// clients of the default tunnel that none of its handlers admits any
// more are disconnected.
func NoteControlPlane(ctx caddy.Context, digests [][sha256.Size]byte, allow registry.HostAllow) error {
	a, err := of(ctx)
	if err != nil {
		return err
	}
	a.controlPlanes.Add(1)
	a.planesMu.Lock()
	defer a.planesMu.Unlock()
	return a.tenancy.AddDefaultTokens(digests, allow)
}

// MinMaxUnread is the least max_unread: a few streams' first windows.
const MinMaxUnread = 1 << 20

// NoteProcessLimit records a process-wide limit an inlets handler of
// ctx's config gave (option max_unread or max_clients); the app applies
// it when the config starts, unless the app has its own. The limit is
// the process's: two handlers that disagree, or a handler that disagrees
// with the app, are a config error.
func NoteProcessLimit(ctx caddy.Context, option string, limit int64) error {
	a, err := of(ctx)
	if err != nil {
		return err
	}
	own := map[string]int64{"max_unread": a.MaxUnread, "max_clients": int64(a.MaxClients)}[option]
	a.planesMu.Lock()
	defer a.planesMu.Unlock()
	switch other := a.handlersLimits[option]; {
	case own != 0 && own != limit:
		return fmt.Errorf("%s %d here, %d in the inlets global option: it bounds the whole process; set it once, in the global option", option, limit, own)
	case other != 0 && other != limit:
		return fmt.Errorf("%s %d here, %d in another inlets handler: it bounds the whole process; set it once, in the inlets global option", option, limit, other)
	}
	if a.handlersLimits == nil {
		a.handlersLimits = map[string]int64{}
	}
	a.handlersLimits[option] = limit
	return nil
}

// HasControlPlane reports whether a handler of ctx's config serves the
// control plane, once the config is provisioned.
func HasControlPlane(ctx caddy.Context) bool {
	a, err := of(ctx)
	return err == nil && a.controlPlanes.Load() > 0
}

// TenancyOf returns the tunnels of ctx's config.
func TenancyOf(ctx caddy.Context) (*registry.Tenancy, error) {
	a, err := of(ctx)
	if err != nil {
		return nil, err
	}
	return a.tenancy, nil
}
