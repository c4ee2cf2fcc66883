package handler

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	inlets [<matcher>] [control|data] {
//		token       <token>
//		token_file  <path>
//		allow_hosts <patterns...>
//		pass_thru
//
//		lb_policy       <name> [<options...>]
//		lb_retries      <n>
//		lb_try_duration <duration>
//		lb_try_interval <interval>
//		stream_close_delay <duration>
//	}
//
// With no argument the handler serves both planes: the control plane's
// paths (/connect for clients, /status and /metrics, all behind the token)
// and every other request for visitors. `control` serves only the control
// plane's paths (other requests go on to the next handler); `data` serves
// only visitors and needs no token.
//
// token may be repeated and may use placeholders such as {env.INLETS_TOKEN}
// or {file./run/secrets/inlets}; token_file may be repeated too. A handler
// serving the control plane refuses to start without a token.
//
// allow_hosts limits the host patterns clients may announce (default: any).
// pass_thru hands requests whose Host no client serves to the next handler
// instead of answering 502. The lb_* options and stream_close_delay are
// reverse_proxy's, applied to the clients that serve one host.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		switch d.Val() {
		case PlaneControl, PlaneData:
			h.Plane = d.Val()
		default:
			return d.Errf("unknown argument %q: want control or data (or nothing, for both)", d.Val())
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "token":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Tokens = append(h.Tokens, d.Val())
			if d.NextArg() {
				return d.ArgErr()
			}
		case "token_file":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.TokenFiles = append(h.TokenFiles, d.Val())
			if d.NextArg() {
				return d.ArgErr()
			}
		case "allow_hosts":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.AllowHosts = append(h.AllowHosts, args...)
		case "pass_thru":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.PassThru = true
		case "lb_policy":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if h.LoadBalancing != nil && h.LoadBalancing.SelectionPolicyRaw != nil {
				return d.Err("load balancing selection policy already specified")
			}
			name := d.Val()
			modID := "http.reverse_proxy.selection_policies." + name
			unm, err := caddyfile.UnmarshalModule(d, modID)
			if err != nil {
				return err
			}
			sel, ok := unm.(reverseproxy.Selector)
			if !ok {
				return d.Errf("module %s (%T) is not a reverseproxy.Selector", modID, unm)
			}
			h.lb().SelectionPolicyRaw = caddyconfig.JSONModuleObject(sel, "policy", name, nil)
		case "lb_retries":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("bad lb_retries number %q", d.Val())
			}
			h.lb().Retries = n
		case "lb_try_duration", "lb_try_interval", "stream_close_delay":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("bad %s %q: %v", opt, d.Val(), err)
			}
			switch opt {
			case "lb_try_duration":
				h.lb().TryDuration = caddy.Duration(dur)
			case "lb_try_interval":
				h.lb().TryInterval = caddy.Duration(dur)
			default:
				h.StreamCloseDelay = caddy.Duration(dur)
			}
		default:
			return d.Errf("unknown inlets option %q", d.Val())
		}
	}
	return nil
}

func (h *Handler) lb() *reverseproxy.LoadBalancing {
	if h.LoadBalancing == nil {
		h.LoadBalancing = new(reverseproxy.LoadBalancing)
	}
	return h.LoadBalancing
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
