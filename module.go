// Package inlets is caddy-inlets: a tunnel server inside Caddy for clients
// on private networks, in the manner of inlets-pro. Importing it (xcaddy
// build --with github.com/caddy-inlets/caddy-inlets) registers every module
// of the project and the `caddy inlets` command:
//
//	admin.api.inlets                     the admin API's /inlets/ routes
//	http.handlers.inlets                 the control and data planes
//	http.reverse_proxy.transport.inlets  reverse_proxy's transport through a client
//	http.reverse_proxy.upstreams.inlets  reverse_proxy's upstreams: the clients of a host
//	inlets                               the app (package app): the tunnels, the TCP and UDP data plane (tcp), the fleet's peers, the process's limits
//	inlets_tcp                           the TCP and UDP data plane as an app of its own (the same JSON as the inlets app's tcp)
//	layer4.handlers.inlets               caddy-l4's handler for TLS passthrough by name
//	tls.permission.inlets                on-demand TLS for the names clients announce
//
// caddy-l4's own package is linked in by layer4.handlers.inlets; its
// matchers and listener wrapper are Caddy's layer4 modules.
package inlets

import (
	_ "github.com/caddy-inlets/caddy-inlets/app"
	_ "github.com/caddy-inlets/caddy-inlets/handler"
	_ "github.com/caddy-inlets/caddy-inlets/internal/caddystatus"
	_ "github.com/caddy-inlets/caddy-inlets/layer4/l4inlets"
)
