package handler

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/dustin/go-humanize"

	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	inlets [<matcher>] [control|data] {
//		token        <token>
//		token_file   <path>
//		token_sha256 <hex digest>
//		allow_hosts  <patterns...>
//		pass_thru
//
//		lb_policy       <name> [<options...>]
//		lb_retries      <n>
//		lb_try_duration <duration>
//		lb_try_interval <interval>
//		lb_retry_match  <request-matcher>
//		stream_close_delay <duration>
//		fail_duration   <duration>
//
//		max_clients                <n>
//		max_streams_per_client     <n>
//		max_hosts_per_client       <n>
//		max_ports_per_client       <n>
//		stream_window              <size>
//		max_unread                 <size>
//		client_timeout             <duration>
//		auth_failures              <n> [<window>]
//		max_handshakes_per_address <n>
//	}
//
// With no argument the handler serves both planes: the control plane's
// paths (/connect for clients, /status and /metrics, all behind the token)
// and every other request for visitors. `control` serves only the control
// plane's paths (other requests go on to the next handler); `data` serves
// only visitors and needs no token.
//
// token may be repeated and may use placeholders such as {env.INLETS_TOKEN}
// or {file./run/secrets/inlets}; token_file and token_sha256 (the token's
// SHA-256 in hex, so that the config, and Caddy's autosave, never holds
// the token) may be repeated too. A handler serving the control plane
// refuses to start without a token.
//
// allow_hosts limits the host patterns clients may announce (default: any).
// pass_thru hands requests whose Host no client serves to the next handler
// instead of answering 502. The lb_* options and stream_close_delay are
// reverse_proxy's, read by reverse_proxy's own parser (every lb_*
// subdirective it documents) and applied to the clients that serve one
// host.
// fail_duration is how long a client that could not reach its upstream
// is passed over for it (default 5s).
//
// The max_* options, stream_window and client_timeout bound what clients
// and their visitors can make the server hold; auth_failures and
// max_handshakes_per_address bound what one address can do to the
// control plane. See the Handler's fields for each one's meaning and
// default. stream_window and max_unread take sizes such as 256KiB or
// 1GiB.
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
	// reverse_proxy's own options go to reverse_proxy's own parser, as
	// forward_auth hands it its options: every lb_* subdirective, as
	// reverse_proxy documents it.
	var proxyTokens []caddyfile.Token
	for d.NextBlock(0) {
		if opt := d.Val(); strings.HasPrefix(opt, "lb_") || opt == "stream_close_delay" {
			proxyTokens = append(proxyTokens, d.NextSegment()...)
			continue
		}
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
		case "token_sha256":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.TokenSHA256 = append(h.TokenSHA256, strings.ToLower(d.Val()))
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
		case "fail_duration", "client_timeout":
			opt := d.Val()
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			if opt == "fail_duration" {
				h.FailDuration = dur
			} else {
				h.ClientTimeout = dur
			}
		case "max_clients", "max_streams_per_client", "max_hosts_per_client", "max_ports_per_client", "max_handshakes_per_address":
			opt := d.Val()
			n, err := intArg(d)
			if err != nil {
				return err
			}
			*map[string]*int{
				"max_clients":                &h.MaxClients,
				"max_streams_per_client":     &h.MaxStreamsPerClient,
				"max_hosts_per_client":       &h.MaxHostsPerClient,
				"max_ports_per_client":       &h.MaxPortsPerClient,
				"max_handshakes_per_address": &h.MaxHandshakesPerAddress,
			}[opt] = n
		case "stream_window", "max_unread":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := humanize.ParseBytes(d.Val())
			if err != nil || size > 1<<40 {
				return d.Errf("bad %s %q: want a size such as 256KiB or 1GiB", opt, d.Val())
			}
			if opt == "stream_window" {
				if size < tunnel.MinStreamWindow || size > tunnel.MaxStreamWindowLimit {
					return d.Errf("bad stream_window %q: from 256KiB to 64MiB", d.Val())
				}
				h.StreamWindow = int(size)
			} else {
				h.MaxUnread = int64(size)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "auth_failures":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("bad auth_failures %q: want a number of failed logins, then optionally the window they are counted in (auth_failures 10 1m)", d.Val())
			}
			h.AuthFailures = n
			if d.NextArg() {
				dur, err := caddy.ParseDuration(d.Val())
				if err != nil || dur <= 0 {
					return d.Errf("bad auth_failures window %q: want a duration such as 1m", d.Val())
				}
				h.AuthFailureWindow = caddy.Duration(dur)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "tcp":
			return d.Err("tcp is not an option of the inlets directive: the TCP data plane is configured in the global options, `{ inlets { tcp { ports ... } } }`, at the top of the Caddyfile")
		default:
			return d.Errf("unknown inlets option %q; the options are: %s", d.Val(), strings.Join(caddyfileOptions, ", "))
		}
	}
	if len(proxyTokens) > 0 {
		return h.unmarshalProxyOptions(proxyTokens)
	}
	return nil
}

// unmarshalProxyOptions reads reverse_proxy's options of the directive
// (lb_* and stream_close_delay) with reverse_proxy's own parser, as if
// they were a `reverse_proxy { ... }` block's, and keeps what they set.
func (h *Handler) unmarshalProxyOptions(tokens []caddyfile.Token) error {
	first, last := tokens[0], tokens[len(tokens)-1]
	block := append([]caddyfile.Token{
		{File: first.File, Line: first.Line - 1, Text: "reverse_proxy"},
		{File: first.File, Line: first.Line - 1, Text: "{"},
	}, tokens...)
	block = append(block, caddyfile.Token{File: last.File, Line: last.Line + 1, Text: "}"})
	rp := new(reverseproxy.Handler)
	if err := rp.UnmarshalCaddyfile(caddyfile.NewDispenser(block)); err != nil {
		return err
	}
	if rp.LoadBalancing != nil {
		h.LoadBalancing = rp.LoadBalancing
	}
	h.StreamCloseDelay = rp.StreamCloseDelay
	return nil
}

// caddyfileOptions are the options of the directive, as its syntax lists
// them.
var caddyfileOptions = []string{
	"token", "token_file", "token_sha256", "allow_hosts", "pass_thru",
	"lb_policy", "lb_retries", "lb_try_duration", "lb_try_interval", "lb_retry_match", "stream_close_delay", "fail_duration",
	"max_clients", "max_streams_per_client", "max_hosts_per_client", "max_ports_per_client",
	"stream_window", "max_unread", "client_timeout", "auth_failures", "max_handshakes_per_address",
}

func init() {
	httpcaddyfile.RegisterHandlerDirective("inlets", parseCaddyfile)
	// Before respond: a site's catch-all `respond` must not swallow
	// /connect, and `inlets data { pass_thru }` can fall through to it.
	httpcaddyfile.RegisterDirectiveOrder("inlets", httpcaddyfile.Before, "respond")
}

// parseCaddyfile sets up the handler of an `inlets` directive.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// intArg reads the option's one argument, a positive number.
func intArg(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n <= 0 {
		return 0, d.Errf("bad %s %q: want a positive number", opt, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return n, nil
}

// durationArg reads the option's one argument, a positive duration.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return 0, d.Errf("bad %s %q: want a positive duration such as 5s", opt, d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return caddy.Duration(dur), nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
