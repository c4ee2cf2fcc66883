package app

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"

	"github.com/caddy-inlets/caddy-inlets/config"
)

// provisionAuth builds each tunnel's HTTP authentication from Caddy's
// own modules, as the basic_auth and forward_auth directives configure
// them, and gives it to the tenancy.
func (a *App) provisionAuth(ctx caddy.Context) error {
	for name, tun := range a.Tunnels {
		v := tun.Visitors
		if !v.HasAuth() {
			continue
		}
		var chain []caddyhttp.MiddlewareHandler
		if v.BasicAuth != nil {
			h, err := loadHandler(ctx, "authentication", basicAuthHandler(v.BasicAuth))
			if err != nil {
				return fmt.Errorf("tunnel %s: visitors: basic_auth: %w", name, err)
			}
			chain = append(chain, h)
		}
		if v.ForwardAuth != nil {
			rp, err := forwardAuthHandler(v.ForwardAuth)
			if err != nil {
				return fmt.Errorf("tunnel %s: visitors: forward_auth: %w", name, err)
			}
			h, err := loadHandler(ctx, "reverse_proxy", rp)
			if err != nil {
				return fmt.Errorf("tunnel %s: visitors: forward_auth: %w", name, err)
			}
			chain = append(chain, h)
		}
		var skip caddyhttp.MatchPath
		if len(v.AuthSkip) > 0 {
			skip = caddyhttp.MatchPath(slices.Clone(v.AuthSkip))
			if err := skip.Provision(ctx); err != nil {
				return fmt.Errorf("tunnel %s: visitors: auth_skip: %w", name, err)
			}
		}
		var copied []string
		if v.ForwardAuth != nil {
			for _, h := range v.ForwardAuth.CopyHeaders {
				from, to, ok := strings.Cut(h, ">")
				if !ok {
					to = from
				}
				copied = append(copied, http.CanonicalHeaderKey(to))
			}
		}
		a.tenancy.SetAuth(name, authChain{skip: skip, chain: chain, copied: copied})
	}
	return nil
}

// loadHandler provisions the HTTP handler module http.handlers.<name>
// from its JSON, as Caddy loads it in a route.
func loadHandler(ctx caddy.Context, name string, h any) (caddyhttp.MiddlewareHandler, error) {
	mod, err := ctx.LoadModuleByID("http.handlers."+name, caddyconfig.JSON(h, nil))
	if err != nil {
		return nil, err
	}
	return mod.(caddyhttp.MiddlewareHandler), nil
}

// basicAuthHandler is what Caddy's basic_auth directive makes of b.
func basicAuthHandler(b *config.BasicAuth) caddyauth.Authentication {
	accounts := make([]caddyauth.Account, len(b.Accounts))
	for i, acc := range b.Accounts {
		accounts[i] = caddyauth.Account{Username: acc.Username, Password: acc.Password}
	}
	algorithm := b.Hash
	if algorithm == "" {
		algorithm = "bcrypt"
	}
	basic := caddyauth.HTTPBasicAuth{
		HashRaw:     json.RawMessage(fmt.Sprintf(`{"algorithm":%q}`, algorithm)),
		AccountList: accounts,
		Realm:       b.Realm,
	}
	return caddyauth.Authentication{ProvidersRaw: caddy.ModuleMap{"http_basic": caddyconfig.JSON(basic, nil)}}
}

// forwardAuthHandler is what Caddy's forward_auth directive makes of f:
// a reverse_proxy that GETs f's uri with the request's headers and
// X-Forwarded-Method and X-Forwarded-Uri, lets the request go on after a
// 2xx with f's headers copied onto it (a visitor's own header of one of
// those names removed first, whatever the service answers), and answers
// the visitor with the service's answer otherwise.
func forwardAuthHandler(f *config.ForwardAuth) (*reverseproxy.Handler, error) {
	dial, tlsUpstream, err := upstreamDial(f.Upstream)
	if err != nil {
		return nil, err
	}
	rp := &reverseproxy.Handler{
		Upstreams: reverseproxy.UpstreamPool{{Dial: dial}},
		Headers: &headers.Handler{Request: &headers.HeaderOps{Set: http.Header{
			"X-Forwarded-Method": {"{http.request.method}"},
			"X-Forwarded-Uri":    {"{http.request.uri}"},
		}}},
		Rewrite: &rewrite.Rewrite{Method: http.MethodGet, URI: f.URI},
	}
	if tlsUpstream {
		rp.TransportRaw = caddyconfig.JSONModuleObject(reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{}}, "protocol", "http", nil)
	}
	good := caddyhttp.ResponseHandler{
		Match: &caddyhttp.ResponseMatcher{StatusCode: []int{2}},
		Routes: caddyhttp.RouteList{{
			HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(&caddyhttp.VarsMiddleware{}, "handler", "vars", nil)},
		}},
	}
	for _, h := range f.CopyHeaders {
		from, to, ok := strings.Cut(h, ">")
		if !ok {
			to = from
		}
		to = http.CanonicalHeaderKey(to)
		placeholder := "{http.reverse_proxy.header." + http.CanonicalHeaderKey(from) + "}"
		good.Routes = append(good.Routes,
			caddyhttp.Route{HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(
				&headers.Handler{Request: &headers.HeaderOps{Delete: []string{to}}}, "handler", "headers", nil)}},
			caddyhttp.Route{
				MatcherSetsRaw: []caddy.ModuleMap{{"not": caddyconfig.JSON(caddyhttp.MatchNot{MatcherSetsRaw: []caddy.ModuleMap{{
					"vars": caddyconfig.JSON(caddyhttp.VarsMatcher{placeholder: []string{""}}, nil),
				}}}, nil)}},
				HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(
					&headers.Handler{Request: &headers.HeaderOps{Set: http.Header{to: {placeholder}}}}, "handler", "headers", nil)},
			})
	}
	rp.HandleResponse = []caddyhttp.ResponseHandler{good}
	return rp, nil
}

// upstreamDial is the dial address of a forward_auth upstream, and
// whether it speaks TLS.
func upstreamDial(upstream string) (string, bool, error) {
	if !strings.Contains(upstream, "://") {
		return upstream, false, nil
	}
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
		return "", false, fmt.Errorf("upstream %q: want host:port or http(s)://host[:port], the path in uri", upstream)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port), u.Scheme == "https", nil
}

// authChain is a tunnel's HTTP authentication: basic_auth, then
// forward_auth, for every request but those whose path skip matches.
type authChain struct {
	skip  caddyhttp.MatchPath
	chain []caddyhttp.MiddlewareHandler
	// copied are the headers forward_auth sets from its service's
	// answer: a visitor's own are removed from every request, those
	// auth_skip lets by included, so that none can be forged.
	copied []string
}

func (c authChain) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	for _, h := range c.copied {
		r.Header.Del(h)
	}
	if len(c.skip) > 0 {
		if ok, err := c.skip.MatchWithError(r); err != nil {
			return err
		} else if ok {
			return next.ServeHTTP(w, r)
		}
	}
	h := next
	for i := len(c.chain) - 1; i >= 0; i-- {
		mw, inner := c.chain[i], h
		h = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return mw.ServeHTTP(w, r, inner) })
	}
	return h.ServeHTTP(w, r)
}
