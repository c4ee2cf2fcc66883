package inlets

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-inlets/caddy-inlets/handler"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("inlets", parseHandler)
	// Before respond: a site's catch-all `respond` must not swallow
	// /connect, and `inlets data { pass_thru }` can fall through to it.
	httpcaddyfile.RegisterDirectiveOrder("inlets", httpcaddyfile.Before, "respond")
}

// parseHandler sets up the inlets handler; see handler.Handler's
// UnmarshalCaddyfile for the syntax.
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(handler.Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}
