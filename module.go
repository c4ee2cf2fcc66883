// Package inlets is caddy-inlets: a tunnel server inside Caddy for clients
// on private networks, in the manner of inlets-pro. Importing it (xcaddy
// build --with github.com/caddy-inlets/caddy-inlets) registers every module
// of the project: the inlets app (the registry of connected clients), the
// http.handlers.inlets handler with its reverse_proxy transport and
// upstream source, the TCP data plane, the admin API route
// (admin.api.inlets) and the `caddy inlets` command.
package inlets

import (
	_ "github.com/caddy-inlets/caddy-inlets/handler"
	_ "github.com/caddy-inlets/caddy-inlets/internal/caddystatus"
	_ "github.com/caddy-inlets/caddy-inlets/internal/registry"
	_ "github.com/caddy-inlets/caddy-inlets/layer4"
)
