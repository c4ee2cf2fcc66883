// Package caddystatus is the server side of the status: it builds a
// status.Status from the live sessions of the registry, and serves it on
// Caddy's admin API as the admin.api.inlets module (GET /inlets/status).
// The control plane's GET /status (package handler) uses the same Of.
//
// It is apart from package status because it links Caddy, through
// internal/registry, and the standalone `inlets` client must not.
package caddystatus

import (
	"time"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/status"
)

// processStarted stands in for the registry's start time while no config
// holds the registry.
var processStarted = time.Now()

// Of returns the status of the server whose sessions reg holds. A nil reg
// (no config uses inlets) gives the server's info and no clients.
func Of(reg *registry.Registry) status.Status {
	if reg == nil {
		return status.New(processStarted, nil)
	}
	sessions := reg.Sessions()
	clients := make([]status.Client, 0, len(sessions))
	for _, s := range sessions {
		c := status.Client{
			ClientID:   s.Hello.ClientID,
			RemoteAddr: s.RemoteAddr,
			Since:      s.Since,
			Upstreams:  s.Upstreams(),
			Mode:       s.Hello.Mode,
			Version:    s.Hello.Version,
			Tunnel:     s.Tunnel,
			RTTMillis:  float64(s.RTT().Microseconds()) / 1000,
			Retired:    s.Retired(),
		}
		for _, up := range s.Hello.TCP {
			c.Ports = append(c.Ports, up.Port)
		}
		for _, up := range s.Hello.UDP {
			c.UDPPorts = append(c.UDPPorts, up.Port)
		}
		for _, up := range s.Hello.TLS {
			c.TLSNames = append(c.TLSNames, up.Name)
		}
		clients = append(clients, c)
	}
	return status.New(reg.Started(), clients)
}

// OfTunnel is st with only the clients of the named tunnel: what that
// tunnel's token may see.
func OfTunnel(st status.Status, name string) status.Status {
	own := make([]status.Client, 0, len(st.Clients))
	for _, c := range st.Clients {
		if c.Tunnel == name {
			own = append(own, c)
		}
	}
	st.Clients = own
	// The server's mode would tell of other tunnels' clients.
	st.Info.Mode = status.Mode(own)
	return st
}
