package inlets

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-inlets/caddy-inlets/handler"
	"github.com/caddy-inlets/caddy-inlets/layer4"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("inlets", parseHandler)
	// Before respond: a site's catch-all `respond` must not swallow
	// /connect, and `inlets data { pass_thru }` can fall through to it.
	httpcaddyfile.RegisterDirectiveOrder("inlets", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterGlobalOption("inlets", parseGlobalOption)
}

// parseHandler sets up the inlets handler; see handler.Handler's
// UnmarshalCaddyfile for the syntax.
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(handler.Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// parseGlobalOption sets up the apps configured by the `inlets` global
// option. Syntax:
//
//	{
//		inlets {
//			tcp {
//				bind           <host>
//				ports          <port|first-last>...
//				proxy_protocol v1|v2
//				idle_timeout   <duration>
//				lb_policy      round_robin|least_conn
//			}
//		}
//	}
//
// The tcp block is the TCP data plane, the inlets_tcp app; see
// layer4.App's UnmarshalCaddyfile for its options. Without it the server
// refuses TCP clients.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	d.Next() // the option's name
	if existing != nil {
		return nil, d.Err("the inlets global option is given twice: merge its blocks into one")
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	var tcp *layer4.App
	for d.NextBlock(0) {
		switch d.Val() {
		case "tcp":
			if tcp != nil {
				return nil, d.Err("the inlets global option has two tcp blocks: merge them into one")
			}
			tcp = new(layer4.App)
			if err := tcp.UnmarshalCaddyfile(d); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unknown inlets global option %q: want tcp", d.Val())
		}
	}
	if tcp == nil {
		return nil, nil
	}
	return httpcaddyfile.App{Name: "inlets_tcp", Value: caddyconfig.JSON(tcp, nil)}, nil
}
