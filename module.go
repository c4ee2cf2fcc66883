// Package inlets is caddy-inlets: a tunnel server inside Caddy for clients
// on private networks, in the manner of inlets-pro. Importing it (xcaddy
// build --with github.com/caddy-inlets/caddy-inlets) registers every module
// of the project: the inlets app (the registry of connected clients), the
// http.handlers.inlets handler with its reverse_proxy transport and
// upstream source, the TCP and UDP data plane, the caddy-l4 handler
// (layer4.handlers.inlets), the admin API route (admin.api.inlets) and the
// `caddy inlets` command. caddy-l4 itself is built in with
// `--with github.com/mholt/caddy-l4`.
package inlets

import (
	_ "github.com/caddy-inlets/caddy-inlets/handler"
	_ "github.com/caddy-inlets/caddy-inlets/internal/caddystatus"
	_ "github.com/caddy-inlets/caddy-inlets/internal/registry"
	_ "github.com/caddy-inlets/caddy-inlets/layer4/l4inlets"
	_ "github.com/caddy-inlets/caddy-inlets/layer4/l4ports"
)
